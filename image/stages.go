package image

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/paczfs/paczfs/disk"
	"github.com/paczfs/paczfs/hooks"
	"github.com/paczfs/paczfs/internal/chroot"
	"github.com/paczfs/paczfs/internal/fsx"
	"github.com/paczfs/paczfs/internal/procs"
	"github.com/paczfs/paczfs/pacman"
	"github.com/paczfs/paczfs/zfs"
)

func builtinStages() map[hooks.Stage]stageFunc {
	m := map[hooks.Stage]stageFunc{}
	for _, d := range pipeline() {
		m[d.stage] = d.run
	}
	return m
}

func chrootArgs(root string, argv ...string) []string { return chroot.Command(root, argv...) }

// targetInfo is the disk being written.
type targetInfo struct {
	path    string
	block   bool
	created bool // this build created the file (only then may it remove it)
	size    int64
	loop    *disk.Loop
	plan    disk.Plan
}

// buildPlan is what Plan resolves and a dry run prints.
type buildPlan struct {
	Disk     disk.Plan
	PoolArgs []string
	Datasets [][]string
	Packages *pacman.Plan
	Temp     string // the pool's name while imported on the build host
}

// Plan resolves everything a build needs without writing anything: the
// partition table, the zpool and zfs commands, and the packages with
// their sizes. Unknown packages or unsatisfiable dependencies are errors
// naming them.
func (b *Builder) Plan(ctx context.Context) (*BuildPlan, error) {
	st := b.newBuild()
	if err := stageChecks(ctx, st); err != nil {
		return nil, err
	}
	p := st.plan
	return &BuildPlan{Disk: p.Disk, PoolCommand: p.PoolArgs, DatasetCommands: p.Datasets, Packages: p.Packages,
		Environments: st.envNames()}, nil
}

// BuildPlan is the plan a dry run shows.
type BuildPlan struct {
	Disk            disk.Plan
	PoolCommand     []string
	DatasetCommands [][]string
	Packages        *pacman.Plan
	Environments    []string
}

func (st *build) envNames() []string {
	var names []string
	for _, e := range st.cfg.environments() {
		names = append(names, e.Dataset)
	}
	return names
}

func (st *build) zfs() *zfs.Client { return zfs.New(st.b.runner, zfs.WithLogger(st.b.log)) }

// tempPoolName is the name the pool has while this host has it imported:
// unique, so it never clashes with the build host's own pools.
func tempPoolName(name string) string {
	var r [3]byte
	_, _ = rand.Read(r[:])
	return fmt.Sprintf("%s-paczfs-%s", name, hex.EncodeToString(r[:]))
}

func stageChecks(ctx context.Context, st *build) error {
	cfg := st.cfg
	size := int64(cfg.Size)
	if cfg.BlockDevice != "" {
		s, err := disk.CheckBlockDevice(ctx, st.b.runner, cfg.BlockDevice, disk.BlockDeviceOptions{Wipe: cfg.Overwrite})
		if err != nil {
			return fmt.Errorf("block_device: %w", err)
		}
		size = s
	}
	dplan, err := cfg.layout().Plan(size)
	if err != nil {
		return fmt.Errorf("layout: %w", err)
	}
	temp := tempPoolName(cfg.PoolName)
	poolArgs, err := zfs.CreatePoolArgs(st.poolSpec(temp, "/ALTROOT", []string{"/dev/DISK-zfs-partition"}))
	if err != nil {
		return fmt.Errorf("pool: %w", err)
	}
	var dsArgs [][]string
	for _, d := range cfg.Datasets {
		a, err := zfs.CreateDatasetArgs(temp+"/"+d.Name, d.Props, zfs.CreateOptions{Parents: true})
		if err != nil {
			return fmt.Errorf("datasets: %w", err)
		}
		dsArgs = append(dsArgs, a)
	}
	names := append(append(append([]string{}, cfg.Packages.Base...), cfg.Packages.Bootable...), cfg.Packages.Workstation...)
	pplan, err := st.b.installer.Plan(ctx, names)
	if err != nil {
		return fmt.Errorf("packages: %w", err)
	}
	st.plan = &buildPlan{Disk: dplan, PoolArgs: poolArgs, Datasets: dsArgs, Packages: pplan, Temp: temp}
	if cfg.System.RootPasswordHash == "" && len(cfg.System.AuthorizedKeys) == 0 {
		st.warn("the image has no way to log in: root's password is locked and no ssh key is given (set system.root_password_hash or system.authorized_keys)")
	}
	return nil
}

func (st *build) poolSpec(temp, altroot string, vdevs []string) zfs.PoolSpec {
	return zfs.PoolSpec{Name: st.cfg.PoolName, TempName: temp, AltRoot: altroot, Vdevs: vdevs,
		Properties: st.cfg.PoolProperties, FSProperties: st.cfg.FSProperties}
}

func stageTarget(ctx context.Context, st *build) error {
	cfg := st.cfg
	if err := st.ensureWorkDir(); err != nil {
		return err
	}
	var t *disk.Target
	var err error
	if cfg.BlockDevice != "" {
		t, err = disk.OpenBlockDevice(ctx, st.b.runner, cfg.BlockDevice, disk.BlockDeviceOptions{Wipe: cfg.Overwrite})
	} else {
		img, aerr := filepath.Abs(cfg.ImageFile)
		if aerr != nil {
			return aerr
		}
		if err := st.record.update(func(r *record) { r.Image = img }); err != nil {
			return err
		}
		t, err = disk.CreateImage(cfg.ImageFile, cfg.Size, disk.ImageOptions{Overwrite: cfg.Overwrite})
	}
	if err != nil {
		return err
	}
	// Only a file this build created may be removed by recovery.
	if err := st.record.update(func(r *record) { r.Created = t.Created }); err != nil {
		return err
	}
	// The layout on the disk as it is (a block device's own size).
	plan, err := cfg.layout().Plan(t.Size)
	if err != nil {
		return fmt.Errorf("layout: %w", err)
	}
	st.target = &targetInfo{path: t.Path, block: t.BlockDevice, created: t.Created, size: t.Size, plan: plan}
	st.res.Disk = t.Path
	if !t.BlockDevice {
		st.state.ImageFile = t.Path
	}
	return st.attachLoop(ctx)
}

func stagePartition(ctx context.Context, st *build) error {
	t := st.target
	if err := disk.WriteGPT(t.path, t.plan.SeededGUIDs(st.cfg.GUIDSeed)); err != nil {
		return err
	}
	plan, err := disk.ReadGPT(t.path) // the GUIDs the table really has
	if err != nil {
		return err
	}
	t.plan = plan
	if err := st.partitionDevices(ctx); err != nil {
		return err
	}
	if sw, ok := plan.Find(disk.RoleSwap); ok {
		if _, err := st.b.runner.Run(ctx, hooks.Cmd{Args: []string{"mkswap", "-U", strings.ToLower(sw.GUID), t.loop.PartitionPath(sw.Number)}}); err != nil {
			return fmt.Errorf("swap: %w", err)
		}
	}
	return nil
}

// espFiles opens the ESP for each access, so nothing stays open between
// stages and hooks can use it at any point.
type espFiles struct {
	path string
	plan disk.Plan
}

func (e espFiles) WriteFile(name string, data []byte) error {
	esp, err := disk.OpenESP(e.path, e.plan)
	if err != nil {
		return err
	}
	if err := esp.MkdirAll(path.Dir(name)); err != nil {
		esp.Close()
		return err
	}
	if err := esp.WriteFile(name, strings.NewReader(string(data))); err != nil {
		esp.Close()
		return err
	}
	return esp.Close()
}

func (e espFiles) ReadFile(name string) ([]byte, error) {
	esp, err := disk.OpenESP(e.path, e.plan)
	if err != nil {
		return nil, err
	}
	defer esp.Close()
	return esp.ReadFile(name)
}

func stageESP(ctx context.Context, st *build) error {
	t := st.target
	esp, err := disk.FormatESP(t.path, t.plan, "ESP")
	if err != nil {
		return err
	}
	if err := esp.Close(); err != nil {
		return err
	}
	st.state.ESP = espFiles{path: t.path, plan: t.plan}
	return nil
}

func stagePool(ctx context.Context, st *build) error {
	z := st.zfs()
	zp, ok := st.target.plan.Find(disk.RoleZFS)
	if !ok {
		return errors.New("the layout has no zfs partition")
	}
	root := filepath.Join(st.workDir, "root")
	if err := fsx.Mkdir(root, 0o755); err != nil {
		return err
	}
	spec := st.poolSpec(st.plan.Temp, root, []string{st.target.loop.PartitionPath(zp.Number)})
	if err := st.record.update(func(r *record) { r.Pools = append(r.Pools, spec.ImportedName()) }); err != nil {
		return err
	}
	if err := z.CreatePool(ctx, spec); err != nil {
		return err
	}
	pool := spec.ImportedName()
	// Export, not destroy: on a failure the image file is removed anyway,
	// and a block device keeps a pool the user can inspect.
	st.stack.Push("export pool "+pool, func(ctx context.Context) error { return exportPool(ctx, z, pool, zfs.ExportOptions{Force: true}) })
	st.state.Root = root
	st.state.Pool = pool
	st.state.PoolName = st.cfg.PoolName
	st.state.RootDataset = pool + "/" + st.cfg.RootDataset
	return nil
}

func stageDatasets(ctx context.Context, st *build) error {
	z := st.zfs()
	if err := z.CreateDatasets(ctx, st.state.Pool, st.cfg.Datasets); err != nil {
		return err
	}
	mounted, err := z.Properties(ctx, st.state.RootDataset, "mounted")
	if err != nil {
		return err
	}
	if mounted["mounted"].Value != "yes" {
		if err := z.Mount(ctx, st.state.RootDataset); err != nil {
			return err
		}
	}
	return nil
}

// stagePacman makes the target's keyring. The target's pacman.conf and
// mirrorlists are written by the system stage, after the packages that
// own those files (pacman, pacman-mirrorlist) are installed: written
// before, they would be file conflicts. The installs use the build's own
// configuration, never the target's file.
func stagePacman(ctx context.Context, st *build) error {
	return st.b.installer.InitKeyring(ctx, st.state.Root)
}

func writePacmanConfig(root string, cfg pacman.Config, downloadUser string) error {
	files := map[string][]byte{"etc/pacman.conf": cfg.RenderConf(downloadUser)}
	for name, data := range cfg.RenderMirrorlists() {
		files[filepath.Join("etc/pacman.d", name)] = data
	}
	for name, data := range files {
		if err := writeFile(root, name, data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

func (st *build) install(ctx context.Context, names []string) error {
	if len(names) == 0 {
		return nil
	}
	res, err := st.b.installer.Install(ctx, st.state.Root, names)
	if err != nil {
		return err
	}
	st.packages = append(st.packages, res.Installed...)
	for _, w := range res.Warnings {
		st.warn("pacman: %s", w)
	}
	if len(st.cfg.Pacman.CacheDirs) == 0 {
		return st.emptyTargetCache()
	}
	return nil
}

// emptyTargetCache removes the downloaded packages from the target's own
// cache (used when pacman.cache_dirs is empty), as pacman -Scc would:
// left there, they would ship in the image and stay forever in the
// layer's held snapshot (175 MB for the lab profile).
func (st *build) emptyTargetCache() error {
	dir := filepath.Join(st.state.Root, "var/cache/pacman/pkg")
	ents, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("empty the target's package cache: %w", err)
	}
	var n int
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return fmt.Errorf("empty the target's package cache: %w", err)
		}
		n++
	}
	st.b.log.Debug("emptied the target's package cache", "dir", dir, "entries", n)
	return nil
}

// layerSnapshot snapshots the root boot environment as layer, holds the
// snapshot, and clones it into a boot environment when configured. Only
// the root dataset is snapshotted: user data (home, srv...) is not part
// of an operating system layer.
func (st *build) layerSnapshot(ctx context.Context, layer string) error {
	z := st.zfs()
	snap := st.state.RootDataset + "@" + layer
	if err := z.Snapshot(ctx, zfs.SnapshotOptions{}, snap); err != nil {
		return err
	}
	if err := z.Hold(ctx, st.cfg.HoldTag, snap, zfs.HoldOptions{}); err != nil {
		return err
	}
	for _, be := range st.cfg.BootEnvironments {
		if be == layer {
			clone := st.state.Pool + "/" + path.Dir(st.cfg.RootDataset) + "/" + be
			// The clone boots with / on it: mountpoint=/ and noauto, like
			// the root, so only the initramfs mounts it.
			if err := z.Clone(ctx, snap, clone, zfs.CloneOptions{Props: map[string]string{"canmount": "noauto", "mountpoint": "/"}}); err != nil {
				return err
			}
		}
	}
	return nil
}

// emptyMachineID leaves /etc/machine-id empty: every boot environment and
// container made from the image generates its own on first boot.
func emptyMachineID(root string) error {
	p := filepath.Join(root, "etc/machine-id")
	if _, err := os.Stat(filepath.Join(root, "etc")); err != nil {
		return err
	}
	return fsx.WriteFile(p, nil, 0o444)
}

func stageBase(ctx context.Context, st *build) error {
	if err := st.install(ctx, st.cfg.Packages.Base); err != nil {
		return err
	}
	if err := emptyMachineID(st.state.Root); err != nil {
		return err
	}
	if err := st.layerSnapshot(ctx, LayerBase); err != nil {
		return err
	}
	if c := st.cfg.MinirootClone; c != "" {
		// Read-only, for systemd-nspawn under /var/lib/machines.
		return st.zfs().Clone(ctx, st.state.RootDataset+"@"+LayerBase, st.state.Pool+"/"+c,
			zfs.CloneOptions{Props: map[string]string{"readonly": "on"}, Parents: true})
	}
	return nil
}

func stageBootable(ctx context.Context, st *build) error {
	return st.install(ctx, st.cfg.Packages.Bootable)
}

func stageWorkstation(ctx context.Context, st *build) error {
	if len(st.cfg.Packages.Workstation) == 0 {
		return nil
	}
	if err := st.install(ctx, st.cfg.Packages.Workstation); err != nil {
		return err
	}
	if err := st.writePackageList(); err != nil {
		return err
	}
	return st.layerSnapshot(ctx, LayerWorkstation)
}

func stageFinalize(ctx context.Context, st *build) error {
	z := st.zfs()
	pool := st.state.Pool
	if err := z.SetPoolProperty(ctx, pool, "bootfs", st.state.RootDataset); err != nil {
		return err
	}
	snap := st.state.RootDataset + "@installed"
	if err := z.Snapshot(ctx, zfs.SnapshotOptions{}, snap); err != nil {
		return err
	}
	if err := z.Hold(ctx, st.cfg.HoldTag, snap, zfs.HoldOptions{}); err != nil {
		return err
	}
	for _, e := range st.cfg.environments() {
		st.res.Environments = append(st.res.Environments, e.Dataset)
	}
	st.res.Packages = st.packages
	st.res.Kernel = st.kver
	st.res.HostID = st.hostID
	if err := exportPool(ctx, z, pool, zfs.ExportOptions{}); err != nil {
		if h := procs.Holders(st.state.Root); len(h) > 0 {
			err = fmt.Errorf("%w; held by: %s", err, strings.Join(h, "; "))
		}
		return err
	}
	st.state.Root = ""
	if err := st.target.loop.Detach(ctx, time.Minute); err != nil {
		return err
	}
	st.state.Device = ""
	st.state.Partitions = nil
	if st.target.block {
		return nil
	}
	f, err := os.OpenFile(st.target.path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

func stageConvert(ctx context.Context, st *build) error {
	for _, o := range st.cfg.Outputs {
		if st.cfg.Overwrite {
			if err := os.Remove(o.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
		st.res.Outputs = append(st.res.Outputs, o)
		name := filepath.Base(o.Path)
		report := func(pct int) {
			if pct%10 == 0 {
				st.b.progress(Progress{Kind: Message, Stage: hooks.StageConvert, Message: fmt.Sprintf("%s (%s): %d%%", name, o.Format, pct)})
			}
		}
		if err := writeOutput(ctx, st.b.runner, st.target.path, o, report); err != nil {
			return err
		}
		// Outputs are the caller's files, not the image's: they get the
		// caller's umask as the image file does (qemu-img ran with the
		// build's).
		mask, err := fsx.Umask()
		if err != nil {
			return err
		}
		if err := os.Chmod(o.Path, 0o644&^mask); err != nil {
			return err
		}
	}
	return nil
}

// writeFile writes name (relative to root) with exactly mode, and any
// missing parent directory with 0755, whatever the caller's umask.
func writeFile(root, name string, data []byte, mode os.FileMode) error {
	return fsx.WriteFile(filepath.Join(root, name), data, mode)
}

// removeEmptyDirs removes dir and its subdirectories bottom-up, only while
// they are empty: never os.RemoveAll, which would delete the files of
// anything still mounted below.
func removeEmptyDirs(dir string) error {
	var dirs []string
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	for i := len(dirs) - 1; i >= 0; i-- {
		_ = os.Remove(dirs[i])
	}
	if _, err := os.Stat(dir); err == nil {
		return fmt.Errorf("%s is not empty; left in place", dir)
	}
	return nil
}

// exportPool exports, retrying for up to a minute while the pool is busy:
// when a process with a mount namespace of its own ends (a chrooted
// command, libalpm's install thread), the kernel releases its copies of
// the datasets' mounts asynchronously, and under emulation with dirty
// data that can take seconds.
func exportPool(ctx context.Context, z *zfs.Client, pool string, opt zfs.ExportOptions) error {
	var err error
	for i := 0; i < 240; i++ {
		if err = z.ExportPool(ctx, pool, opt); !errors.Is(err, zfs.ErrBusy) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(250 * time.Millisecond):
		}
	}
	return err
}

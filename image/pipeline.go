package image

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/paczfs/paczfs/boot"
	"github.com/paczfs/paczfs/disk"
	"github.com/paczfs/paczfs/hooks"
	"github.com/paczfs/paczfs/internal/fsx"
	"github.com/paczfs/paczfs/zfs"
)

// stageDef pairs a stage with its code. Adopt runs after a hook replaced
// the stage: it takes what the hook made from hooks.State into the
// builder's own record (what later stages use), or fails naming the
// State field the hook did not set. nil: the stage hands nothing on.
type stageDef struct {
	stage hooks.Stage
	run   stageFunc
	adopt stageFunc
}

// pipeline is the build, in order (hooks.Stages is the same order). Each
// stage's code is in its own file, numbered in this order (s01_checks.go
// ... s15_convert.go); what each hands on is documented per stage in
// package hooks.
func pipeline() []stageDef {
	return []stageDef{
		{hooks.StageChecks, stageChecks, adoptChecks},
		{hooks.StageTarget, stageTarget, adoptTarget},
		{hooks.StagePartition, stagePartition, adoptPartition},
		{hooks.StageESP, stageESP, adoptESP},
		{hooks.StagePool, stagePool, adoptPool},
		{hooks.StageDatasets, stageDatasets, adoptDatasets},
		{hooks.StagePacman, stagePacman, nil},
		{hooks.StageBase, stageBase, nil},
		{hooks.StageBootable, stageBootable, nil},
		{hooks.StageSystem, stageSystem, adoptSystem},
		{hooks.StageInitramfs, stageInitramfs, adoptInitramfs},
		{hooks.StageBootloader, stageBootloader, nil},
		{hooks.StageWorkstation, stageWorkstation, nil},
		{hooks.StageFinalize, stageFinalize, nil},
		{hooks.StageConvert, stageConvert, nil},
	}
}

// ErrNotProvided is what a replacing hook's StageError wraps when the hook
// did not set a State field later stages need.
var ErrNotProvided = errors.New("a replacing hook did not provide what later stages need")

func notProvided(field, fix string) error {
	return fmt.Errorf("%w: State.%s is empty (%s)", ErrNotProvided, field, fix)
}

// adoptChecks: the hook checked the host; the builder still needs the
// plan of what it will create, which is pure (the configuration alone).
func adoptChecks(ctx context.Context, st *build) error {
	plan, err := st.cfg.layout().Plan(st.cfg.Size)
	if err != nil && st.cfg.BlockDevice == "" {
		return fmt.Errorf("layout: %w", err)
	}
	st.plan = &buildPlan{Disk: plan, Temp: tempPoolName(st.cfg.PoolName)}
	return nil
}

// adoptTarget: the hook made or chose the disk, State.ImageFile (a file)
// or State.Device (a block device); the builder attaches its loop device
// to it, as after its own target stage, and never removes the hook's file.
func adoptTarget(ctx context.Context, st *build) error {
	if err := st.ensureWorkDir(); err != nil {
		return err
	}
	path := st.state.ImageFile
	if path == "" {
		path = st.state.Device
	}
	if path == "" {
		return notProvided("ImageFile or State.Device", "set one to the disk the build writes")
	}
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("the disk the replacing hook provided: %w", err)
	}
	block := fi.Mode()&os.ModeDevice != 0
	size, err := disk.DiskSize(path)
	if err != nil {
		return err
	}
	plan, err := st.cfg.layout().Plan(size)
	if err != nil {
		return fmt.Errorf("layout on the hook's disk (%d bytes): %w", size, err)
	}
	st.target = &targetInfo{path: path, block: block, size: size, plan: plan}
	st.res.Disk = path
	return st.attachLoop(ctx)
}

// adoptPartition: the hook wrote a partition table; the builder reads it
// and finds the ESP and ZFS partitions' devices.
func adoptPartition(ctx context.Context, st *build) error {
	if err := st.needTarget(); err != nil {
		return err
	}
	t := st.target
	plan, err := disk.ReadGPT(t.path)
	if err != nil {
		return fmt.Errorf("the partition table the replacing hook wrote: %w", err)
	}
	t.plan = plan
	return st.partitionDevices(ctx)
}

// adoptESP: the hook formatted the ESP; the builder reaches its files.
func adoptESP(ctx context.Context, st *build) error {
	if err := st.needTarget(); err != nil {
		return err
	}
	if st.state.ESP == nil {
		st.state.ESP = espFiles{path: st.target.path, plan: st.target.plan}
	}
	return nil
}

// adoptPool: the hook created (or imported) the pool with an altroot.
func adoptPool(ctx context.Context, st *build) error {
	s := &st.state
	if s.Pool == "" {
		return notProvided("Pool", "set it to the pool's imported name")
	}
	if s.Root == "" {
		return notProvided("Root", "set it to the pool's altroot, where the root dataset is mounted")
	}
	if s.PoolName == "" {
		s.PoolName = st.cfg.PoolName
	}
	if s.RootDataset == "" {
		s.RootDataset = s.Pool + "/" + st.cfg.RootDataset
	}
	pool := s.Pool
	if err := st.record.update(func(r *record) { r.Pools = append(r.Pools, pool) }); err != nil {
		return err
	}
	st.stack.Push("export pool "+pool, func(ctx context.Context) error {
		return exportPool(ctx, st.zfs(), pool, zfs.ExportOptions{Force: true})
	})
	return nil
}

// adoptDatasets: the root dataset must be mounted at Root.
func adoptDatasets(ctx context.Context, st *build) error {
	if st.state.RootDataset == "" {
		return notProvided("RootDataset", "set it to the root boot environment's dataset")
	}
	if fi, err := os.Stat(st.state.Root); err != nil || !fi.IsDir() {
		return notProvided("Root", "the root dataset must be mounted there")
	}
	return nil
}

// adoptSystem: the hostid, for the Result, from the target's file.
func adoptSystem(ctx context.Context, st *build) error {
	data, err := os.ReadFile(filepath.Join(st.state.Root, "etc/hostid"))
	if err == nil && len(data) == 4 {
		st.hostID = fmt.Sprintf("%02x%02x%02x%02x", data[3], data[2], data[1], data[0])
	}
	return nil
}

// adoptInitramfs: the kernel version from the target's kernels, when
// there are any (the bootloader stage, which needs one, says so if not).
func adoptInitramfs(ctx context.Context, st *build) error {
	if kvers, err := boot.KernelVersions(st.state.Root, st.cfg.Boot.Kernel); err == nil && len(kvers) > 0 {
		st.kver = kvers[len(kvers)-1]
	}
	return nil
}

// needTarget reports a missing disk: the target stage (or the hook that
// replaced it) provided none.
func (st *build) needTarget() error {
	if st.target == nil || st.target.loop == nil {
		return notProvided("Device", "the target stage provided no disk")
	}
	return nil
}

// ensureWorkDir makes the build's work directory (the pool's altroot
// lives there), once.
func (st *build) ensureWorkDir() error {
	if st.workDir != "" {
		return nil
	}
	work := st.cfg.WorkDir
	temp := work == ""
	if temp {
		// Named and recorded before it is made: a kill in between
		// leaves nothing Recover does not know. Made exclusively.
		work = filepath.Join(os.TempDir(), "paczfs-build-"+st.record.id())
	}
	// As the kernel names it (mounts, processes' roots): clean, without
	// links, or Recover would not find what is below it.
	work, err := canonicalDir(work)
	if err != nil {
		return fmt.Errorf("work_dir: %w", err)
	}
	if err := st.record.update(func(r *record) { r.WorkDir = work }); err != nil {
		return err
	}
	if temp {
		if err := os.Mkdir(work, 0o700); err != nil {
			return err
		}
		if err := os.Chmod(work, 0o700); err != nil {
			return err
		}
	} else if err := fsx.Mkdir(work, 0o700); err != nil {
		return err
	}
	st.workDir = work
	st.stack.Push("remove work directory "+work, func(context.Context) error { return removeEmptyDirs(work) })
	return nil
}

// canonicalDir is dir with its links resolved: the deepest part that
// exists, resolved, and the rest as given (cleaned).
func canonicalDir(dir string) (string, error) {
	dir = filepath.Clean(dir)
	var rest []string
	for p := dir; ; p = filepath.Dir(p) {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			return filepath.Join(append([]string{r}, rest...)...), nil
		} else if !errors.Is(err, os.ErrNotExist) {
			return "", err
		}
		if p == filepath.Dir(p) {
			return dir, nil
		}
		rest = append([]string{filepath.Base(p)}, rest...)
	}
}

// attachLoop attaches the build's loop device to the target.
func (st *build) attachLoop(ctx context.Context) error {
	backing, err := disk.BackingPath(st.target.path)
	if err != nil {
		return err
	}
	if err := st.record.update(func(r *record) { r.Backing = backing }); err != nil {
		return err
	}
	loop, err := disk.Attach(ctx, st.target.path, disk.LoopOptions{PartScan: true})
	if err != nil {
		return err
	}
	st.target.loop = loop
	st.stack.Push("detach "+loop.Path, func(ctx context.Context) error { return loop.Detach(ctx, time.Minute) })
	st.state.Device = loop.Path
	return nil
}

// partitionDevices rescans the loop device and waits for the partitions
// of the target's plan, which must have an ESP and a ZFS partition.
func (st *build) partitionDevices(ctx context.Context) error {
	t := st.target
	for _, r := range []disk.Role{disk.RoleESP, disk.RoleZFS} {
		if _, ok := t.plan.Find(r); !ok {
			return fmt.Errorf("the partition table has no %s partition (layout)", r)
		}
	}
	if err := t.loop.Rescan(); err != nil {
		return err
	}
	var nums []int
	st.state.Partitions = map[string]string{}
	for _, p := range t.plan.Partitions {
		nums = append(nums, p.Number)
		st.state.Partitions[string(p.Role)] = t.loop.PartitionPath(p.Number)
	}
	return t.loop.WaitPartitions(ctx, 30*time.Second, nums...)
}

package image

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"

	"github.com/paczfs/paczfs/disk"
	"github.com/paczfs/paczfs/pacman"
	"github.com/paczfs/paczfs/release"
	"github.com/paczfs/paczfs/zfs"
)

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
	st.dryRun = true
	if err := stageChecks(ctx, st); err != nil {
		return nil, err
	}
	p := st.plan
	return &BuildPlan{Disk: p.Disk, PoolCommand: p.PoolArgs, DatasetCommands: p.Datasets, Packages: p.Packages,
		Environments: st.envNames(), From: st.previous, Modules: st.modules}, nil
}

// BuildPlan is the plan a dry run shows.
type BuildPlan struct {
	Disk            disk.Plan
	PoolCommand     []string
	DatasetCommands [][]string
	Packages        *pacman.Plan
	Environments    []string
	// From is the release a derived build starts from (Config.Release):
	// its full stream is what the root's dataset command receives on
	// standard input, and Packages is the whole set the sync reaches.
	From *release.Manifest
	// Modules are the choices made for packages.module_pairs: the module
	// built for the repositories' kernel, or its fallback, and why.
	Modules []ModuleChoice
}

func (st *build) envNames() []string {
	var names []string
	for _, e := range st.cfg.environments() {
		names = append(names, e.Dataset)
	}
	return names
}

// tempPoolName is the name the pool has while this host has it imported:
// unique, so it never clashes with the build host's own pools.
func tempPoolName(name string) string {
	var r [3]byte
	_, _ = rand.Read(r[:])
	return fmt.Sprintf("%s-paczfs-%s", name, hex.EncodeToString(r[:]))
}

func stageChecks(ctx context.Context, st *build) error {
	cfg := st.cfg
	size := cfg.Size
	if cfg.BlockDevice != "" {
		s, err := disk.CheckBlockDevice(ctx, cfg.BlockDevice, disk.BlockDeviceOptions{Wipe: cfg.Overwrite, Runner: st.b.runner})
		if err != nil {
			return fmt.Errorf("block_device: %w", err)
		}
		size = s
	}
	dplan, err := cfg.layout().Plan(size)
	if err != nil {
		return fmt.Errorf("layout: %w", err)
	}
	if cfg.Release.derived() {
		// Checked by New too; read again, as the files may have changed.
		prev, err := cfg.previousRelease()
		if err != nil {
			return fmt.Errorf("release.from: %w", err)
		}
		if prev.Disk == nil {
			return fmt.Errorf("release.from: release %s records no disk identity", prev.Version)
		}
		if dplan, err = identityPlan(dplan, prev.Disk); err != nil {
			return fmt.Errorf("release.from: %w", err)
		}
		st.previous = prev
	}
	temp := tempPoolName(cfg.PoolName)
	poolArgs, err := zfs.CreatePoolArgs(st.poolSpec(temp, "/ALTROOT", []string{"/dev/DISK-zfs-partition"}))
	if err != nil {
		return fmt.Errorf("pool: %w", err)
	}
	if err := st.pairModules(ctx); err != nil {
		return err
	}
	st.planLayerCache(ctx)
	var dsArgs [][]string
	for _, d := range cfg.Datasets {
		a, err := zfs.CreateDatasetArgs(temp+"/"+d.Name, d.Props, zfs.CreateOptions{Parents: true})
		switch {
		case d.Name != cfg.RootDataset:
		case cfg.Release.derived():
			a, err = zfs.ReceiveArgs(temp+"/"+d.Name, zfs.ReceiveOptions{Props: d.Props})
		case st.layers != nil && st.layers.base.hit != nil:
			a, err = zfs.ReceiveArgs(temp+"/"+d.Name+"@"+LayerBase, zfs.ReceiveOptions{Props: d.Props})
		}
		if err != nil {
			return fmt.Errorf("datasets: %w", err)
		}
		dsArgs = append(dsArgs, a)
	}
	names := append(append(append([]string{}, cfg.Packages.Base...), st.bootablePackages()...), cfg.Packages.Workstation...)
	pplan, err := st.b.installer.Plan(ctx, names)
	if err != nil {
		return fmt.Errorf("packages: %w", err)
	}
	if err := st.checkLocales(ctx, pplan); err != nil {
		return err
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

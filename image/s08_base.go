package image

import (
	"context"
	"os"
	"path"
	"path/filepath"
	"slices"

	"github.com/paczfs/paczfs/bootenv"
	"github.com/paczfs/paczfs/internal/fsx"
	"github.com/paczfs/paczfs/zfs"
)

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
			// Built environments are listed good (package bootenv).
			if err := z.Clone(ctx, snap, clone, zfs.CloneOptions{Props: map[string]string{"canmount": "noauto", "mountpoint": "/",
				bootenv.PropState: string(bootenv.StateGood)}}); err != nil {
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

// stageBase installs the base layer; a derived build instead brings the
// received root to the whole package set at once (it has no layers).
func stageBase(ctx context.Context, st *build) error {
	if st.previous != nil {
		return st.syncPackages(ctx)
	}
	n := len(st.packages)
	if st.layers != nil && st.layers.received {
		if err := st.takeCachedBase(ctx); err != nil {
			return err
		}
	} else if err := st.install(ctx, st.cfg.Packages.Base); err != nil {
		return err
	}
	if err := emptyMachineID(st.state.Root); err != nil {
		return err
	}
	if err := st.snapshotBase(ctx, slices.Clone(st.packages[n:])); err != nil {
		return err
	}
	if c := st.cfg.MinirootClone; c != "" {
		// Read-only, for systemd-nspawn under /var/lib/machines.
		return st.zfs().Clone(ctx, st.state.RootDataset+"@"+LayerBase, st.state.Pool+"/"+c,
			zfs.CloneOptions{Props: map[string]string{"readonly": "on"}, Parents: true})
	}
	return nil
}

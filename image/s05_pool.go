package image

import (
	"context"
	"errors"
	"path/filepath"
	"time"

	"github.com/paczfs/paczfs/disk"
	"github.com/paczfs/paczfs/internal/fsx"
	"github.com/paczfs/paczfs/zfs"
)

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

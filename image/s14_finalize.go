package image

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/paczfs/paczfs/bootenv"
	"github.com/paczfs/paczfs/internal/procs"
	"github.com/paczfs/paczfs/release"
	"github.com/paczfs/paczfs/zfs"
)

func stageFinalize(ctx context.Context, st *build) error {
	z := st.zfs()
	pool := st.state.Pool
	if err := z.SetPoolProperty(ctx, pool, "bootfs", st.state.RootDataset); err != nil {
		return err
	}
	// The root is the default environment, listed good (package bootenv).
	if err := z.SetProperties(ctx, st.state.RootDataset, map[string]string{bootenv.PropState: string(bootenv.StateGood)}); err != nil {
		return err
	}
	snap := st.state.RootDataset + "@installed"
	if err := z.Snapshot(ctx, zfs.SnapshotOptions{}, snap); err != nil {
		return err
	}
	if err := z.Hold(ctx, st.cfg.HoldTag, snap, zfs.HoldOptions{}); err != nil {
		return err
	}
	if st.cfg.Release.Dir != "" {
		// The release version apply compares against (no downgrade).
		if err := z.SetProperties(ctx, st.state.RootDataset, map[string]string{release.PropVersion: st.cfg.Release.Version}); err != nil {
			return err
		}
		if err := st.writeRelease(ctx); err != nil {
			return err
		}
	}
	for _, e := range st.cfg.environments() {
		st.res.Environments = append(st.res.Environments, e.Dataset)
	}
	st.res.Packages = st.packages
	st.res.Kernel = st.kver
	st.res.HostID = st.hostID
	if !st.target.block {
		// What the build freed (files rewritten, temporary datasets, old
		// metadata) becomes holes in the image file again: the file and
		// every output hold only the pool's live data. The pool's
		// autotrim leaves recent and small frees; a disk keeps its own.
		// A destroyed dataset (the temporary package cache) is freed in
		// the background: wait for it, or its blocks stay in the file.
		if err := z.WaitFree(ctx, pool); err != nil {
			if ctx.Err() != nil {
				return err
			}
			st.warn("waiting for the pool to free what the build destroyed: %v", err)
		}
		if err := z.TrimPool(ctx, pool, zfs.TrimOptions{Wait: true}); err != nil {
			if ctx.Err() != nil {
				return err
			}
			st.warn("the pool's free space was not trimmed, so the image file and its outputs keep blocks the build freed: %v", err)
		}
	}
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

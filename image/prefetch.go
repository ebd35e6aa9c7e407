package image

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/paczfs/paczfs/hooks"
	"github.com/paczfs/paczfs/pacman"
	"github.com/paczfs/paczfs/zfs"
)

// targetCache is the target's own package cache, where the installer
// downloads without pacman.cache_dirs.
const targetCache = "/var/cache/pacman/pkg"

// prefetchDataset is the temporary dataset the workstation layer's
// packages download into during the initramfs without a host cache:
// mounted over the target's own cache, so the root dataset (and
// @bootable, taken meanwhile) never holds them. Destroyed after the
// workstation install.
const prefetchDataset = "paczfs-prefetch"

// prefetchWorkstation starts downloading the workstation layer's packages
// and returns the wait for it: with cancel, it stops the download first.
// The generator and this download share nothing: the download reads the
// target's package database and writes only a package cache (and the sync
// databases, which the workstation install refreshes again), so the
// initramfs is what it would be without it. The workstation install then
// finds its packages cached. A failed download only warns: the install
// downloads what it lacks, as without it.
//
// The cache is the build host's (pacman.cache_dirs) or, without one, a
// temporary dataset mounted over the target's own cache
// (prefetchDataset): files downloaded into the root dataset itself would
// be in @bootable, taken before the workstation layer.
//
// Nothing is fetched in a derived build (its workstation layer is the
// Sync of the whole set), or when a hook replaces the workstation stage.
func (st *build) prefetchWorkstation(ctx context.Context) (wait func(cancel bool)) {
	if !st.prefetching() {
		return func(bool) {}
	}
	if len(st.cfg.Pacman.CacheDirs) == 0 {
		if err := st.mountPrefetchDataset(ctx); err != nil {
			if ctx.Err() == nil {
				st.warn("workstation packages not downloaded during the initramfs (the workstation stage downloads them): %v", err)
			}
			return func(bool) {}
		}
	}
	names := st.cfg.Packages.Workstation
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	var res *pacman.Result
	var err error
	go func() {
		defer close(done)
		res, err = st.b.installer.Download(ctx, st.state.Root, names)
	}()
	return func(stop bool) {
		if stop {
			cancel()
		}
		<-done
		stopped := ctx.Err() != nil
		cancel()
		switch {
		case err != nil && stopped:
			st.b.log.Debug("workstation packages: download stopped", "err", err)
		case err != nil:
			st.warn("workstation packages not downloaded during the initramfs (the workstation stage downloads them): %v", err)
		default:
			st.b.log.Info("workstation packages downloaded during the initramfs", "packages", len(res.Installed), "bytes", res.Downloaded, "took", res.Took.Round(time.Millisecond))
		}
	}
}

// prefetching says whether prefetchWorkstation fetches anything.
func (st *build) prefetching() bool {
	replaced := slices.ContainsFunc(st.b.hooks, func(h hooks.Hook) bool {
		return h.Stage() == hooks.StageWorkstation && h.When() == hooks.Replace
	})
	if len(st.cfg.Packages.Workstation) == 0 || st.previous != nil || replaced || st.state.Root == "" {
		return false
	}
	if len(st.cfg.Pacman.CacheDirs) > 0 {
		return true
	}
	why := st.prefetchDatasetUnusable()
	if why != "" {
		st.b.log.Info("workstation packages are not downloaded during the initramfs", "why", why)
	}
	return why == ""
}

// prefetchDatasetUnusable says why the target's cache cannot take a
// temporary dataset ("" when it can): the pool is not known, the cache
// directory is missing or not empty, or it is not in the root dataset (a
// dataset of the layout is mounted at or above it, other than the root).
func (st *build) prefetchDatasetUnusable() string {
	if st.state.Pool == "" {
		return "no pool"
	}
	ents, err := os.ReadDir(filepath.Join(st.state.Root, targetCache))
	switch {
	case err != nil:
		return "the target's package cache: " + err.Error()
	case len(ents) > 0:
		return "the target's package cache is not empty"
	}
	for _, d := range st.cfg.Datasets {
		mp := filepath.Clean(d.Props["mountpoint"])
		if d.Name == st.cfg.RootDataset || !filepath.IsAbs(mp) || mp == "/" || d.Props["canmount"] == "off" {
			continue
		}
		if targetCache == mp || strings.HasPrefix(targetCache, mp+"/") {
			return "dataset " + d.Name + " is mounted at " + mp
		}
	}
	return ""
}

// mountPrefetchDataset creates prefetchDataset (canmount=noauto: a
// leftover would never mount by itself) and mounts it over the target's
// own cache. The workstation stage destroys it, or the build's cleanup
// when the build fails first. A dataset made but not mounted is destroyed
// at once; if that fails too, the workstation stage tries again and fails
// the build rather than ship it.
func (st *build) mountPrefetchDataset(ctx context.Context) error {
	name := st.state.Pool + "/" + prefetchDataset
	z := st.zfs()
	st.prefetchDS = name
	st.stack.Push("destroy "+name, func(ctx context.Context) error { return st.destroyPrefetchDataset(ctx) })
	if err := z.CreateDataset(ctx, name, map[string]string{"mountpoint": targetCache, "canmount": "noauto"}, zfs.CreateOptions{}); err != nil {
		if ok, xerr := z.Exists(ctx, name); ok || xerr != nil {
			st.prefetchMade = true // made, or unknown: destroy it
			err = errors.Join(err, st.destroyPrefetchDataset(ctx))
		}
		return err
	}
	st.prefetchMade = true
	if err := z.Mount(ctx, name); err != nil {
		return errors.Join(err, st.destroyPrefetchDataset(ctx))
	}
	return nil
}

// destroyPrefetchDataset destroys prefetchDataset (unmounting it), once.
// Busy is tried again for up to a minute, as exportPool does: the mount
// namespaces of the installer's threads and chrooted commands hold copies
// of its mount that the kernel releases asynchronously.
func (st *build) destroyPrefetchDataset(ctx context.Context) error {
	if st.prefetchDS == "" || !st.prefetchMade {
		st.prefetchDS = ""
		return nil
	}
	var err error
	for range 240 {
		if err = st.zfs().Destroy(ctx, st.prefetchDS, zfs.DestroyOptions{}); !errors.Is(err, zfs.ErrBusy) {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(250 * time.Millisecond):
			continue
		}
		break
	}
	if err != nil && !errors.Is(err, zfs.ErrNotFound) {
		return errors.Join(errors.New("the temporary package cache was not destroyed"), err)
	}
	st.prefetchDS, st.prefetchMade = "", false
	return nil
}

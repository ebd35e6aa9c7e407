package image

import (
	"context"
	"slices"
	"time"

	"github.com/paczfs/paczfs/hooks"
	"github.com/paczfs/paczfs/pacman"
)

// prefetchWorkstation starts downloading the workstation layer's packages
// into the build's package cache (pacman.cache_dirs on the build host)
// and returns the wait for it: with cancel, it stops the download first.
// The generator and this download share nothing: the download reads the
// target's package database and writes only the host's cache (and the
// sync databases, which the workstation install refreshes again), so the
// initramfs is what it would be without it. The workstation install then
// finds its packages cached. A failed download only warns: the install
// downloads what it lacks, as without it.
//
// Nothing is fetched without a host cache (the target's own cache would
// carry the files into @bootable, taken before the workstation layer), in
// a derived build (its workstation layer is the Sync of the whole set),
// or when a hook replaces the workstation stage.
func (st *build) prefetchWorkstation(ctx context.Context) (wait func(cancel bool)) {
	if !st.prefetching() {
		return func(bool) {}
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
	return len(st.cfg.Packages.Workstation) > 0 && st.previous == nil &&
		len(st.cfg.Pacman.CacheDirs) > 0 && !replaced && st.state.Root != ""
}

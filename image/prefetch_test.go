package image

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/paczfs/paczfs/hooks"
	"github.com/paczfs/paczfs/hooks/hookstest"
	"github.com/paczfs/paczfs/release"
	"github.com/paczfs/paczfs/zfs"
)

// The caller's progress function is never called by two goroutines at
// once, though downloads, conversions and the build report at once.
func TestProgressIsCalledByOneGoroutineAtATime(t *testing.T) {
	var inside, overlaps, calls atomic.Int32
	b, err := New(testConfig(t), hostOK, WithProgress(func(Progress) {
		if inside.Add(1) > 1 {
			overlaps.Add(1)
		}
		calls.Add(1)
		time.Sleep(100 * time.Microsecond)
		inside.Add(-1)
	}))
	require.NoError(t, err)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				b.progress(Progress{Kind: Message, Message: "x"})
			}
		}()
	}
	wg.Wait()
	assert.EqualValues(t, 400, calls.Load())
	assert.Zero(t, overlaps.Load())
}

// The workstation layer is fetched ahead only where that cannot change
// the image: into a host cache or a temporary dataset over the target's
// own (empty, in the root dataset), in a fresh build whose workstation
// stage is the builder's own, with packages to fetch. Otherwise nothing
// starts and the wait returns at once.
func TestPrefetchOnlyWhereItCannotChangeTheImage(t *testing.T) {
	base := func(edit func(c *Config)) *build {
		c := testConfig(t)
		c.Pacman.CacheDirs = []string{t.TempDir()}
		c.Packages.Workstation = []string{"tmux"}
		if edit != nil {
			edit(&c)
		}
		b, err := New(c, hostOK)
		require.NoError(t, err)
		root := t.TempDir()
		require.NoError(t, os.MkdirAll(filepath.Join(root, targetCache), 0o755))
		return &build{b: b, cfg: &b.cfg, state: hooks.State{Root: root, Pool: "zroot-paczfs-test01"}}
	}
	noHostCache := func(c *Config) { c.Pacman.CacheDirs = nil }
	for name, st := range map[string]*build{
		"no host cache, a full target cache": func() *build {
			st := base(noHostCache)
			require.NoError(t, os.WriteFile(filepath.Join(st.state.Root, targetCache, "x.pkg.tar.zst"), nil, 0o644))
			return st
		}(),
		"no host cache, no target cache": func() *build {
			st := base(noHostCache)
			require.NoError(t, os.Remove(filepath.Join(st.state.Root, targetCache)))
			return st
		}(),
		"no host cache, the target cache in a dataset of the layout": base(func(c *Config) {
			c.Pacman.CacheDirs = nil
			c.Datasets = append(c.Datasets, zfs.DatasetSpec{Name: "data/var", Props: map[string]string{"mountpoint": "/var"}})
		}),
		"no host cache, no pool": func() *build { st := base(noHostCache); st.state.Pool = ""; return st }(),
		"no packages":            func() *build { st := base(nil); st.cfg.Packages.Workstation = nil; return st }(),
		"derived build":          func() *build { st := base(nil); st.previous = &release.Manifest{}; return st }(),
		"replaced stage": func() *build {
			st := base(nil)
			st.b.hooks = append(st.b.hooks, hooks.Func("mine", hooks.StageWorkstation, hooks.Replace, func(context.Context, *hooks.State) error { return nil }))
			return st
		}(),
	} {
		t.Run(name, func(t *testing.T) {
			assert.False(t, st.prefetching(), "nothing to fetch ahead")
		})
	}
	assert.True(t, base(nil).prefetching())
	assert.True(t, base(noHostCache).prefetching(), "into a temporary dataset")
}

// Without a host cache the packages download into a temporary dataset
// mounted over the target's own cache: created before the download,
// destroyed by the workstation stage or, when the build fails first, by
// its cleanup; never twice.
func TestPrefetchDatasetOverTheTargetCache(t *testing.T) {
	c := testConfig(t)
	c.Packages.Workstation = []string{"tmux"}
	fake := &hookstest.FakeRunner{}
	b, err := New(c, hostOK, WithRunner(fake))
	require.NoError(t, err)
	root := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(root, targetCache), 0o755))
	st := &build{b: b, cfg: &b.cfg, res: &Result{}, state: hooks.State{Root: root, Pool: "zroot-paczfs-test01"}}
	st.prefetchWorkstation(t.Context())(false)
	assert.Equal(t, []string{"zfs create -o canmount=noauto -o mountpoint=/var/cache/pacman/pkg zroot-paczfs-test01/paczfs-prefetch", "zfs mount zroot-paczfs-test01/paczfs-prefetch"}, fake.Calls())
	require.NoError(t, st.destroyPrefetchDataset(t.Context()))
	require.NoError(t, st.stack.Unwind(t.Context()), "the cleanup after the stage's destroy")
	assert.Equal(t, "zfs destroy zroot-paczfs-test01/paczfs-prefetch", fake.Calls()[2])
	assert.Len(t, fake.Calls(), 3, "destroyed once")

	// A build that fails before its workstation stage: the cleanup
	// destroys it.
	fake2 := &hookstest.FakeRunner{}
	st.b.runner = fake2
	st.prefetchWorkstation(t.Context())(true)
	require.NoError(t, st.stack.Unwind(t.Context()))
	assert.Equal(t, []string{"zfs create -o canmount=noauto -o mountpoint=/var/cache/pacman/pkg zroot-paczfs-test01/paczfs-prefetch", "zfs mount zroot-paczfs-test01/paczfs-prefetch",
		"zfs destroy zroot-paczfs-test01/paczfs-prefetch"}, fake2.Calls())

	// zfs cannot create it: a warning, no download, nothing to destroy.
	fake3 := (&hookstest.FakeRunner{}).On("zfs create", hookstest.Response{ExitCode: 1, Stderr: "cannot create: out of space"}).
		On("zfs list", hookstest.Response{ExitCode: 1, Stderr: "cannot open 'zroot-paczfs-test01/paczfs-prefetch': dataset does not exist"})
	st.b.runner, st.warnings = fake3, nil
	st.prefetchWorkstation(t.Context())(false)
	require.NoError(t, st.stack.Unwind(t.Context()))
	assert.Len(t, fake3.Calls(), 2, "create, and the check that nothing was made")
	require.Len(t, st.warnings, 1)
	assert.Contains(t, st.warnings[0], "out of space")

	// Made but not mounted: destroyed at once, then a warning.
	fake4 := (&hookstest.FakeRunner{}).On("zfs mount", hookstest.Response{ExitCode: 1, Stderr: "cannot mount: directory is not empty"})
	st.b.runner, st.warnings = fake4, nil
	st.prefetchWorkstation(t.Context())(false)
	assert.Equal(t, "zfs destroy zroot-paczfs-test01/paczfs-prefetch", fake4.Calls()[2])
	require.NoError(t, st.stack.Unwind(t.Context()))
	assert.Len(t, fake4.Calls(), 3, "not destroyed twice")
	require.Len(t, st.warnings, 1)

	// Busy a few times (a mount namespace still holds a copy): tried
	// again until it goes.
	busy := hookstest.Response{ExitCode: 1, Stderr: "cannot destroy 'x': dataset is busy"}
	fake5 := (&hookstest.FakeRunner{}).Once("zfs destroy", busy).Once("zfs destroy", busy)
	st.b.runner = fake5
	st.prefetchWorkstation(t.Context())(false)
	require.NoError(t, st.destroyPrefetchDataset(t.Context()))
	assert.Equal(t, 3, strings.Count(strings.Join(fake5.Calls(), "\n"), "zfs destroy"))
}

// A download that fails only warns: the workstation stage downloads what
// the cache lacks, as without it. Cancelled, it stops and says nothing.
func TestPrefetchFailureOnlyWarns(t *testing.T) {
	c := testConfig(t)
	c.Pacman.CacheDirs = []string{t.TempDir()}
	c.Packages.Workstation = []string{"tmux"}
	b, err := New(c, hostOK)
	require.NoError(t, err)
	st := &build{b: b, cfg: &b.cfg, res: &Result{}, state: hooks.State{Root: t.TempDir()}}
	st.prefetchWorkstation(t.Context())(false)
	require.Len(t, st.warnings, 1, "a root without a package database")
	assert.Contains(t, st.warnings[0], "workstation packages not downloaded during the initramfs")

	st.warnings = nil
	st.prefetchWorkstation(t.Context())(true)
	assert.Empty(t, st.warnings, "a stopped download is no warning")
}

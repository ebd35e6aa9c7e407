package image

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/paczfs/paczfs/hooks"
	"github.com/paczfs/paczfs/release"
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
// the image: with a host cache, in a fresh build whose workstation stage
// is the builder's own, with packages to fetch. Otherwise nothing starts
// and the wait returns at once.
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
		return &build{b: b, cfg: &b.cfg, state: hooks.State{Root: t.TempDir()}}
	}
	for name, st := range map[string]*build{
		"no host cache": base(func(c *Config) { c.Pacman.CacheDirs = nil }),
		"no packages":   func() *build { st := base(nil); st.cfg.Packages.Workstation = nil; return st }(),
		"derived build": func() *build { st := base(nil); st.previous = &release.Manifest{}; return st }(),
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

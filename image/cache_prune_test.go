package image

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/paczfs/paczfs/disk"
)

// makeEntry writes a cache entry of size bytes under dir/sub, last used
// age ago, and returns its path.
func makeEntry(t *testing.T, dir, sub, name string, size int, age time.Duration) string {
	t.Helper()
	key := fmt.Sprintf("%064x", 0)
	key = key[:64-len(name)] + name
	p := filepath.Join(dir, sub, key)
	require.NoError(t, os.MkdirAll(p, 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(p, "stream"), make([]byte, size), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(p, "key"), nil, 0o600))
	when := time.Now().Add(-age)
	require.NoError(t, os.Chtimes(p, when, when))
	return p
}

// The least recently used entries go first, across both caches, until
// the rest fits; entries a build used stay whatever their age, and what
// is not an entry (a store in progress) is not touched.
func TestPruneCacheRemovesTheLeastRecentlyUsedFirst(t *testing.T) {
	dir := t.TempDir()
	oldest := makeEntry(t, dir, "layers", "a1", 400, 72*time.Hour)
	used := makeEntry(t, dir, "initramfs", "b2", 300, 48*time.Hour)
	older := makeEntry(t, dir, "initramfs", "c3", 200, 24*time.Hour)
	recent := makeEntry(t, dir, "layers", "d4", 250, time.Hour)
	storing := filepath.Join(dir, "layers", ".new-123")
	require.NoError(t, os.MkdirAll(storing, 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(storing, "stream"), make([]byte, 5000), 0o600))

	res, err := pruneCache(context.Background(), dir, 600, map[string]bool{used: true}, nil)
	require.NoError(t, err)
	assert.Equal(t, []string{oldest, older}, res.Removed)
	assert.Equal(t, int64(600), res.Freed)
	assert.Equal(t, int64(550), res.Kept)
	for _, p := range []string{oldest, older} {
		assert.NoDirExists(t, p)
	}
	for _, p := range []string{used, recent, storing} {
		assert.DirExists(t, p)
	}
	left, err := filepath.Glob(filepath.Join(dir, "*", ".old-*"))
	require.NoError(t, err)
	assert.Empty(t, left, "renamed entries are removed")

	// Under the bound already: nothing goes.
	res, err = PruneCache(context.Background(), dir, 600)
	require.NoError(t, err)
	assert.Empty(t, res.Removed)
	assert.Equal(t, int64(550), res.Kept)

	_, err = PruneCache(context.Background(), dir, -1)
	require.ErrorContains(t, err, "cache_max")
}

// A cache directory that does not exist yet is an empty cache.
func TestPruneCacheOfNothing(t *testing.T) {
	res, err := PruneCache(context.Background(), filepath.Join(t.TempDir(), "none"), disk.MiB)
	require.NoError(t, err)
	assert.Zero(t, res.Kept)
	assert.Equal(t, disk.MiB, res.Max, "the bound applied")
	res, err = PruneCache(context.Background(), filepath.Join(t.TempDir(), "none"), 0)
	require.NoError(t, err)
	assert.Equal(t, DefaultCacheMax, res.Max, "0 is the default bound")
}

// Taking an entry marks it used: a build's hits outlive older entries.
func TestATakenEntryIsMarkedUsed(t *testing.T) {
	dir := t.TempDir()
	p := makeEntry(t, dir, "initramfs", "e5", 10, 72*time.Hour)
	st := &build{res: &Result{}}
	st.usedCacheEntry(p)
	fi, err := os.Stat(p)
	require.NoError(t, err)
	assert.WithinDuration(t, time.Now(), fi.ModTime(), time.Minute)
	assert.True(t, st.cacheUsed[p])

	plan := &build{res: &Result{}, dryRun: true}
	q := makeEntry(t, dir, "initramfs", "f6", 10, 72*time.Hour)
	plan.usedCacheEntry(q)
	fi, err = os.Stat(q)
	require.NoError(t, err)
	assert.Less(t, fi.ModTime(), time.Now().Add(-time.Hour), "Plan writes nothing, not even a time")
}

// A negative cache_max is refused before anything is written.
func TestCacheMaxIsValidated(t *testing.T) {
	cfg := testConfig(t)
	cfg.CacheMax = -disk.MiB
	_, err := New(cfg, hostOK)
	var ce *ConfigError
	require.ErrorAs(t, err, &ce)
	assert.True(t, strings.Contains(err.Error(), "cache_max"), "%v", err)
}

// PruneCache removes entries as root only in a directory a build would
// take as its cache: absolute, not writable by others, its caches not
// links.
func TestPruneCacheRefusesADirectoryABuildWouldRefuse(t *testing.T) {
	_, err := PruneCache(context.Background(), "relative/cache", disk.MiB)
	require.ErrorContains(t, err, "is relative")

	dir := t.TempDir()
	makeEntry(t, dir, "layers", "a1", 10, time.Hour)
	require.NoError(t, os.Chmod(dir, 0o777))
	_, err = PruneCache(context.Background(), dir, 1)
	require.ErrorContains(t, err, "writable by group or others")
	require.NoError(t, os.Chmod(dir, 0o700))

	other := t.TempDir()
	require.NoError(t, os.Symlink(filepath.Join(dir, "layers"), filepath.Join(other, "layers")))
	_, err = PruneCache(context.Background(), other, 1)
	require.ErrorContains(t, err, "is not a directory")
	assert.DirExists(t, filepath.Join(dir, "layers", fmt.Sprintf("%062x", 0)+"a1"), "nothing removed through the link")
}

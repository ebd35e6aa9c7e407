package image

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/paczfs/paczfs/disk"
)

// DefaultCacheMax is how much a cache directory (Config.CacheDir) may
// hold when Config.CacheMax is zero. One build's entries (base,
// bootable, initramfs) hold 104 MB in the lab's stand-in profile, more
// with a real kernel's modules and firmware; against a real mirror the
// base's packages change most days, so each day's build stores new
// entries: without a bound the cache grows by that every day.
const DefaultCacheMax = 10 * disk.GiB

// cacheSubdirs are the caches under Config.CacheDir that PruneCache
// bounds: their entries are directories named by a key's SHA-256.
var cacheSubdirs = [...]string{"layers", "initramfs"}

// PrunedCache is what PruneCache did.
type PrunedCache struct {
	Removed []string  // the entries removed, least recently used first
	Freed   int64     // bytes they held
	Kept    int64     // bytes the entries left hold
	Max     disk.Size // the bound applied: max, or DefaultCacheMax for 0
}

// PruneCache removes the least recently used entries of the cache in dir
// (a Config.CacheDir: its layer and initramfs entries) until what is left
// holds at most max bytes; max 0 is DefaultCacheMax. An entry's use is
// when a build stored or last took it. A build prunes its cache this way
// when it succeeds (Config.CacheMax), keeping the entries it used; call
// PruneCache to bound a cache no build is writing, from a timer say.
// Each entry is renamed out of the way before it is removed, so a build
// looking an entry up sees it whole or not at all. A build holds the
// stream and archives of the layer entries it chose in its checks open
// until it ends, so pruning them meanwhile does not fail it (their space
// comes back when it ends); an initramfs entry removed before the build
// reads it is built instead. dir must be absolute and pass the checks a
// build makes of Config.CacheDir (the user's, writable by no one else).
func PruneCache(ctx context.Context, dir string, max disk.Size) (PrunedCache, error) {
	return pruneCache(ctx, dir, max, nil, nil)
}

type cacheEntry struct {
	path string
	size int64
	used time.Time
}

func pruneCache(ctx context.Context, dir string, max disk.Size, keep map[string]bool, log *slog.Logger) (PrunedCache, error) {
	var res PrunedCache
	if max < 0 {
		return res, fmt.Errorf("cache_max: %s is negative: use 0 for the default (%s)", max, DefaultCacheMax)
	}
	if max == 0 {
		max = DefaultCacheMax
	}
	res.Max = max
	// As a build reads it: absolute, the user's and writable by no one
	// else, its caches real directories (not links), since entries are
	// removed as root.
	if !filepath.IsAbs(dir) {
		return res, fmt.Errorf("cache_dir: %q is relative: give an absolute path", dir)
	}
	if err := checkCacheDir(dir); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return res, nil
		}
		return res, fmt.Errorf("cache_dir: %w", err)
	}
	for _, sub := range cacheSubdirs {
		d := filepath.Join(dir, sub)
		if fi, err := os.Lstat(d); err == nil && !fi.IsDir() {
			return res, fmt.Errorf("cache_dir: %s is not a directory", d)
		}
		if err := checkCacheDir(d); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return res, fmt.Errorf("cache_dir: %w", err)
		}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var entries []cacheEntry
	for _, sub := range cacheSubdirs {
		d := filepath.Join(dir, sub)
		ents, err := os.ReadDir(d)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return res, err
		}
		for _, e := range ents {
			if !e.IsDir() || !isKeyName(e.Name()) {
				continue // .new-* (being stored), anything not an entry
			}
			p := filepath.Join(d, e.Name())
			fi, err := os.Lstat(p)
			if err != nil {
				continue // removed meanwhile
			}
			size, err := treeSize(p)
			if err != nil {
				return res, err
			}
			entries = append(entries, cacheEntry{path: p, size: size, used: fi.ModTime()})
			res.Kept += size
		}
	}
	slices.SortStableFunc(entries, func(a, b cacheEntry) int { return a.used.Compare(b.used) })
	for _, e := range entries {
		if res.Kept <= int64(max) {
			break
		}
		if err := ctx.Err(); err != nil {
			return res, err
		}
		if keep[e.path] {
			continue
		}
		if err := removeEntry(e.path); err != nil {
			return res, err
		}
		log.Info("cache: least recently used entry removed", "entry", e.path, "bytes", e.size, "used", e.used.UTC().Format(time.RFC3339))
		res.Removed = append(res.Removed, e.path)
		res.Freed += e.size
		res.Kept -= e.size
	}
	return res, nil
}

// isKeyName says whether name is a hex SHA-256, as entries are named.
func isKeyName(name string) bool {
	b, err := hex.DecodeString(name)
	return err == nil && len(b) == 32
}

// removeEntry renames the entry to a .old-* name in its directory (an
// atomic disappearance for readers), then removes it.
func removeEntry(p string) error {
	old := filepath.Join(filepath.Dir(p), ".old-"+randomID())
	if err := os.Rename(p, old); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil // another build removed it
		}
		return err
	}
	return os.RemoveAll(old)
}

// treeSize is the bytes the regular files under dir hold.
func treeSize(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n, err
}

// touchEntry marks a cache entry used now (PruneCache removes the least
// recently used first). A failure only means an earlier removal.
func touchEntry(p string) {
	now := time.Now()
	_ = os.Chtimes(p, now, now)
}

// pruneAfterBuild bounds the build's cache (Config.CacheDir) to
// Config.CacheMax once the build succeeded, keeping the entries it used
// or stored. A failure only warns: the image is built.
func (st *build) pruneAfterBuild(ctx context.Context) {
	if st.cfg.CacheDir == "" || st.dryRun {
		return
	}
	res, err := pruneCache(ctx, st.cfg.CacheDir, st.cfg.CacheMax, st.cacheUsed, st.b.log)
	if err != nil {
		st.warn("the cache %s was not pruned: %v", st.cfg.CacheDir, err)
		return
	}
	st.res.CachePruned = res.Removed
	if res.Kept > int64(res.Max) {
		st.warn("the cache %s holds %d bytes, more than cache_max (%d bytes), in the entries this build used", st.cfg.CacheDir, res.Kept, int64(res.Max))
	}
}

// usedCacheEntry records that the build took or stored the cache entry
// p: it is marked used now and is not pruned after this build.
func (st *build) usedCacheEntry(p string) {
	if st.dryRun {
		return
	}
	touchEntry(p)
	if st.cacheUsed == nil {
		st.cacheUsed = map[string]bool{}
	}
	st.cacheUsed[p] = true
}

//go:build lab

package image_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/paczfs/paczfs/disk"
	"github.com/paczfs/paczfs/hooks"
	"github.com/paczfs/paczfs/image"
	"github.com/paczfs/paczfs/internal/labtest"
	"github.com/paczfs/paczfs/pacman"
)

// TestLabCachedRebuildEqualsCold builds one configuration twice with one
// cache_dir: the first build is cold and stores its base and bootable
// layers and its initramfs; the second must take all three from the
// cache, and its image must
// hold the same packages and the same files as the first: every entry of
// the root and of each data dataset, its mode, owner and checksum (links
// by target). The kernel and its initramfs stand in, as in
// TestLabImageIndependentOfHost; the cache does not care what the
// generator is.
func TestLabCachedRebuildEqualsCold(t *testing.T) {
	labtest.Require(t)
	cfg := standInProfile(t, "rebuildpool", "00cac4e0", "cached-rebuild")
	cfg.CacheDir = t.TempDir()
	// One path for both builds: it is recorded in /etc/paczfs/config.json.
	cfg.ImageFile = filepath.Join(t.TempDir(), "cache.img")
	// A package cache of its own, empty: the cold build downloads
	// everything, the workstation layer's packages during the initramfs.
	cfg.Pacman.CacheDirs = []string{t.TempDir()}

	type built struct {
		res   *image.Result
		files []string
	}
	var runs []built
	// A bound every build's own entries exceed (the same for both: it is
	// recorded in /etc/paczfs/config.json), and before the rebuild an
	// entry neither build uses, last used a month ago: the rebuild prunes
	// it and keeps the entries it used.
	cfg.CacheMax = 1
	stale := filepath.Join(cfg.CacheDir, "layers", strings.Repeat("5a", 32))
	for i, name := range []string{"cold", "cached"} {
		if i == 1 {
			require.NoError(t, os.MkdirAll(stale, 0o700))
			require.NoError(t, os.WriteFile(filepath.Join(stale, "stream"), make([]byte, 1<<20), 0o600))
			old := time.Now().Add(-30 * 24 * time.Hour)
			require.NoError(t, os.Chtimes(stale, old, old))
		}
		var stage hooks.Stage
		downloads := map[hooks.Stage]int{}
		b, err := image.New(cfg, image.WithLogger(labtest.Logger(t)), image.WithProgress(func(p image.Progress) {
			if p.Kind == image.StageStarted {
				stage = p.Stage
			}
			if e := p.Package; p.Kind == image.PackageEvent && e.Kind == pacman.EventDownloadDone && strings.HasSuffix(e.File, ".pkg.tar.zst") {
				downloads[stage]++
			}
		}))
		require.NoError(t, err)
		res, err := b.Build(context.Background())
		require.NoError(t, err, name)
		t.Logf("%s: packages downloaded by stage: %v", name, downloads)
		assert.Zero(t, downloads[hooks.StageWorkstation], "%s: the workstation stage finds its packages cached", name)
		if i == 0 {
			assert.GreaterOrEqual(t, downloads[hooks.StageInitramfs], len(cfg.Packages.Workstation), "cold: the workstation layer's packages download during the initramfs")
			assert.Positive(t, downloads[hooks.StageBase], "cold: the package cache started empty")
		}
		runs = append(runs, built{res, listImage(t, cfg)})
		require.NoError(t, os.Remove(cfg.ImageFile))
		for _, s := range res.Stages {
			t.Logf("%s: %-12s %6.1f s", name, s.Stage, s.Took.Seconds())
		}
		t.Logf("%s: %d entries, %d packages, layers reused %v, initramfs reused %t", name, len(runs[i].files), len(res.Packages), res.LayersReused, res.InitramfsReused)
	}
	cold, cached := runs[0], runs[1]
	assert.Empty(t, cold.res.LayersReused, "the cold build found no cached layer")
	assert.False(t, cold.res.InitramfsReused, "the cold build found no cached initramfs")
	assert.Equal(t, []string{image.LayerBase, image.LayerBootable}, cached.res.LayersReused, "the rebuild received the base and bootable layers from the cache")
	assert.True(t, cached.res.InitramfsReused, "the rebuild took its initramfs from the cache")
	assert.Empty(t, cold.res.CachePruned, "every entry is the cold build's own")
	assert.Equal(t, []string{stale}, cached.res.CachePruned, "only the entry the rebuild did not use is pruned")
	assert.NoDirExists(t, stale)
	assert.True(t, slices.ContainsFunc(cached.res.Warnings, func(w string) bool { return strings.Contains(w, "more than cache_max") }), "%q", cached.res.Warnings)
	for sub, n := range map[string]int{"layers": 2, "initramfs": 1} {
		ents, err := filepath.Glob(filepath.Join(cfg.CacheDir, sub, strings.Repeat("[0-9a-f]", 64)))
		require.NoError(t, err)
		assert.Len(t, ents, n, "%s entries the rebuild used stay", sub)
	}
	pkgs := func(r *image.Result) []string {
		var out []string
		for _, p := range r.Packages {
			out = append(out, p.Name+" "+p.Version)
		}
		return out
	}
	assert.Equal(t, pkgs(cold.res), pkgs(cached.res), "the same packages, in the same order")
	assert.Greater(t, len(cold.res.Packages), 50)
	var onlyCold, onlyCached []string
	for _, l := range cold.files {
		if _, ok := slices.BinarySearch(cached.files, l); !ok {
			onlyCold = append(onlyCold, l)
		}
	}
	for _, l := range cached.files {
		if _, ok := slices.BinarySearch(cold.files, l); !ok {
			onlyCached = append(onlyCached, l)
		}
	}
	assert.Empty(t, onlyCold, "entries only in the cold build's image")
	assert.Empty(t, onlyCached, "entries only in the cached rebuild's image")
	assert.Greater(t, len(cold.files), 5000, "entries listed")
	// The lab's base-files declares /root 0700: its dataset's mount point,
	// which zfs made 0755 before the install, must have it.
	for _, want := range []string{"@base keyring missing: true", "/: etc/pacman.d/gnupg/pubring.kbx ", "data/root: . drwx------ 0:0", "data/srv: . d", "/: etc/machine-id -r--r--r-- 0:0"} {
		assert.True(t, slices.ContainsFunc(cold.files, func(l string) bool { return strings.HasPrefix(l, want) }), "%q listed", want)
	}
}

// installDate is the line pair of a pacman database entry that records
// when the package was installed: each build has its own.
var installDate = regexp.MustCompile(`%INSTALLDATE%\n[0-9]+\n`)

// perBuild are files whose content differs between any two builds:
// pacman's log (times) and ldconfig's auxiliary cache (the inode numbers
// and change times of the libraries it read).
var perBuild = map[string]bool{"var/log/pacman.log": true, "var/cache/ldconfig/aux-cache": true}

// listImage imports the image's pool read-only and lists every entry of
// its root dataset and of each other mounted dataset of the layout:
// dataset, path, mode, owner, and the file's sha256 or the link's target.
// What is per build by design is listed without content: the keyring's
// secret material (its names too), perBuild, and the install dates in
// pacman's database.
func listImage(t *testing.T, cfg image.Config) []string {
	plan, err := disk.ReadGPT(cfg.ImageFile)
	require.NoError(t, err)
	loop := labtest.Attach(t, cfg.ImageFile, plan)
	alt := t.TempDir()
	tmp := labtest.Name("list")
	labtest.Run(t, "zpool", "import", "-d", "/dev", "-o", "readonly=on", "-N", "-R", alt, "-t", cfg.PoolName, tmp)
	defer func() {
		exec.Command("zpool", "export", tmp).Run()
		_ = loop.Detach(context.Background(), 0)
	}()
	var out []string
	list := func(dataset string) {
		mnt := t.TempDir()
		labtest.Run(t, "mount", "-t", "zfs", "-o", "ro,zfsutil", tmp+"/"+dataset, mnt)
		defer exec.Command("umount", mnt).Run()
		label := dataset
		if dataset == cfg.RootDataset {
			label = "/"
			// The base snapshot holds no keyring; the root holds its own.
			_, err := os.Lstat(filepath.Join(mnt, ".zfs/snapshot", image.LayerBase, "etc/pacman.d/gnupg"))
			out = append(out, fmt.Sprintf("@base keyring missing: %t", errors.Is(err, fs.ErrNotExist)))
		}
		require.NoError(t, filepath.WalkDir(mnt, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			fi, err := d.Info()
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(mnt, p)
			st := fi.Sys().(*syscall.Stat_t)
			name := rel
			keyring := strings.HasPrefix(rel, "etc/pacman.d/gnupg/")
			if keyring && (strings.Contains(rel, "private-keys-v1.d/") || strings.Contains(rel, "openpgp-revocs.d/")) {
				name = filepath.Join(filepath.Dir(rel), "*")
			}
			line := fmt.Sprintf("%s: %s %s %d:%d", label, name, fi.Mode(), st.Uid, st.Gid)
			switch {
			case fi.Mode()&fs.ModeSymlink != 0:
				target, _ := os.Readlink(p)
				line += " -> " + target
			case fi.Mode().IsRegular() && !keyring && !perBuild[rel]:
				data, err := os.ReadFile(p)
				if err != nil {
					return err
				}
				if strings.HasPrefix(rel, "var/lib/pacman/local/") && filepath.Base(rel) == "desc" {
					data = installDate.ReplaceAll(data, nil)
				}
				sum := sha256.Sum256(data)
				line += fmt.Sprintf(" %d %s", len(data), hex.EncodeToString(sum[:8]))
			}
			out = append(out, line)
			return nil
		}))
	}
	list(cfg.RootDataset)
	for _, d := range cfg.Datasets {
		if d.Name == cfg.RootDataset || strings.HasPrefix(cfg.RootDataset, d.Name+"/") || d.Props["canmount"] == "off" {
			continue
		}
		list(d.Name)
	}
	slices.Sort(out)
	out = slices.Compact(out)
	return out
}

package image

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/paczfs/paczfs/hooks"
	"github.com/paczfs/paczfs/internal/testutil"
)

// keyRoot is a target as the initramfs stage sees it: two packages in
// pacman's database, /etc with the keyring, a module directory with a
// packaged module and depmod's index, and a documentation file.
func keyRoot(t *testing.T) string {
	root := t.TempDir()
	writeTree(t, root, map[string]string{
		"var/lib/pacman/local/ALPM_DB_VERSION":              "9\n",
		"var/lib/pacman/local/linux-6.1-1/desc":             "%NAME%\nlinux\n\n%VERSION%\n6.1-1\n",
		"var/lib/pacman/local/linux-6.1-1/files":            "%FILES%\nusr/\nusr/lib/modules/6.1/\nusr/lib/modules/6.1/kernel/zfs.ko\n",
		"var/lib/pacman/local/dracut-106-1/desc":            "%NAME%\ndracut\n\n%VERSION%\n106-1\n\n%BUILDDATE%\n1760000000\n",
		"etc/hostid":                                        "\xee\xff\xc0\x00",
		"etc/dracut.conf.d/paczfs.conf":                     DracutConf,
		"etc/pacman.d/gnupg/pubring.kbx":                    "random per build",
		"usr/lib/modules/6.1/kernel/zfs.ko":                 "module",
		"usr/lib/modules/6.1/modules.dep":                   "kernel/zfs.ko:\n",
		"usr/share/doc/vim/README":                          "docs",
		"usr/share/zoneinfo/UTC":                            "TZif",
		"etc/paczfs/config.json":                            `{"packages":{"workstation":["vim"]}}`,
		"var/lib/pacman/local/linux-6.1-1/install-not-read": "",
	}, 0o644)
	require.NoError(t, os.Symlink("/usr/share/zoneinfo/UTC", filepath.Join(root, "etc/localtime")))
	return root
}

func TestInitramfsKey(t *testing.T) {
	argv := []string{"dracut", "--force", "--kver", "6.1", "/boot/initrd.img-6.1"}
	key := func(root string, argv []string, kver string, files map[string]string) []byte {
		t.Helper()
		pkgs, err := localFiles(root)
		require.NoError(t, err)
		common, err := commonKey(keyInput{root: root, pkgs: pkgs, systemFiles: files})
		require.NoError(t, err)
		return initramfsKey(kver, "/boot/initrd.img-"+kver, argv, common)
	}
	base := key(keyRoot(t), argv, "6.1", nil)
	assert.Equal(t, base, key(keyRoot(t), argv, "6.1", nil), "the same target gives the same key")
	assert.Contains(t, string(base), "package dracut 106-1 1760000000\n")
	assert.Contains(t, string(base), "modules.dep", "depmod's index: no package owns it")
	assert.NotContains(t, string(base), "zfs.ko 0", "a packaged module is in the key by its package's version")
	assert.NotContains(t, string(base), "gnupg/")

	write := func(name, data string) func(string) {
		return func(root string) { writeTree(t, root, map[string]string{name: data}, 0o644) }
	}
	for _, c := range []struct {
		name    string
		change  func(root string)
		changes bool
	}{
		{"a package's version", write("var/lib/pacman/local/dracut-106-1/desc", "%NAME%\ndracut\n\n%VERSION%\n107-1\n\n%BUILDDATE%\n1760000000\n"), true},
		{"a package rebuilt at the same version", write("var/lib/pacman/local/dracut-106-1/desc", "%NAME%\ndracut\n\n%VERSION%\n106-1\n\n%BUILDDATE%\n1770000000\n"), true},
		{"a file in /root", write("root/.ssh/authorized_keys", "ssh-ed25519 AAAA new\n"), true},
		{"an unowned file under /usr", write("usr/bin/paczfs-bootenv", "another build of the tool"), true},
		{"a file a link in /etc leads to", write("usr/share/zoneinfo/UTC", "TZif2"), true},
		{"a cache in /usr/share", write("usr/share/icons/hicolor/icon-theme.cache", "mtimes"), false},
		{"another hostid", write("etc/hostid", "\x01\x02\x03\x04"), true},
		{"the generator's configuration", write("etc/dracut.conf.d/paczfs.conf", DracutConf+"compress=zstd\n"), true},
		{"a new file in /etc", write("etc/vconsole.conf", "KEYMAP=de\n"), true},
		{"a mode in /etc", func(root string) { require.NoError(t, os.Chmod(filepath.Join(root, "etc/hostid"), 0o600)) }, true},
		{"a link's target", func(root string) {
			p := filepath.Join(root, "etc/localtime")
			require.NoError(t, os.Remove(p))
			require.NoError(t, os.Symlink("/usr/share/zoneinfo/Europe/Paris", p))
		}, true},
		{"depmod's index", write("usr/lib/modules/6.1/modules.dep", "kernel/zfs.ko:\nkernel/spl.ko:\n"), true},
		{"a module DKMS built", write("usr/lib/modules/6.1/updates/dkms/zfs.ko", "built here"), true},
		{"the keyring", write("etc/pacman.d/gnupg/pubring.kbx", "another build's keys"), false},
		{"the build's configuration record", write("etc/paczfs/config.json", `{"packages":{"workstation":["vim","tmux"]}}`), false},
		{"documentation in /usr/share", write("usr/share/doc/vim/README", "other docs"), false},
		{"a file in /var", write("var/log/pacman.log", "another day"), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			root := keyRoot(t)
			c.change(root)
			assert.Equal(t, c.changes, string(base) != string(key(root, argv, "6.1", nil)))
		})
	}
	assert.NotEqual(t, base, key(keyRoot(t), append(argv[:len(argv):len(argv)], "--compress", "zstd"), "6.1", nil), "the command")
	assert.NotEqual(t, base, key(keyRoot(t), argv, "6.1", map[string]string{"/usr/lib/x": "y"}), "system.files")
	_, err := commonKey(keyInput{root: filepath.Join(t.TempDir(), "none")})
	assert.ErrorIs(t, err, os.ErrNotExist, "a root that is not there is an error, not an empty key")
	empty := t.TempDir()
	_, err = commonKey(keyInput{root: empty})
	assert.ErrorIs(t, err, os.ErrNotExist, "a root without /etc is an error, not an empty key")
}

// The stage stores what the generator built, takes it back in the next
// build made from the same, builds again when something changed or the
// entry is damaged, and keeps no cache when a hook runs before it.
// initramfsRun runs the stages up to the initramfs on a fresh fixture
// with cacheDir, the generator's image as fakeRoot left it, after edit,
// then the stages in after. The runner holds the commands from the
// initramfs stage on.
func initramfsRun(t *testing.T, cacheDir string, edit func(st *build), after ...stageFunc) (*build, *transcriptRunner) {
	t.Helper()
	ctx := context.Background()
	r := &transcriptRunner{}
	st := stageFixture(t, r)
	st.cfg.CacheDir = cacheDir
	for _, fn := range []stageFunc{stageESP, stagePool} {
		require.NoError(t, fn(ctx, st))
	}
	fakeRoot(t, st.state.Root)
	writeTree(t, st.state.Root, map[string]string{
		"var/lib/pacman/local/mkinitcpio-41-1/desc": "%NAME%\nmkinitcpio\n\n%VERSION%\n41-1\n",
	}, 0o644)
	for _, fn := range []stageFunc{stageDatasets, stageSystem} {
		require.NoError(t, fn(ctx, st))
	}
	if edit != nil {
		edit(st)
	}
	r.lines = nil
	for _, fn := range append([]stageFunc{stageInitramfs}, after...) {
		require.NoError(t, fn(ctx, st))
	}
	t.Cleanup(func() { require.NoError(t, st.stack.Unwind(ctx)) })
	return st, r
}

func TestInitramfsCacheInTheStage(t *testing.T) {
	cacheDir := filepath.Join(t.TempDir(), "cache")
	built := string(testutil.Newc("bin", "etc/", "etc/hostid", "hooks/zfs", "init"))
	image := "boot/initramfs-linux-lts.img"
	generated := func(r *transcriptRunner) bool {
		for _, l := range r.lines {
			if strings.HasPrefix(l, "chroot ") && strings.Contains(l, " mkinitcpio -k ") {
				return true
			}
		}
		return false
	}
	runBuild := func(edit func(st *build)) (*build, *transcriptRunner) {
		t.Helper()
		return initramfsRun(t, cacheDir, edit)
	}
	entries := func() []string {
		m, err := filepath.Glob(filepath.Join(cacheDir, "initramfs", "[0-9a-f]*"))
		require.NoError(t, err)
		return m
	}

	st, r := runBuild(nil)
	assert.True(t, generated(r), "a cold cache: the generator runs")
	assert.False(t, st.res.InitramfsReused)
	require.Len(t, entries(), 1, "and its image is stored")
	fi, err := os.Stat(filepath.Join(cacheDir, "initramfs"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o700), fi.Mode().Perm())

	// The next build's generator would write something else: the cached
	// image must replace it, and the generator must not run.
	st, r = runBuild(func(st *build) {
		require.NoError(t, os.WriteFile(filepath.Join(st.state.Root, image), []byte("not the cached one"), 0o644))
	})
	assert.False(t, generated(r), "the same inputs: taken from the cache")
	assert.True(t, st.res.InitramfsReused)
	got, err := os.ReadFile(filepath.Join(st.state.Root, image))
	require.NoError(t, err)
	assert.Equal(t, built, string(got))
	assert.NoFileExists(t, filepath.Join(st.state.Root, image+".paczfs-new"))

	// A damaged entry is removed and the image built again.
	for _, e := range entries() {
		require.NoError(t, os.WriteFile(filepath.Join(e, "image"), []byte("bit rot"), 0o600))
	}
	st, r = runBuild(nil)
	assert.True(t, generated(r), "a damaged entry is not used")
	got, err = os.ReadFile(filepath.Join(st.state.Root, image))
	require.NoError(t, err)
	assert.Equal(t, built, string(got))
	require.Len(t, entries(), 1)
	data, err := os.ReadFile(filepath.Join(entries()[0], "image"))
	require.NoError(t, err)
	assert.Equal(t, built, string(data), "and stored anew")

	// An entry without its checksum is not trusted either; what a build
	// killed while storing left is removed once it is old.
	require.NoError(t, os.Remove(filepath.Join(entries()[0], "sha256")))
	left := filepath.Join(cacheDir, "initramfs", ".new-killed")
	require.NoError(t, os.Mkdir(left, 0o700))
	require.NoError(t, os.Chtimes(left, time.Now().Add(-48*time.Hour), time.Now().Add(-48*time.Hour)))
	recent := filepath.Join(cacheDir, "initramfs", ".new-running")
	require.NoError(t, os.Mkdir(recent, 0o700))
	_, r = runBuild(nil)
	assert.True(t, generated(r), "an entry without its sha256 is not used")
	require.Len(t, entries(), 1)
	assert.FileExists(t, filepath.Join(entries()[0], "sha256"), "and stored anew")
	assert.NoDirExists(t, left)
	assert.DirExists(t, recent, "another build may be storing there")
	require.NoError(t, os.Remove(recent))

	// Another keymap is another /etc/vconsole.conf: built and stored.
	st, r = runBuild(func(st *build) {
		require.NoError(t, os.WriteFile(filepath.Join(st.state.Root, "etc/vconsole.conf"), []byte("KEYMAP=de\n"), 0o644))
	})
	assert.True(t, generated(r))
	assert.False(t, st.res.InitramfsReused)
	assert.Len(t, entries(), 2)

	// boot.initramfs_files are written by the stage itself: in the key.
	_, r = runBuild(func(st *build) {
		st.cfg.Boot.InitramfsFiles = map[string]string{"/usr/lib/initcpio/install/site": "build() { :; }\n"}
	})
	assert.True(t, generated(r), "another initramfs_files: built")
	assert.Len(t, entries(), 3)

	// A cache directory someone opened up since New is not read.
	require.NoError(t, os.Chmod(filepath.Join(cacheDir, "initramfs"), 0o777))
	st, r = runBuild(nil)
	assert.True(t, generated(r))
	assert.Contains(t, strings.Join(st.warnings, "\n"), "writable by group or others")
	require.NoError(t, os.Chmod(filepath.Join(cacheDir, "initramfs"), 0o700))

	// A hook before the stage may change what the key does not hold;
	// one that names its effect (hooks.Keyed) has its key in the key.
	require.NoError(t, os.RemoveAll(cacheDir))
	tweak := hooks.Func("tweak", hooks.StageSystem, hooks.After, func(context.Context, *hooks.State) error { return nil })
	late := hooks.Func("late", hooks.StageBootloader, hooks.Before, func(context.Context, *hooks.State) error { return nil })
	st, r = runBuild(func(st *build) { st.b.hooks = append(st.b.hooks, tweak, late) })
	assert.True(t, generated(r))
	assert.False(t, st.res.InitramfsReused)
	assert.NoDirExists(t, filepath.Join(cacheDir, "initramfs"), "no cache with a hook at or before the initramfs stage")

	keyed := func(key string) func(st *build) {
		return func(st *build) { st.b.hooks = append(st.b.hooks, hooks.WithCacheKey(tweak, key), late) }
	}
	_, r = runBuild(keyed("v1"))
	assert.True(t, generated(r))
	require.Len(t, entries(), 1, "a keyed hook: stored")
	key, err := os.ReadFile(filepath.Join(entries()[0], "key"))
	require.NoError(t, err)
	assert.Contains(t, string(key), `hook after system "tweak" "v1"`)
	assert.NotContains(t, string(key), "late", "a hook after the stage is not in the key")
	st, r = runBuild(keyed("v1"))
	assert.False(t, generated(r), "the same hook key: reused")
	assert.True(t, st.res.InitramfsReused)
	_, r = runBuild(keyed("v2"))
	assert.True(t, generated(r), "another hook key: built")
	assert.Len(t, entries(), 2)
}

func TestCacheDirIsChecked(t *testing.T) {
	cfg := ArchProfile()
	cfg.ImageFile = filepath.Join(t.TempDir(), "x.img")
	cfg.Size = 4 << 30
	for _, c := range []struct {
		name  string
		dir   func(t *testing.T) string
		fault string
	}{
		{"relative", func(*testing.T) string { return "cache" }, "is relative"},
		{"a file", func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "f")
			require.NoError(t, os.WriteFile(p, nil, 0o600))
			return p
		}, "is not a directory"},
		{"writable by others", func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "d")
			require.NoError(t, os.Mkdir(p, 0o700))
			require.NoError(t, os.Chmod(p, 0o777))
			return p
		}, "writable by group or others"},
		{"missing: made by the build", func(t *testing.T) string { return filepath.Join(t.TempDir(), "new") }, ""},
		{"the user's own", func(t *testing.T) string { return t.TempDir() }, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := cfg.Clone()
			cfg.CacheDir = c.dir(t)
			_, err := New(cfg, hostOK)
			if c.fault == "" {
				if err != nil {
					assert.NotContains(t, err.Error(), "cache_dir")
				}
				return
			}
			var ce *ConfigError
			require.True(t, errors.As(err, &ce), "%v", err)
			assert.ErrorContains(t, err, "cache_dir: ")
			assert.ErrorContains(t, err, c.fault)
		})
	}
}

// restore writes in the target only, replaces nothing it could not, and
// treats incomplete entries as none.
func TestInitramfsCacheRestore(t *testing.T) {
	c := &initramfsCache{dir: filepath.Join(t.TempDir(), "initramfs"), log: slog.New(slog.DiscardHandler)}
	root := t.TempDir()
	writeTree(t, root, map[string]string{"boot/initrd.img": "built"}, 0o600)
	key := []byte("key")
	require.NoError(t, c.store(key, root, "/boot/initrd.img"))

	// A link where the temporary file goes is removed, not followed.
	outside := filepath.Join(t.TempDir(), "host-file")
	require.NoError(t, os.WriteFile(outside, []byte("the build host's"), 0o644))
	require.NoError(t, os.Symlink(outside, filepath.Join(root, "boot/initrd.img.paczfs-new")))
	require.NoError(t, os.WriteFile(filepath.Join(root, "boot/initrd.img"), []byte("stale"), 0o600))
	hit, err := c.restore(key, root, "/boot/initrd.img")
	require.NoError(t, err)
	assert.True(t, hit)
	assert.Equal(t, "the build host's", readString(t, outside))
	assert.Equal(t, "built", readString(t, filepath.Join(root, "boot/initrd.img")))
	fi, err := os.Stat(filepath.Join(root, "boot/initrd.img"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "the image's mode")

	// A directory of the target that leads out of it is not followed.
	require.NoError(t, os.Symlink(t.TempDir(), filepath.Join(root, "out")))
	_, err = c.restore(key, root, "/out/initrd.img")
	assert.ErrorContains(t, err, "escapes")

	// A rename that fails is no hit, and leaves no temporary file.
	require.NoError(t, os.MkdirAll(filepath.Join(root, "boot/dir.img/x"), 0o755))
	hit, err = c.restore(key, root, "/boot/dir.img")
	assert.Error(t, err)
	assert.False(t, hit)
	assert.NoFileExists(t, filepath.Join(root, "boot/dir.img.paczfs-new"))

	// An entry without its image is removed.
	require.NoError(t, os.Remove(filepath.Join(c.entry(key), "image")))
	hit, err = c.restore(key, root, "/boot/initrd.img")
	assert.NoError(t, err)
	assert.False(t, hit)
	assert.NoDirExists(t, c.entry(key))
	hit, err = c.restore([]byte("never stored"), root, "/boot/initrd.img")
	assert.NoError(t, err)
	assert.False(t, hit)
}

func readString(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	return string(b)
}

// An entry a prune takes away while it is read is a miss, not a damaged
// entry: no warning, nothing removed that the prune did not.
func TestInitramfsCacheEntryPrunedWhileRead(t *testing.T) {
	var logs bytes.Buffer
	c := &initramfsCache{dir: filepath.Join(t.TempDir(), "initramfs"), log: slog.New(slog.NewTextHandler(&logs, nil))}
	root := t.TempDir()
	writeTree(t, root, map[string]string{"boot/initrd.img": "built"}, 0o600)
	key := []byte("key")
	require.NoError(t, c.store(key, root, "/boot/initrd.img"))

	dir := c.entry(key)
	d, err := os.OpenRoot(dir)
	require.NoError(t, err)
	defer d.Close()
	// The prune: renamed away, then its files removed one by one.
	old := filepath.Join(filepath.Dir(dir), ".old-test")
	require.NoError(t, os.Rename(dir, old))
	require.NoError(t, os.Remove(filepath.Join(old, "image")))
	src, _, err := c.openEntry(d, dir)
	assert.NoError(t, err)
	assert.Nil(t, src)
	assert.NotContains(t, logs.String(), "damaged")
	assert.Contains(t, logs.String(), "removed while it was read")
	assert.FileExists(t, filepath.Join(old, "sha256"), "what the prune has not removed yet is left to it")
	require.NoError(t, os.RemoveAll(old))

	// Another build stored the key again meanwhile: dir is another
	// directory, and the one opened, gone, is still a miss.
	require.NoError(t, c.store(key, root, "/boot/initrd.img"))
	src, _, err = c.openEntry(d, dir)
	assert.NoError(t, err)
	assert.Nil(t, src)
	assert.DirExists(t, dir, "the new entry is not taken for a damaged one")

	// Opened before the prune's removal began: read whole.
	d2, err := os.OpenRoot(dir)
	require.NoError(t, err)
	defer d2.Close()
	src, want, err := c.openEntry(d2, dir)
	require.NoError(t, err)
	require.NoError(t, os.Rename(dir, filepath.Join(filepath.Dir(dir), ".old-test2")))
	require.NoError(t, os.RemoveAll(filepath.Join(filepath.Dir(dir), ".old-test2")))
	sum, err := readerSHA256(src)
	src.Close()
	require.NoError(t, err)
	assert.Equal(t, want, sum, "the image read after its entry was removed is the stored one")

	// Damage is still damage: an entry in place without its checksum.
	logs.Reset()
	require.NoError(t, c.store(key, root, "/boot/initrd.img"))
	require.NoError(t, os.Remove(filepath.Join(dir, "sha256")))
	hit, err := c.restore(key, root, "/boot/initrd.img")
	assert.NoError(t, err)
	assert.False(t, hit)
	assert.Contains(t, logs.String(), "damaged")
	assert.NoDirExists(t, dir)
	entries, err := os.ReadDir(filepath.Dir(dir))
	require.NoError(t, err)
	for _, e := range entries {
		assert.NotContains(t, e.Name(), ".old-", "a damaged entry's removal leaves nothing behind")
	}
}

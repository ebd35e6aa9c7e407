package image

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/paczfs/paczfs/disk"
	"github.com/paczfs/paczfs/hooks"
	"github.com/paczfs/paczfs/release"
)

// releaseKeys writes a release key pair into dir.
func releaseKeys(t *testing.T, dir string) (secret, public string) {
	t.Helper()
	s, p, err := release.GenerateKey("paczfs test", "")
	require.NoError(t, err)
	secret, public = filepath.Join(dir, "k.key"), filepath.Join(dir, "k.asc")
	require.NoError(t, os.WriteFile(secret, s, 0o600))
	require.NoError(t, os.WriteFile(public, p, 0o644))
	return secret, public
}

// fakeRelease writes a signed release directory: a manifest with a full
// stream of the given content and, when id is set, a disk identity.
func fakeRelease(t *testing.T, dir, secret, version string, id *release.Disk) {
	t.Helper()
	stream := []byte("not really a zfs stream")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, version+".zstream"), stream, 0o644))
	m := &release.Manifest{Format: release.FormatVersion, Name: "t", Version: version, Snapshot: "v" + version, GUID: "123",
		Streams:  []release.Stream{{Kind: release.Full, File: version + ".zstream", Size: int64(len(stream)), SHA256: sha(stream)}},
		Packages: []release.Package{{Name: "tmux", Version: "3.5-1"}}, Disk: id}
	data, err := m.Marshal()
	require.NoError(t, err)
	key, err := os.ReadFile(secret)
	require.NoError(t, err)
	sig, err := release.Sign(data, key)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, release.ManifestFile), data, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, release.SignatureFile), sig, 0o644))
}

func identityOf(t *testing.T, c Config) *release.Disk {
	plan, err := c.layout().Plan(c.Size)
	require.NoError(t, err)
	return diskIdentity(plan.SeededGUIDs("previous build"))
}

func derivedConfig(t *testing.T) (Config, string) {
	c := testConfig(t)
	c.Size = 8 * disk.GiB
	c.BootEnvironments = nil
	c.MinirootClone = ""
	keys := t.TempDir()
	secret, public := releaseKeys(t, keys)
	prev := filepath.Join(t.TempDir(), "v1")
	fakeRelease(t, prev, secret, "1", identityOf(t, c))
	c.Manage.ReleaseKeys = []string{public}
	c.Release = Release{Dir: filepath.Join(t.TempDir(), "v2"), Version: "2", SigningKey: secret, From: prev}
	return c, secret
}

func TestDerivedReleaseConfigIsChecked(t *testing.T) {
	c, _ := derivedConfig(t)
	_, err := New(c, hostOK)
	require.NoError(t, err, "a derived build from a signed release with the same layout")

	other := t.TempDir()
	otherSecret, _ := releaseKeys(t, other)
	for name, tc := range map[string]struct {
		edit  func(*Config)
		field string
	}{
		"no version":       {func(c *Config) { c.Release.Version = "" }, "release.version"},
		"a version with /": {func(c *Config) { c.Release.Version = "2/3" }, "release.version"},
		"not newer":        {func(c *Config) { c.Release.Version = "0.9" }, "release.version"},
		"equal":            {func(c *Config) { c.Release.Version = "1" }, "release.version"},
		"no key":           {func(c *Config) { c.Release.SigningKey = "" }, "release.signing_key"},
		"a public key":     {func(c *Config) { c.Release.SigningKey = c.Manage.ReleaseKeys[0] }, "release.signing_key"},
		"relative dir":     {func(c *Config) { c.Release.Dir = "out" }, "release.dir"},
		"from without dir": {func(c *Config) { c.Release.Dir = "" }, "release.from"},
		"layers to clone":  {func(c *Config) { c.BootEnvironments = []string{LayerBootable} }, "boot_environments"},
		"a miniroot":       {func(c *Config) { c.MinirootClone = "data/machines/miniroot" }, "miniroot_clone"},
		"a guid seed":      {func(c *Config) { c.GUIDSeed = "x" }, "guid_seed"},
		"a hostid":         {func(c *Config) { c.System.HostID = "0a0b0c0d" }, "system.hostid"},
		"no trusted keys":  {func(c *Config) { c.Manage.ReleaseKeys = nil }, "manage.release_keys"},
		"another layout":   {func(c *Config) { c.SwapSize = 0 }, "release.from"},
		"signed by a stranger": {func(c *Config) {
			fakeRelease(t, c.Release.From, otherSecret, "1", identityOf(t, *c))
		}, "release.from"},
		"no disk identity": {func(c *Config) {
			secret := c.Release.SigningKey
			fakeRelease(t, c.Release.From, secret, "1", nil)
		}, "release.from"},
		"a stream cut short": {func(c *Config) {
			require.NoError(t, os.WriteFile(filepath.Join(c.Release.From, "1.zstream"), []byte("short"), 0o644))
		}, "release.from"},
		"a release dir in use": {func(c *Config) {
			require.NoError(t, os.MkdirAll(c.Release.Dir, 0o755))
			require.NoError(t, os.WriteFile(filepath.Join(c.Release.Dir, "x"), nil, 0o644))
		}, "release.dir"},
	} {
		t.Run(name, func(t *testing.T) {
			c, _ := derivedConfig(t)
			tc.edit(&c)
			_, err := New(c, hostOK)
			var ce *ConfigError
			require.True(t, errors.As(err, &ce), "%v", err)
			var fields []string
			for _, p := range ce.Problems {
				fields = append(fields, p.Field)
			}
			assert.Contains(t, fields, tc.field)
			_, statErr := os.Stat(c.ImageFile)
			assert.True(t, os.IsNotExist(statErr), "nothing written")
		})
	}
}

func TestIdentityPlan(t *testing.T) {
	c := testConfig(t)
	plan, err := c.layout().Plan(8 * disk.GiB)
	require.NoError(t, err)
	id := diskIdentity(plan.SeededGUIDs("a"))
	got, err := identityPlan(plan, id)
	require.NoError(t, err)
	assert.Equal(t, id, diskIdentity(got))
	assert.Empty(t, plan.DiskGUID, "the plan given is not changed")

	delete(id.Partitions, plan.Partitions[0].Number)
	_, err = identityPlan(plan, id)
	assert.ErrorContains(t, err, "was not on the previous release's disk")
	id.Partitions[0], id.Partitions[plan.Partitions[0].Number] = "x", "y"
	_, err = identityPlan(plan, id)
	assert.ErrorContains(t, err, "partitions")
}

func TestInitramfsTriggers(t *testing.T) {
	arch := ArchProfile().Boot.InitramfsTriggers
	for f, want := range map[string]bool{
		"usr/lib/modules/6.12.9-1-lts/vmlinuz":                      true,
		"usr/lib/modules/6.12.9-1-lts/extramodules/zfs.ko.zst":      true, // zfs-linux-lts
		"usr/lib/initcpio/install/zfs":                              true, // zfs-utils
		"usr/lib/firmware/amdgpu/x.bin":                             true,
		"usr/lib/systemd/systemd":                                   true,
		"usr/bin/mkinitcpio":                                        true,
		"usr/bin/tmux":                                              false,
		"usr/share/man/man1/tmux.1.gz":                              false,
		"usr/lib/systemd/system/sshd.service":                       false,
		"usr/src/zfs-2.3.1/dkms.conf":                               true,
		"usr/lib/initcpio":                                          false, // the directory itself: Arch's hook matches files
		"etc/mkinitcpio.d/linux-lts.preset":                         true,
		"usr/share/licenses/zfs-utils/LICENSE":                      false,
		"usr/lib/modules-load.d/x.conf":                             false,
		"usr/lib/firmware":                                          false,
		"usr/lib/modulesXfirmware":                                  false,
		"usr/lib/x86_64-linux-gnu/libzfs.so.6 (a lab-only pattern)": false,
	} {
		assert.Equal(t, want, triggered([]string{f}, arch) != "", f)
	}
	// dracut's: its own modules and systemd's programs, not another
	// package's unit (rsync's, added by the lab's derived release).
	dracut := ArchDracutProfile().Boot.InitramfsTriggers
	for f, want := range map[string]bool{
		"usr/lib/dracut/modules.d/90zfs/module-setup.sh": true,
		"etc/dracut.conf.d/paczfs.conf":                  true,
		"usr/lib/systemd/systemd":                        true,
		"usr/lib/systemd/systemd-udevd":                  true,
		"usr/lib/systemd/system/rsync.service":           false,
		"usr/bin/zpool":                                  true,
		"usr/lib/modules/6.12.9-1-lts/vmlinuz":           true,
		"usr/bin/rsync":                                  false,
	} {
		assert.Equal(t, want, triggered([]string{f}, dracut) != "", "dracut: %s", f)
	}
	assert.Equal(t, "b/c", triggered([]string{"a", "b/c"}, []string{"b/*"}))
	assert.Equal(t, "", triggered(nil, []string{"*"}))
}

func TestChangedFiles(t *testing.T) {
	before := map[string]pkgFiles{
		"tmux":  {version: "3.5-1", files: []string{"usr/bin/tmux", "usr/share/man/man1/tmux.1.gz"}},
		"gone":  {version: "1-1", files: []string{"usr/bin/gone"}},
		"same":  {version: "1-1", files: []string{"usr/bin/same"}},
		"moved": {version: "1-1", files: []string{"usr/lib/old"}},
	}
	after := map[string]pkgFiles{
		"tmux":  {version: "99.0-1", files: []string{"usr/bin/tmux"}},
		"same":  {version: "1-1", files: []string{"usr/bin/same"}},
		"new":   {version: "2-1", files: []string{"usr/bin/new"}},
		"moved": {version: "1-2", files: []string{"usr/lib/new"}},
	}
	assert.Equal(t, []string{"usr/bin/gone", "usr/bin/new", "usr/bin/tmux", "usr/lib/new", "usr/lib/old", "usr/share/man/man1/tmux.1.gz"},
		changedFiles(before, after))
}

func TestLocalFilesReadsThePacmanDatabase(t *testing.T) {
	root := t.TempDir()
	d := filepath.Join(root, "var/lib/pacman/local/tmux-3.5-1")
	require.NoError(t, os.MkdirAll(d, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(d, "desc"), []byte("%NAME%\ntmux\n\n%VERSION%\n3.5-1\n\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(d, "files"), []byte("%FILES%\nusr/\nusr/bin/\nusr/bin/tmux\n\n%BACKUP%\netc/tmux.conf\tabc\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(root, "var/lib/pacman/local/ALPM_DB_VERSION"), []byte("9\n"), 0o644))
	got, err := localFiles(root)
	require.NoError(t, err)
	assert.Equal(t, map[string]pkgFiles{"tmux": {version: "3.5-1", files: []string{"usr/", "usr/bin/", "usr/bin/tmux"}}}, got)
}

func TestInitramfsKeptOnlyWhenNothingItIsMadeFromChanged(t *testing.T) {
	root := t.TempDir()
	c := ArchProfile()
	st := &build{cfg: &c, state: hooks.State{Root: root}}
	assert.Equal(t, "a new root", st.initramfsRebuildReason([]string{"6.12.9-1-lts"}), "a build from scratch")

	c.Release.From = "/prev"
	require.NoError(t, writeFile(root, "usr/lib/modules/6.12.9-1-lts/pkgbase", []byte("linux-lts\n"), 0o644))
	require.NoError(t, writeFile(root, "usr/lib/modules/6.12.10-arch1-1/pkgbase", []byte("linux\n"), 0o644))
	require.NoError(t, writeFile(root, "boot/initramfs-linux-lts.img", []byte("initramfs"), 0o644))
	for name, content := range c.Boot.InitramfsFiles {
		require.NoError(t, writeFile(root, strings.TrimPrefix(name, "/"), []byte(content), 0o644))
	}
	st.changed = []string{"usr/bin/tmux", "usr/bin/htop"}
	assert.Equal(t, "", st.initramfsRebuildReason([]string{"6.12.9-1-lts"}))
	assert.Contains(t, st.initramfsRebuildReason([]string{"6.12.9-1-lts", "6.12.10-arch1-1"}), "no initramfs for 6.12.10-arch1-1", "a kernel added (linux beside linux-lts)")
	assert.Contains(t, st.initramfsRebuildReason([]string{"6.12.9-1-lts", "6.13"}), "records no package base")
	st.changed = append(st.changed, "usr/lib/initcpio/install/zfs")
	assert.Contains(t, st.initramfsRebuildReason([]string{"6.12.9-1-lts"}), "usr/lib/initcpio/install/zfs")
	st.changed = nil
	require.NoError(t, writeFile(root, "etc/mkinitcpio.conf.d/paczfs.conf", []byte("HOOKS=(base)\n"), 0o644))
	assert.Contains(t, st.initramfsRebuildReason([]string{"6.12.9-1-lts"}), "boot.initramfs_files")

	// No triggers: always rebuilt, as Boot.InitramfsTriggers says (a
	// stubbed hook no longer rebuilds in the sync).
	for name, content := range c.Boot.InitramfsFiles {
		require.NoError(t, writeFile(root, strings.TrimPrefix(name, "/"), []byte(content), 0o644))
	}
	require.Equal(t, "", st.initramfsRebuildReason([]string{"6.12.9-1-lts"}))
	c.Boot.InitramfsTriggers = nil
	assert.Contains(t, st.initramfsRebuildReason([]string{"6.12.9-1-lts"}), "boot.initramfs_triggers is empty")
}

func TestRemoveReleaseFilesLeavesOthers(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{release.ManifestFile, release.SignatureFile, "1-2.zstream", "2.zstream", "mine.txt"} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, n), nil, 0o644))
	}
	require.NoError(t, removeReleaseFiles(dir))
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, ents, 1)
	assert.Equal(t, "mine.txt", ents[0].Name())
	require.NoError(t, os.Remove(filepath.Join(dir, "mine.txt")))
	require.NoError(t, removeReleaseFiles(dir))
	_, err = os.Stat(dir)
	assert.True(t, os.IsNotExist(err))
}

func sha(b []byte) string { h := sha256.Sum256(b); return hex.EncodeToString(h[:]) }

func TestLocalesKeptOnlyWhenUnchanged(t *testing.T) {
	root := t.TempDir()
	c := ArchProfile()
	st := &build{cfg: &c, state: hooks.State{Root: root}}
	gen := []byte("en_US.UTF-8 UTF-8\n")
	assert.False(t, st.localesStillBuilt(gen, gen), "a build from scratch runs locale-gen")
	st.previous = &release.Manifest{}
	assert.False(t, st.localesStillBuilt(gen, gen), "no archive yet")
	require.NoError(t, writeFile(root, "usr/lib/locale/locale-archive", []byte("archive"), 0o644))
	assert.True(t, st.localesStillBuilt(gen, gen))
	assert.False(t, st.localesStillBuilt([]byte("de_DE.UTF-8 UTF-8\n"), gen), "locale.gen changed")
	st.changed = []string{"usr/share/i18n/locales/en_US"}
	assert.False(t, st.localesStillBuilt(gen, gen), "glibc's locale sources changed")
}

func TestWriteFileLeavesAnIdenticalFileAlone(t *testing.T) {
	root := t.TempDir()
	require.NoError(t, writeFile(root, "etc/x", []byte("same"), 0o644))
	p := filepath.Join(root, "etc/x")
	before, err := os.Stat(p)
	require.NoError(t, err)
	require.NoError(t, os.Chtimes(p, before.ModTime().Add(-time.Hour), before.ModTime().Add(-time.Hour)))
	old, _ := os.Stat(p)
	require.NoError(t, writeFile(root, "etc/x", []byte("same"), 0o644))
	same, _ := os.Stat(p)
	assert.Equal(t, old.ModTime(), same.ModTime(), "not rewritten")
	require.NoError(t, writeFile(root, "etc/x", []byte("same"), 0o600))
	fi, _ := os.Stat(p)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "a new mode is written")
	require.NoError(t, writeFile(root, "etc/x", []byte("other"), 0o600))
	data, _ := os.ReadFile(p)
	assert.Equal(t, "other", string(data))
}

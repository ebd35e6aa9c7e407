package image

import (
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/paczfs/paczfs/internal/chroot"
)

// stubBuild is a build whose target root has the directories of an Arch
// root that matter here: /usr/bin with a generator that leaves a mark
// when it runs, and /usr/local/sbin.
func stubBuild(t *testing.T, stubs ...string) (*build, string) {
	t.Helper()
	root := t.TempDir()
	for _, d := range []string{"usr/bin", stubDir, "tmp"} {
		require.NoError(t, os.MkdirAll(filepath.Join(root, d), 0o755))
	}
	// The real generator, as a hook would find it without a stub: it
	// marks that it ran (relative to the hook's working directory, the
	// root, as libalpm runs hooks chrooted at /).
	require.NoError(t, os.WriteFile(filepath.Join(root, "usr/bin/mkinitcpio"), []byte("#!/bin/sh\necho built >> tmp/built\n"), 0o755))
	cfg := ArchProfile()
	cfg.Boot.InitramfsStubs = stubs
	st := &build{b: &Builder{log: slog.New(slog.DiscardHandler), progress: func(Progress) {}}, cfg: &cfg, res: &Result{}}
	st.state.Root = root
	return st, root
}

// runAsHook runs command line as a package hook in root would, with the
// PATH libalpm gives hooks (chroot.PATH), each directory inside root,
// from root: what it prints, and whether the real generator ran.
func runAsHook(t *testing.T, root, line string) (string, bool) {
	t.Helper()
	var path []string
	for _, d := range strings.Split(chroot.PATH, ":") {
		path = append(path, filepath.Join(root, d))
	}
	cmd := exec.Command("/bin/sh", "-c", line)
	cmd.Dir = root
	cmd.Env = []string{"PATH=" + strings.Join(path, ":")}
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	_, serr := os.Stat(filepath.Join(root, "tmp/built"))
	return string(out), serr == nil
}

// The bootable layer's transaction finds a stub first in its hooks' PATH:
// 90-mkinitcpio-install's "mkinitcpio -p linux-lts" runs the stub, which
// says so and succeeds, and the real generator does not run. After the
// transaction the stub is gone and the generator runs again.
func TestInitramfsStubsStandInForTheGeneratorDuringTheTransaction(t *testing.T) {
	st, root := stubBuild(t, "mkinitcpio")
	stub := filepath.Join(root, stubDir, "mkinitcpio")
	ran := false
	require.NoError(t, st.withInitramfsStubs(func() error {
		ran = true
		fi, err := os.Stat(stub)
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o755), fi.Mode().Perm())
		out, built := runAsHook(t, root, "mkinitcpio -p linux-lts")
		assert.False(t, built, "the real generator did not run")
		assert.Contains(t, out, "paczfs: mkinitcpio skipped here")
		return nil
	}))
	assert.True(t, ran)
	assert.NoFileExists(t, stub, "removed after the transaction")
	assert.DirExists(t, filepath.Join(root, stubDir))
	_, built := runAsHook(t, root, "mkinitcpio -p linux-lts")
	assert.True(t, built, "and the generator is the real one again")
}

// A transaction that fails leaves no stub either, and its error is the
// one returned.
func TestInitramfsStubsAreRemovedWhenTheTransactionFails(t *testing.T) {
	st, root := stubBuild(t, "mkinitcpio")
	boom := errors.New("transaction failed")
	err := st.withInitramfsStubs(func() error { return boom })
	require.ErrorIs(t, err, boom)
	assert.NoFileExists(t, filepath.Join(root, stubDir, "mkinitcpio"))
}

// A file the target already has at a stub's path is its own: it is
// neither replaced nor removed.
func TestInitramfsStubsLeaveTheTargetsOwnFile(t *testing.T) {
	st, root := stubBuild(t, "mkinitcpio")
	own := filepath.Join(root, stubDir, "mkinitcpio")
	require.NoError(t, os.WriteFile(own, []byte("#!/bin/sh\necho mine\n"), 0o755))
	require.NoError(t, st.withInitramfsStubs(func() error { return nil }))
	data, err := os.ReadFile(own)
	require.NoError(t, err)
	assert.Equal(t, "#!/bin/sh\necho mine\n", string(data))
}

// A /usr/local/sbin that links to bin (a merged sbin) is followed inside
// the root; without the directory nothing is stubbed and the transaction
// still runs.
func TestInitramfsStubsWhereTheDirectoryIsALinkOrMissing(t *testing.T) {
	st, root := stubBuild(t, "mkinitcpio")
	require.NoError(t, os.Remove(filepath.Join(root, stubDir)))
	require.NoError(t, os.MkdirAll(filepath.Join(root, "usr/local/bin"), 0o755))
	require.NoError(t, os.Symlink("bin", filepath.Join(root, stubDir)))
	require.NoError(t, st.withInitramfsStubs(func() error {
		assert.FileExists(t, filepath.Join(root, "usr/local/bin/mkinitcpio"))
		_, built := runAsHook(t, root, "mkinitcpio -P")
		assert.False(t, built)
		return nil
	}))
	assert.NoFileExists(t, filepath.Join(root, "usr/local/bin/mkinitcpio"))

	st, root = stubBuild(t, "mkinitcpio")
	require.NoError(t, os.Remove(filepath.Join(root, stubDir)))
	ran := false
	require.NoError(t, st.withInitramfsStubs(func() error { ran = true; return nil }))
	assert.True(t, ran)
	assert.NoDirExists(t, filepath.Join(root, stubDir), "nothing is made")
}

// No stubs, nothing written: the dracut profile's generator has no hook.
func TestNoInitramfsStubsWriteNothing(t *testing.T) {
	st, root := stubBuild(t)
	require.NoError(t, st.withInitramfsStubs(func() error {
		_, built := runAsHook(t, root, "mkinitcpio -P")
		assert.True(t, built)
		return nil
	}))
	ents, err := os.ReadDir(filepath.Join(root, stubDir))
	require.NoError(t, err)
	assert.Empty(t, ents)
	assert.Empty(t, ArchDracutProfile().Boot.InitramfsStubs)
	assert.Equal(t, []string{"mkinitcpio"}, ArchProfile().Boot.InitramfsStubs)
}

// A stub is a command's name: a path, or nothing, is refused before
// anything is written, naming the field.
func TestInitramfsStubsMustBeNames(t *testing.T) {
	for _, bad := range []string{"/usr/bin/mkinitcpio", "", "../mkinitcpio", "mk initcpio"} {
		cfg := testConfig(t)
		cfg.Boot.InitramfsStubs = []string{"dracut", bad}
		_, err := New(cfg, hostOK)
		var ce *ConfigError
		require.ErrorAs(t, err, &ce, "%q", bad)
		assert.Contains(t, err.Error(), "boot.initramfs_stubs[1]", "%q", bad)
	}
	cfg := testConfig(t)
	cfg.Boot.InitramfsStubs = []string{"mkinitcpio", "dracut", "update-initramfs"}
	_, err := New(cfg, hostOK)
	assert.NoError(t, err)

	cfg.Boot.InitramfsStubs = []string{"mkinitcpio", "dracut", "mkinitcpio"}
	_, err = New(cfg, hostOK)
	assert.ErrorContains(t, err, "boot.initramfs_stubs[2]", "named twice")

	// Stubbed, the hook no longer rebuilds in a derived release's sync:
	// each of its targets must make the initramfs stage rebuild.
	cfg = testConfig(t)
	cfg.Boot.InitramfsTriggers = slices.DeleteFunc(cfg.Boot.InitramfsTriggers, func(s string) bool { return s == "usr/lib/modules/*" })
	_, err = New(cfg, hostOK)
	require.ErrorContains(t, err, "boot.initramfs_triggers")
	assert.ErrorContains(t, err, "usr/lib/modules/*/vmlinuz")
	cfg.Boot.InitramfsStubs = nil
	_, err = New(cfg, hostOK)
	assert.NoError(t, err, "without stubs the hook rebuilds itself")
}

// A /usr/local/sbin that leads out of the root is not written through:
// the build warns that the hook will build, and the transaction runs.
func TestInitramfsStubsWarnWhenTheirDirectoryLeadsOut(t *testing.T) {
	st, root := stubBuild(t, "mkinitcpio")
	outside := t.TempDir()
	require.NoError(t, os.Remove(filepath.Join(root, stubDir)))
	require.NoError(t, os.Symlink(outside, filepath.Join(root, stubDir)))
	ran := false
	require.NoError(t, st.withInitramfsStubs(func() error { ran = true; return nil }))
	assert.True(t, ran)
	require.Len(t, st.warnings, 1)
	assert.Contains(t, st.warnings[0], "boot.initramfs_stubs not written")
	ents, err := os.ReadDir(outside)
	require.NoError(t, err)
	assert.Empty(t, ents, "nothing written outside the root")
}

// A transaction that built the initramfs all the same (a hook that runs
// the generator by its path) is reported: the image is built twice.
func TestAnInitramfsTheStubbedTransactionBuiltIsReported(t *testing.T) {
	st, root := stubBuild(t, "mkinitcpio")
	st.cfg.Boot.Kernel = "/usr/lib/modules/{kver}/vmlinuz"
	require.NoError(t, writeFile(root, "usr/lib/modules/6.12.9-1-lts/vmlinuz", []byte("kernel"), 0o644))
	require.NoError(t, writeFile(root, "usr/lib/modules/6.12.9-1-lts/pkgbase", []byte("linux-lts\n"), 0o644))
	st.checkStubbed()
	assert.Empty(t, st.warnings, "no initramfs: the stub stood in")
	require.NoError(t, writeFile(root, "boot/initramfs-linux-lts.img", []byte("built"), 0o644))
	st.checkStubbed()
	require.Len(t, st.warnings, 1)
	assert.Contains(t, st.warnings[0], "/boot/initramfs-linux-lts.img")
}

// A derived release's package sync runs with mkinitcpio stubbed too, so
// wherever 90-mkinitcpio-install would have rebuilt the initramfs (its
// targets, InitramfsHookTargets), the initramfs stage must rebuild it:
// each of those paths is one of InitramfsTriggers.
func TestArchStubbedHookTargetsAreInitramfsTriggers(t *testing.T) {
	b := ArchProfile().Boot
	require.Contains(t, b.InitramfsStubs, "mkinitcpio")
	require.NotEmpty(t, b.InitramfsHookTargets)
	for _, target := range b.InitramfsHookTargets {
		path := strings.ReplaceAll(target, "*", "6.12.61-1-lts/x")
		assert.Equal(t, path, triggered([]string{path}, b.InitramfsTriggers), "%s (as %s) is a trigger", target, path)
	}
}

package bootenv

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// defaultEntries are the entry files ranked default.
func defaultEntries(r *rig) []string {
	var out []string
	for _, f := range r.entryFiles() {
		if !strings.HasPrefix(f, ".") && strings.Contains(r.read("loader/entries/"+f), "sort-key "+SortDefault) {
			out = append(out, f)
		}
	}
	return out
}

// A trial that spent its tries and was renamed stays spent: it does not
// become an uncounted entry ranked first that boots, and fails, forever.
func TestRenameKeepsASpentTrialSpent(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	m := r.manager("zroot/system/default", "")
	require.NoError(t, m.Create(ctx, "next", CreateOptions{}))
	require.NoError(t, m.Activate(ctx, "next", ActivateOptions{Mode: Trial, Tries: 1}))
	require.Equal(t, "next", r.firmwareBoot()) // the trial's boot fails
	require.Equal(t, "default", r.firmwareBoot())
	rep, err := r.manager("zroot/system/default", "").Good(ctx)
	require.NoError(t, err)
	require.Equal(t, []string{"next"}, rep.Bad)

	require.NoError(t, m.Rename(ctx, "next", "broken"))
	assert.Contains(t, r.entryFiles(), "paczfs-broken+0-1.conf")
	assert.Equal(t, "default", r.firmwareBoot(), "the bad environment does not boot first")

	// A trial with tries left keeps them.
	require.NoError(t, m.Create(ctx, "other", CreateOptions{}))
	require.NoError(t, m.Activate(ctx, "other", ActivateOptions{Mode: Trial, Tries: 2}))
	require.NoError(t, m.Rename(ctx, "other", "renamed"))
	assert.Contains(t, r.entryFiles(), "paczfs-renamed+2.conf")
	assert.Equal(t, "renamed", r.firmwareBoot())
}

// Environments whose names end in .old or .new keep their files when
// another environment's boot files are installed.
func TestBootFilesOfEnvironmentsNamedLikeScratchDirectoriesStay(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	m := r.manager("zroot/system/default", "")
	require.NoError(t, m.Create(ctx, "default.old", CreateOptions{}))
	require.NoError(t, m.InstallBootFiles(ctx, "default"))
	assert.FileExists(t, filepath.Join(r.esp, "env/default.old/vmlinuz-6.12.1"))
	require.NoError(t, m.Create(ctx, "x.new", CreateOptions{}))
	require.NoError(t, m.Create(ctx, "x", CreateOptions{}))
	assert.FileExists(t, filepath.Join(r.esp, "env/x.new/vmlinuz-6.12.1"))
}

// New boot files never replace the ones the entry names until the entry
// names the new ones: stopped at the entry's write (a power cut), the
// entry's files are all there, for a new kernel version and for new
// bytes under the same names (Arch's vmlinuz-linux); once written, the
// files no longer named are removed.
func TestInstallBootFilesStoppedBeforeTheEntryLeavesItBootable(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	m := r.manager("zroot/system/default", "")
	root := r.f.files("zroot/system/default")
	blocker := filepath.Join(r.esp, "loader/entries/.paczfs-default.conf.tmp")
	entryFiles := func() (string, string) {
		e := readEntry(r.read("loader/entries/paczfs-default.conf"))
		require.Len(t, e.Initrd, 1)
		return e.Linux, e.Initrd[0]
	}
	content := func(p string) string { return r.read(strings.TrimPrefix(p, "/")) }
	k0, i0 := entryFiles()
	was := content(k0)

	// Same names, new bytes.
	require.NoError(t, os.WriteFile(filepath.Join(root, "boot/vmlinuz-6.12.1"), []byte("rebuilt kernel"), 0o644))
	require.NoError(t, os.Mkdir(blocker, 0o755))
	require.Error(t, m.InstallBootFiles(ctx, "default"))
	k, i := entryFiles()
	assert.Equal(t, k0, k)
	assert.Equal(t, was, content(k), "the entry's kernel is the one it was written with")
	assert.FileExists(t, filepath.Join(r.esp, i))
	require.NoError(t, os.Remove(blocker))
	require.NoError(t, m.InstallBootFiles(ctx, "default"))
	k, i = entryFiles()
	assert.Equal(t, "/env/default/vmlinuz-6.12.1.b", k)
	assert.Equal(t, "rebuilt kernel", content(k))
	assert.Equal(t, i0, i, "the initramfs did not change: kept under its name")
	assert.NoFileExists(t, filepath.Join(r.esp, k0), "the file no longer named is removed")
	// And back to the plain name at the next change.
	require.NoError(t, os.WriteFile(filepath.Join(root, "boot/vmlinuz-6.12.1"), []byte("rebuilt again"), 0o644))
	require.NoError(t, m.InstallBootFiles(ctx, "default"))
	k, _ = entryFiles()
	assert.Equal(t, k0, k)
	assert.Equal(t, "rebuilt again", content(k))

	// A new kernel version.
	require.NoError(t, os.Remove(filepath.Join(root, "boot/vmlinuz-6.12.1")))
	require.NoError(t, os.Remove(filepath.Join(root, "boot/initrd.img-6.12.1")))
	require.NoError(t, os.WriteFile(filepath.Join(root, "boot/vmlinuz-6.13.0"), []byte("k"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(root, "boot/initrd.img-6.13.0"), []byte("i"), 0o644))
	require.NoError(t, os.Mkdir(blocker, 0o755))
	require.Error(t, m.InstallBootFiles(ctx, "default"))
	k, i = entryFiles()
	assert.FileExists(t, filepath.Join(r.esp, k), "the default's entry names its kernel")
	assert.FileExists(t, filepath.Join(r.esp, i))
	require.NoError(t, os.Remove(blocker))
	require.NoError(t, m.InstallBootFiles(ctx, "default"))
	k, i = entryFiles()
	assert.Equal(t, "/env/default/vmlinuz-6.13.0", k)
	assert.Equal(t, "/env/default/initrd.img-6.13.0", i)
	des, err := os.ReadDir(filepath.Join(r.esp, "env/default"))
	require.NoError(t, err)
	var names []string
	for _, de := range des {
		names = append(names, de.Name())
	}
	assert.ElementsMatch(t, []string{"vmlinuz-6.13.0", "initrd.img-6.13.0"}, names)
	assert.Equal(t, "default", r.firmwareBoot())
}

// Good snapshots go by the transaction that made them, not by their
// names: with the clock behind (no RTC battery, a boot before NTP), the
// snapshot just taken is kept and is the one a rollback takes.
func TestGoodSnapshotsGoByCreationNotByName(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	m := r.manager("zroot/system/default", "", WithKeepGood(2))
	for range 2 {
		_, err := m.Good(ctx)
		require.NoError(t, err)
		r.now = r.now.Add(time.Hour)
	}
	r.now = time.Date(2000, 1, 1, 0, 0, 10, 0, time.UTC)
	rep, err := m.Good(ctx)
	require.NoError(t, err)
	assert.NotContains(t, rep.Pruned, rep.Snapshot)
	snaps, err := m.GoodSnapshots(ctx, "default")
	require.NoError(t, err)
	require.Len(t, snaps, 2)
	assert.Equal(t, rep.Snapshot, snaps[1], "the newest last")
}

// Making an environment the default ranks it before the old default is
// demoted: stopped between, two entries are ranked default, never none.
func TestMakeDefaultNeverLeavesNoDefault(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	m := r.manager("zroot/system/default", "")
	require.NoError(t, m.Create(ctx, "next", CreateOptions{}))
	require.NoError(t, os.Mkdir(filepath.Join(r.esp, "loader/entries/.paczfs-next.conf.tmp"), 0o755))
	require.Error(t, m.Activate(ctx, "next", ActivateOptions{Mode: Permanent}))
	assert.Equal(t, []string{"paczfs-default.conf"}, defaultEntries(r), "the old default is still ranked default")
	require.NoError(t, os.Remove(filepath.Join(r.esp, "loader/entries/.paczfs-next.conf.tmp")))

	// Stopped at the old default's demotion.
	require.NoError(t, os.Mkdir(filepath.Join(r.esp, "loader/entries/.paczfs-default.conf.tmp"), 0o755))
	require.Error(t, m.Activate(ctx, "next", ActivateOptions{Mode: Permanent}))
	assert.ElementsMatch(t, []string{"paczfs-default.conf", "paczfs-next.conf"}, defaultEntries(r))
	require.NoError(t, os.Remove(filepath.Join(r.esp, "loader/entries/.paczfs-default.conf.tmp")))
	require.NoError(t, m.Activate(ctx, "next", ActivateOptions{Mode: Permanent}))
	assert.Equal(t, []string{"paczfs-next.conf"}, defaultEntries(r))
}

// A name whose ESP directory is already there (left by an environment
// destroyed by hand), or that differs from an environment's only in case
// (the ESP's FAT does not tell them apart), is refused before anything
// changes.
func TestNamesTheESPCannotTellApartAreRefused(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	m := r.manager("zroot/system/default", "")
	require.NoError(t, m.Create(ctx, "next", CreateOptions{}))
	require.NoError(t, m.Activate(ctx, "next", ActivateOptions{Mode: Permanent}))
	require.NoError(t, os.MkdirAll(filepath.Join(r.esp, "env/stable/junk"), 0o755))
	before := r.entryFiles()

	err := m.Rename(ctx, "next", "stable")
	assert.ErrorIs(t, err, ErrExists)
	assert.ErrorContains(t, err, "env/stable")
	assert.NotNil(t, r.f.ds["zroot/system/next"], "not renamed")
	assert.Equal(t, "zroot/system/next", r.f.bootfs)
	assert.ErrorIs(t, m.Create(ctx, "stable", CreateOptions{}), ErrExists)
	assert.Nil(t, r.f.ds["zroot/system/stable"])

	assert.ErrorIs(t, m.Create(ctx, "Default", CreateOptions{}), ErrExists)
	assert.Nil(t, r.f.ds["zroot/system/Default"])
	assert.ErrorIs(t, m.Rename(ctx, "next", "DEFAULT"), ErrExists)
	assert.ErrorIs(t, m.Rename(ctx, "next", "Next"), ErrRefused)
	assert.Equal(t, before, r.entryFiles(), "the ESP is as it was")
	assert.Equal(t, "next", r.firmwareBoot())
}

// Reinstalling a pending trial's boot files (a release applied again)
// keeps it a trial: its counter, its rank and its options.
func TestInstallBootFilesKeepsATrial(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	m := r.manager("zroot/system/default", "")
	require.NoError(t, m.Create(ctx, "next", CreateOptions{}))
	require.NoError(t, m.Activate(ctx, "next", ActivateOptions{Mode: Trial, Tries: 2}))
	require.NoError(t, m.InstallBootFiles(ctx, "next"))
	assert.Contains(t, r.entryFiles(), "paczfs-next+2.conf")
	text := r.read("loader/entries/paczfs-next+2.conf")
	assert.Contains(t, text, "sort-key "+SortTrial)
	assert.Contains(t, text, strings.Join(TrialOptions(), " "))
	assert.Equal(t, "next", r.firmwareBoot())
}

// The default cannot become a trial, good or not: its entry would leave
// the default rank, and once its tries were spent no entry would be
// ranked default to fall back to.
func TestTheDefaultIsNeverATrial(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	m := r.manager("zroot/system/default", "")
	require.NoError(t, m.Create(ctx, "next", CreateOptions{}))
	require.NoError(t, m.Activate(ctx, "next", ActivateOptions{Mode: Permanent})) // new, and the default
	assert.ErrorIs(t, m.Activate(ctx, "next", ActivateOptions{Mode: Trial}), ErrRefused)
	assert.Equal(t, []string{"paczfs-next.conf"}, defaultEntries(r))
}

// An environment's boot files are read inside its root: a link in it
// that leads out (to the running system's files) is an error, and
// nothing of the host reaches the ESP.
func TestBootFilesAreReadInsideTheEnvironment(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	m := r.manager("zroot/system/default", "")
	require.NoError(t, m.Create(ctx, "next", CreateOptions{}))
	root := r.f.files("zroot/system/next")
	host := filepath.Join(t.TempDir(), "host-secret")
	require.NoError(t, os.WriteFile(host, []byte("the running system's"), 0o600))
	k := filepath.Join(root, "boot/vmlinuz-6.12.1")
	require.NoError(t, os.Remove(k))
	require.NoError(t, os.Symlink(host, k))
	assert.Error(t, m.InstallBootFiles(ctx, "next"))
	filepath.WalkDir(r.esp, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			b, _ := os.ReadFile(p)
			assert.NotContains(t, string(b), "the running system's", p)
		}
		return nil
	})
}

package bootenv

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/paczfs/paczfs/boot"

	"github.com/paczfs/paczfs/hooks"
)

// rig is one device: a pool with the default environment booted (good,
// the default), its ESP in a directory, and a clock.
type rig struct {
	t    *testing.T
	f    *fakePool
	esp  string
	now  time.Time
	work string
}

func newRig(t *testing.T) *rig {
	dir := t.TempDir()
	r := &rig{t: t, f: newFakePool(dir, "zroot"), esp: filepath.Join(dir, "esp"), now: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC), work: filepath.Join(dir, "work")}
	require.NoError(t, os.MkdirAll(r.work, 0o755))
	r.f.add("zroot/system/default", map[string]string{"canmount": "noauto", "mountpoint": "/", PropState: "good", PropLastGood: "1764000000"})
	r.f.writeRoot("zroot/system/default", "6.12.1")
	r.f.bootfs = "zroot/system/default"
	// What the image build leaves: the default's files and entry.
	m := r.manager("zroot/system/default", "")
	require.NoError(t, m.installBootFiles(context.Background(), "default", SortDefault))
	require.NoError(t, os.WriteFile(filepath.Join(r.esp, "loader", "loader.conf"), []byte("default paczfs-default.conf\ntimeout 1\neditor no\n"), 0o644))
	return r
}

func (r *rig) manager(booted, cmdline string, opts ...Option) *Manager {
	base := []Option{WithRunner(r.f), WithESP(r.esp), WithEFIVars(r.f.efivars), WithWorkDir(r.work),
		WithClock(func() time.Time { return r.now }), WithBooted(booted, cmdline)}
	if booted != "" {
		base = append(base, WithRoot(r.f.files(booted)))
	}
	m, err := New(context.Background(), append(base, opts...)...)
	require.NoError(r.t, err)
	return m
}

// boot is what systemd-boot does at boot with a counted entry: it
// decrements its counter (renaming the file). It returns the entry booted:
// the first in our order with tries left.
func (r *rig) firmwareBoot() string {
	des, err := os.ReadDir(filepath.Join(r.esp, "loader", "entries"))
	require.NoError(r.t, err)
	type cand struct {
		file, key string
		left      int
	}
	var cs []cand
	for _, de := range des {
		_, left, _, ok := ParseEntryName(de.Name())
		require.True(r.t, ok, de.Name())
		data, _ := os.ReadFile(filepath.Join(r.esp, "loader", "entries", de.Name()))
		cs = append(cs, cand{de.Name(), readEntry(string(data)).SortKey, left})
	}
	sort.SliceStable(cs, func(i, j int) bool {
		if (cs[i].left == 0) != (cs[j].left == 0) {
			return cs[j].left == 0
		}
		return cs[i].key < cs[j].key
	})
	c := cs[0]
	name, left, done, _ := ParseEntryName(c.file)
	if left > 0 {
		next := filepath.Join(r.esp, "loader", "entries", EntryPrefix+name+"+"+strconv.Itoa(left-1)+"-"+strconv.Itoa(done+1)+".conf")
		require.NoError(r.t, os.Rename(filepath.Join(r.esp, "loader", "entries", c.file), next))
	}
	return name
}

func (r *rig) entryFiles() []string {
	des, _ := os.ReadDir(filepath.Join(r.esp, "loader", "entries"))
	var out []string
	for _, de := range des {
		out = append(out, de.Name())
	}
	return out
}

func (r *rig) read(p string) string {
	data, err := os.ReadFile(filepath.Join(r.esp, p))
	require.NoError(r.t, err, p)
	return string(data)
}

func get(t *testing.T, m *Manager, name string) Environment {
	e, err := m.Get(context.Background(), name)
	require.NoError(t, err)
	return e
}

func TestCreateFromBootedGetsItsOwnBootFilesAndEntry(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	m := r.manager("zroot/system/default", "root=ZFS=zroot/system/default rw")
	require.NoError(t, m.Create(ctx, "next", CreateOptions{}))
	e := get(t, m, "next")
	assert.Equal(t, "zroot/system/next", e.Dataset)
	assert.Equal(t, "zroot/system/default@be-next-20261201T100000Z", e.Origin)
	assert.Equal(t, StateNew, e.State)
	assert.False(t, e.Default)
	assert.False(t, e.Booted)
	assert.Equal(t, "6.12.1", e.Kernel)
	assert.Equal(t, "paczfs-next.conf", e.Entry)
	assert.Equal(t, -1, e.TriesLeft)
	assert.Equal(t, "noauto", r.f.ds["zroot/system/next"].props["canmount"])
	assert.Equal(t, "/", r.f.ds["zroot/system/next"].props["mountpoint"])
	assert.Equal(t, "kernel 6.12.1", r.read("env/next/vmlinuz-6.12.1"))
	assert.Equal(t, "initrd 6.12.1 of zroot/system/default", r.read("env/next/initrd.img-6.12.1"), "copied from its own root (a clone of default)")
	entry := r.read("loader/entries/paczfs-next.conf")
	assert.Contains(t, entry, "options boot=zfs root=ZFS=zroot/system/next rw console=ttyS0\n")
	assert.Contains(t, entry, "linux   /env/next/vmlinuz-6.12.1\n")
	assert.Contains(t, entry, "sort-key "+SortOther+"\n")
	def := get(t, m, "default")
	assert.True(t, def.Booted)
	assert.True(t, def.Default)
	assert.Equal(t, StateGood, def.State)
	assert.Equal(t, time.Unix(1764000000, 0).UTC(), def.LastGood)

	// Again: exists. From a snapshot and from another environment.
	assert.ErrorIs(t, m.Create(ctx, "next", CreateOptions{}), ErrExists)
	require.NoError(t, m.Create(ctx, "fromsnap", CreateOptions{From: "zroot/system/default@be-next-20261201T100000Z"}))
	assert.Equal(t, "zroot/system/default@be-next-20261201T100000Z", get(t, m, "fromsnap").Origin)
	require.NoError(t, m.Create(ctx, "fromenv", CreateOptions{From: "next"}))
	assert.Equal(t, "zroot/system/next@be-fromenv-20261201T100000Z", get(t, m, "fromenv").Origin)
	require.NoError(t, m.Create(ctx, "empty", CreateOptions{Empty: true}))
	assert.Equal(t, "", get(t, m, "empty").Entry, "no boot files until a stream is received")
	assert.ErrorIs(t, m.Create(ctx, "bad+3", CreateOptions{}), ErrInvalidName)
	assert.ErrorIs(t, m.Create(ctx, "x", CreateOptions{From: "nothere"}), ErrNotFound)
}

func TestCreateFailureLeavesNothing(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	m := r.manager("zroot/system/default", "")
	// The source has no boot.json: not an environment paczfs can boot.
	require.NoError(t, os.Remove(filepath.Join(r.f.files("zroot/system/default"), "etc/paczfs/boot.json")))
	err := m.Create(ctx, "next", CreateOptions{})
	assert.ErrorIs(t, err, ErrNoBootFiles)
	_, ok := r.f.ds["zroot/system/next"]
	assert.False(t, ok, "the clone is destroyed")
	_, ok = r.f.ds["zroot/system/default@be-next-20261201T100000Z"]
	assert.False(t, ok, "the snapshot made for it too")
	assert.NoDirExists(t, filepath.Join(r.esp, "env/next"))
	assert.Equal(t, []string{"paczfs-default.conf"}, r.entryFiles())
}

func TestActivatePermanentKeepsBootfsLoaderAndEntriesInAgreement(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	m := r.manager("zroot/system/default", "")
	require.NoError(t, m.Create(ctx, "b", CreateOptions{}))
	require.NoError(t, m.Activate(ctx, "b", ActivateOptions{Mode: Permanent}))
	assert.Equal(t, "zroot/system/b", r.f.bootfs)
	assert.Contains(t, r.read("loader/entries/paczfs-b.conf"), "sort-key "+SortDefault)
	assert.Contains(t, r.read("loader/entries/paczfs-default.conf"), "sort-key "+SortOther)
	assert.Equal(t, "default paczfs-*\ntimeout 1\neditor no\n", r.read("loader/loader.conf"), "the glob replaces the pinned default; other lines kept")
	assert.Equal(t, "b", r.firmwareBoot())
	assert.True(t, get(t, m, "b").Default)
	assert.False(t, get(t, m, "default").Default)
}

func TestActivateOnceSetsTheFirmwareVariableOnly(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	m := r.manager("zroot/system/default", "")
	require.NoError(t, m.Create(ctx, "b", CreateOptions{}))
	require.NoError(t, m.Activate(ctx, "b", ActivateOptions{Mode: Once}))
	data, err := os.ReadFile(filepath.Join(r.f.efivars, "LoaderEntryOneShot-4a67b082-0a4c-41cf-b6c7-440b29bb8c4f"))
	require.NoError(t, err)
	assert.Equal(t, EncodeEFIString("paczfs-b.conf"), data, "the variable as bootctl set-oneshot writes it")
	assert.True(t, get(t, m, "b").NextOnce)
	assert.Equal(t, "zroot/system/default", r.f.bootfs, "bootfs unchanged")
	s, err := m.Status(ctx)
	require.NoError(t, err)
	assert.Equal(t, "b", s.Next)
	assert.Equal(t, "default", s.Default)

	img := r.manager("", "", WithImage(), WithPool("zroot"))
	assert.ErrorIs(t, img.Activate(ctx, "b", ActivateOptions{Mode: Once}), ErrNotBooted)
}

func TestActivateClearsAPinnedDefault(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	require.NoError(t, os.WriteFile(filepath.Join(r.f.efivars, varDefault+"-"+loaderGUID), EncodeEFIString("paczfs-default.conf"), 0o644))
	m := r.manager("zroot/system/default", "")
	require.NoError(t, m.Create(ctx, "b", CreateOptions{}))
	require.NoError(t, m.Activate(ctx, "b", ActivateOptions{Mode: Trial, Tries: 2}))
	assert.NoFileExists(t, filepath.Join(r.f.efivars, varDefault+"-"+loaderGUID), "a pinned LoaderEntryDefault would override the fallback order (systemd#31215)")
}

// A trial that boots well: counted entry first, blessed by Good, which
// makes it the default, snapshots it and marks it good.
func TestTrialThatBootsWellBecomesTheDefault(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	m := r.manager("zroot/system/default", "")
	require.NoError(t, m.Create(ctx, "b", CreateOptions{}))
	require.NoError(t, m.Activate(ctx, "b", ActivateOptions{Mode: Trial, Tries: 2}))
	assert.ElementsMatch(t, []string{"paczfs-b+2.conf", "paczfs-default.conf"}, r.entryFiles(), "one file per entry (systemd#33504)")
	entry := r.read("loader/entries/paczfs-b+2.conf")
	assert.Contains(t, entry, " paczfs.trial panic=10 rd.shell=0 rd.emergency=reboot\n", "dracut reboots instead of waiting in a shell")
	assert.Contains(t, entry, "sort-key "+SortTrial)
	assert.Equal(t, StateTrying, get(t, m, "b").State)
	assert.Equal(t, 2, get(t, m, "b").TriesLeft)
	assert.Equal(t, "zroot/system/default", r.f.bootfs, "the default stays until the trial is good")

	require.Equal(t, "b", r.firmwareBoot())
	assert.ElementsMatch(t, []string{"paczfs-b+1-1.conf", "paczfs-default.conf"}, r.entryFiles())
	r.now = r.now.Add(time.Hour)
	booted := r.manager("zroot/system/b", "root=ZFS=zroot/system/b rw paczfs.trial panic=10")
	rep, err := booted.Good(ctx)
	require.NoError(t, err)
	assert.True(t, rep.Promoted)
	assert.True(t, rep.Blessed)
	assert.Equal(t, "zroot/system/b@good-20261201T110000Z", rep.Snapshot)
	assert.ElementsMatch(t, []string{"paczfs-b.conf", "paczfs-default.conf"}, r.entryFiles())
	entry = r.read("loader/entries/paczfs-b.conf")
	assert.NotContains(t, entry, "paczfs.trial")
	assert.NotContains(t, entry, "panic=")
	assert.Contains(t, entry, "sort-key "+SortDefault)
	assert.Equal(t, "zroot/system/b", r.f.bootfs)
	b := get(t, booted, "b")
	assert.Equal(t, StateGood, b.State)
	assert.Equal(t, r.now, b.LastGood)
	assert.True(t, b.Default)
	assert.True(t, b.Booted)
	assert.Equal(t, "b", r.firmwareBoot())
}

// Systemd-bless-boot got there first (renamed b+1-1 to b.conf): Good still
// promotes the trial, from its state on the pool.
func TestTrialBlessedBySystemdIsPromotedToo(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	m := r.manager("zroot/system/default", "")
	require.NoError(t, m.Create(ctx, "b", CreateOptions{}))
	require.NoError(t, m.Activate(ctx, "b", ActivateOptions{Mode: Trial, Tries: 1}))
	require.NoError(t, os.Rename(filepath.Join(r.esp, "loader/entries/paczfs-b+1.conf"), filepath.Join(r.esp, "loader/entries/paczfs-b.conf")))
	rep, err := r.manager("zroot/system/b", "root=ZFS=zroot/system/b").Good(ctx)
	require.NoError(t, err)
	assert.True(t, rep.Promoted)
	assert.Equal(t, "zroot/system/b", r.f.bootfs)
}

// A trial that fails every try: after N tries systemd-boot sorts it last
// and boots the default; Good there records the trial as bad.
func TestTrialThatFailsFallsBackAfterNPlusOneBoots(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	m := r.manager("zroot/system/default", "")
	require.NoError(t, m.Create(ctx, "b", CreateOptions{}))
	const tries = 3
	require.NoError(t, m.Activate(ctx, "b", ActivateOptions{Mode: Trial, Tries: tries}))
	var booted []string
	for i := 0; i < tries+1; i++ {
		booted = append(booted, r.firmwareBoot()) // each trial boot fails: nothing blesses it
	}
	assert.Equal(t, []string{"b", "b", "b", "default"}, booted, "N tries, then the default, with no input")
	assert.ElementsMatch(t, []string{"paczfs-b+0-3.conf", "paczfs-default.conf"}, r.entryFiles(), "the counters read as systemd documents")
	rep, err := r.manager("zroot/system/default", "root=ZFS=zroot/system/default").Good(ctx)
	require.NoError(t, err)
	assert.Equal(t, []string{"b"}, rep.Bad)
	assert.False(t, rep.Promoted)
	assert.Equal(t, StateBad, get(t, m, "b").State)
	assert.Equal(t, 0, get(t, m, "b").TriesLeft)
	assert.Equal(t, 3, get(t, m, "b").TriesDone)
	assert.Equal(t, "zroot/system/default", r.f.bootfs)
	s, err := m.Status(ctx)
	require.NoError(t, err)
	assert.Equal(t, "default", s.Next)
	// A second trial leaves the spent one's counters alone.
	require.NoError(t, m.Create(ctx, "c", CreateOptions{}))
	require.NoError(t, m.Activate(ctx, "c", ActivateOptions{Mode: Trial, Tries: 1}))
	assert.ElementsMatch(t, []string{"paczfs-b+0-3.conf", "paczfs-c+1.conf", "paczfs-default.conf"}, r.entryFiles())
	assert.Equal(t, StateBad, get(t, m, "b").State)
	require.NoError(t, m.Destroy(ctx, "c"))
	// Activating the bad one again for good is allowed (a person decides).
	require.NoError(t, m.Activate(ctx, "b", ActivateOptions{Mode: Permanent}))
	assert.ElementsMatch(t, []string{"paczfs-b.conf", "paczfs-default.conf"}, r.entryFiles())
	assert.Equal(t, StateNew, get(t, m, "b").State)
}

func TestGoodSnapshotsArePrunedButNeverHeldOrOrigins(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	m := r.manager("zroot/system/default", "", WithKeepGood(2))
	var snaps []string
	for i := 0; i < 4; i++ {
		rep, err := m.Good(ctx)
		require.NoError(t, err)
		snaps = append(snaps, rep.Snapshot)
		if i == 0 {
			r.f.ds[rep.Snapshot].holds = 1 // held by someone
		}
		if i == 1 {
			require.NoError(t, m.Create(ctx, "old", CreateOptions{From: rep.Snapshot}))
		}
		r.now = r.now.Add(time.Hour)
	}
	left, err := m.GoodSnapshots(ctx, "default")
	require.NoError(t, err)
	assert.Equal(t, snaps, left, "the two oldest are held or an origin; none pruned")
	rep, err := m.Good(ctx)
	require.NoError(t, err)
	assert.Equal(t, []string{snaps[2]}, rep.Pruned)
}

func TestDestroyRefusesBootedDefaultAndLastGood(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	m := r.manager("zroot/system/default", "")
	require.NoError(t, m.Create(ctx, "b", CreateOptions{}))
	require.NoError(t, m.Create(ctx, "c", CreateOptions{}))
	assert.ErrorIs(t, m.Destroy(ctx, "default"), ErrRefused, "booted")
	require.NoError(t, m.Activate(ctx, "b", ActivateOptions{Mode: Permanent}))
	other := r.manager("zroot/system/c", "")
	err := other.Destroy(ctx, "b")
	assert.ErrorIs(t, err, ErrRefused)
	assert.Contains(t, err.Error(), "default")
	err = other.Destroy(ctx, "default")
	assert.ErrorIs(t, err, ErrRefused)
	assert.Contains(t, err.Error(), "last environment that booted well")
	assert.ErrorIs(t, m.Destroy(ctx, "nothere"), ErrNotFound)
	require.NoError(t, m.Destroy(ctx, "c"))
	_, ok := r.f.ds["zroot/system/c"]
	assert.False(t, ok)
	_, ok = r.f.ds["zroot/system/default@be-c-20261201T100000Z"]
	assert.False(t, ok, "the snapshot made for it goes with it")
	assert.NoDirExists(t, filepath.Join(r.esp, "env/c"))
	assert.NotContains(t, r.entryFiles(), "paczfs-c.conf")
}

// An environment others were cloned from: the newest clone is promoted
// first, as zectl does, so the others keep their data.
func TestDestroyPromotesDependentClones(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	m := r.manager("zroot/system/default", "")
	require.NoError(t, m.Create(ctx, "a", CreateOptions{}))
	require.NoError(t, m.Create(ctx, "b", CreateOptions{From: "a"}))
	require.NoError(t, m.Destroy(ctx, "a"))
	b := get(t, m, "b")
	assert.Equal(t, "zroot/system/default@be-a-20261201T100000Z", b.Origin, "b now owns a's snapshot, whose origin is default's")
	_, ok := r.f.ds["zroot/system/a"]
	assert.False(t, ok)
	assert.Contains(t, r.f.Calls(), "zfs promote zroot/system/b")
}

func TestRenameMovesDatasetFilesAndEntry(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	m := r.manager("zroot/system/default", "")
	require.NoError(t, m.Create(ctx, "b", CreateOptions{}))
	require.NoError(t, m.Activate(ctx, "b", ActivateOptions{Mode: Permanent}))
	require.NoError(t, m.Rename(ctx, "b", "c"))
	assert.Equal(t, "zroot/system/c", r.f.bootfs)
	entry := r.read("loader/entries/paczfs-c.conf")
	assert.Contains(t, entry, "root=ZFS=zroot/system/c ")
	assert.Contains(t, entry, "linux   /env/c/vmlinuz-6.12.1")
	assert.Contains(t, entry, "(c)")
	assert.FileExists(t, filepath.Join(r.esp, "env/c/vmlinuz-6.12.1"))
	assert.NotContains(t, r.entryFiles(), "paczfs-b.conf")
	assert.ErrorIs(t, m.Rename(ctx, "default", "x"), ErrRefused, "booted")
}

// The original README's workflow: snapshot, clone by hand, zpool set
// bootfs, reboot. Sync (at shutdown) makes the loader boot the clone.
func TestSyncFollowsBootfsToAHandMadeClone(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	// zfs snapshot zroot/system/default@clone; zfs clone ... zroot/system/clone
	_, err := r.f.Run(ctx, cmd("zfs", "snapshot", "zroot/system/default@clone"))
	require.NoError(t, err)
	_, err = r.f.Run(ctx, cmd("zfs", "clone", "zroot/system/default@clone", "zroot/system/clone"))
	require.NoError(t, err)
	_, err = r.f.Run(ctx, cmd("zpool", "set", "bootfs=zroot/system/clone", "zroot"))
	require.NoError(t, err)
	m := r.manager("zroot/system/default", "")
	assert.Equal(t, StateNew, get(t, m, "clone").State, "no state property reads as new")
	rep, err := m.Sync(ctx)
	require.NoError(t, err)
	assert.Equal(t, SyncReport{Bootfs: "zroot/system/clone", Activated: "clone", Installed: true}, rep)
	assert.Equal(t, "noauto", r.f.ds["zroot/system/clone"].props["canmount"])
	assert.Equal(t, "/", r.f.ds["zroot/system/clone"].props["mountpoint"])
	assert.Contains(t, r.read("loader/entries/paczfs-clone.conf"), "root=ZFS=zroot/system/clone ")
	assert.Equal(t, "clone", r.firmwareBoot())
	// Nothing to do the second time.
	rep, err = m.Sync(ctx)
	require.NoError(t, err)
	assert.Equal(t, "", rep.Activated)
}

func TestCheckRebootsOnlyAFailingTrial(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "10-disk"), []byte("#!/bin/sh\nexit 1\n"), 0o755))
	r.f.fail["/bin/health"] = "problem: ssh.service failed\nunhealthy (1 problems)"
	r.f.fail[filepath.Join(dir, "10-disk")] = "disk too full"

	trial := r.manager("zroot/system/b", "root=ZFS=zroot/system/b paczfs.trial panic=10")
	res, err := trial.Check(ctx, CheckOptions{Health: "/bin/health", Dir: dir, Reboot: true})
	assert.ErrorIs(t, err, ErrUnhealthy)
	assert.False(t, res.Healthy)
	assert.True(t, res.Rebooting)
	assert.Equal(t, []string{"ssh.service failed", filepath.Join(dir, "10-disk") + " exited 1"}, res.Problems)
	assert.Contains(t, r.f.Calls(), "systemctl reboot --no-block")

	r.f.calls = nil
	plain := r.manager("zroot/system/default", "root=ZFS=zroot/system/default")
	res, err = plain.Check(ctx, CheckOptions{Health: "/bin/health", Reboot: true})
	assert.ErrorIs(t, err, ErrUnhealthy)
	assert.False(t, res.Rebooting, "a good environment is not rebooted into a loop")
	assert.NotContains(t, r.f.Calls(), "systemctl reboot --no-block")

	delete(r.f.fail, "/bin/health")
	res, err = plain.Check(ctx, CheckOptions{Health: "/bin/health"})
	require.NoError(t, err)
	assert.True(t, res.Healthy)
}

func TestWatchdogRebootsAHungTrial(t *testing.T) {
	r := newRig(t)
	r.f.bootComplete = "inactive"
	clock := r.now
	m := r.manager("zroot/system/b", "paczfs.trial", WithClock(func() time.Time { clock = clock.Add(time.Minute); return clock }))
	require.NoError(t, m.Watchdog(context.Background(), 10*time.Minute, time.Millisecond))
	assert.Contains(t, r.f.Calls(), "systemctl reboot --force")

	r.f.calls = nil
	r.f.bootComplete = "active"
	require.NoError(t, m.Watchdog(context.Background(), 10*time.Minute, time.Millisecond))
	assert.NotContains(t, r.f.Calls(), "systemctl reboot --force")
	r.f.calls = nil
	require.NoError(t, r.manager("zroot/system/b", "").Watchdog(context.Background(), time.Minute, time.Millisecond))
	assert.Empty(t, r.f.Calls(), "not a trial: nothing to watch")
}

func TestRollbackCreatesFromTheLastGoodSnapshotAndActivatesIt(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	m := r.manager("zroot/system/default", "")
	_, err := m.Rollback(ctx, "default")
	assert.ErrorIs(t, err, ErrNoGoodSnapshot)
	_, err = m.Good(ctx)
	require.NoError(t, err)
	r.now = r.now.Add(time.Hour)
	rep, err := m.Good(ctx)
	require.NoError(t, err)
	r.now = r.now.Add(time.Hour)
	name, err := m.Rollback(ctx, "default")
	require.NoError(t, err)
	assert.Equal(t, "default-rollback-20261201T120000Z", name)
	e := get(t, m, name)
	assert.Equal(t, rep.Snapshot, e.Origin, "the newest good snapshot")
	assert.True(t, e.Default)
	assert.Equal(t, StateGood, e.State)
	assert.Equal(t, "zroot/system/"+name, r.f.bootfs)
	assert.Equal(t, name, r.firmwareBoot())
}

func TestMountForChanges(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	m := r.manager("zroot/system/default", "")
	require.NoError(t, m.Create(ctx, "b", CreateOptions{}))
	dir := filepath.Join(t.TempDir(), "mnt")
	require.NoError(t, m.Mount(ctx, "b", dir, false))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "etc/marker"), []byte("b"), 0o644))
	require.NoError(t, m.Unmount(ctx, dir))
	data, err := os.ReadFile(filepath.Join(r.f.files("zroot/system/b"), "etc/marker"))
	require.NoError(t, err)
	assert.Equal(t, "b", string(data))
	assert.ErrorIs(t, m.Mount(ctx, "default", dir, true), ErrRefused, "booted: it is at /")
}

func TestNewNeedsAPoolForAnImage(t *testing.T) {
	_, err := New(context.Background(), WithImage(), WithRunner(newFakePool(t.TempDir(), "zroot")))
	assert.Error(t, err)
	_, err = New(context.Background(), WithBooted("zroot/system/a", ""), WithKeepGood(0))
	assert.Error(t, err)
}

func TestParseEntryName(t *testing.T) {
	for file, want := range map[string]struct {
		env        string
		left, done int
		ok         bool
	}{
		"paczfs-default.conf":     {"default", -1, -1, true},
		"paczfs-b+3.conf":         {"b", 3, 0, true},
		"paczfs-b+2-1.conf":       {"b", 2, 1, true},
		"paczfs-b+0-3.conf":       {"b", 0, 3, true},
		"paczfs-x.y_z-1+1-0.conf": {"x.y_z-1", 1, 0, true},
		"other.conf":              {"", 0, 0, false},
		"paczfs-b+3.conf.tmp":     {"", 0, 0, false},
		".paczfs-b+3.conf.tmp":    {"", 0, 0, false},
	} {
		env, left, done, ok := ParseEntryName(file)
		assert.Equal(t, want.ok, ok, file)
		if ok {
			assert.Equal(t, []any{want.env, want.left, want.done}, []any{env, left, done}, file)
		}
	}
}

// A crash between writing a counted entry and removing the plain one
// leaves two files; the counted one is the newer state.
func TestTwoFilesForOneEntryReadAsTheCountedOne(t *testing.T) {
	r := newRig(t)
	m := r.manager("zroot/system/default", "")
	require.NoError(t, os.WriteFile(filepath.Join(r.esp, "loader/entries/paczfs-default+2.conf"), []byte("title x\nsort-key "+SortTrial+"\nlinux /env/default/vmlinuz-6.12.1\n"), 0o644))
	e := get(t, m, "default")
	assert.Equal(t, "paczfs-default+2.conf", e.Entry)
	require.NoError(t, m.rewrite("default", SortDefault, 0))
	assert.Equal(t, []string{"paczfs-default.conf"}, r.entryFiles())
}

func TestEFIStringRoundTrip(t *testing.T) {
	assert.Equal(t, "paczfs-b.conf", decodeUTF16(EncodeEFIString("paczfs-b.conf")[4:]))
}

func TestDeviceConfig(t *testing.T) {
	d := DefaultDevice()
	require.NoError(t, d.Validate())
	assert.Equal(t, 15*time.Minute, d.WatchdogTimeout())
	d.Watchdog = "10s"
	assert.Error(t, d.Validate())
	d = DefaultDevice()
	d.KeepGood = 0
	assert.Error(t, d.Validate())
	units := Units()
	for _, u := range EnableUnits() {
		assert.Contains(t, units, "/etc/systemd/system/"+u)
	}
	assert.Contains(t, units["/etc/systemd/system/paczfs-boot-check.service"], "RequiredBy=boot-complete.target")
	assert.Contains(t, units["/etc/systemd/system/paczfs-boot-good.service"], "DefaultDependencies=no")
	assert.Contains(t, units["/etc/systemd/system/paczfs-trial-watchdog.service"], "ConditionKernelCommandLine=paczfs.trial")
}

func cmd(args ...string) hooks.Cmd { return hooks.Cmd{Args: args} }

func TestNspawnBootsAnEphemeralCopyReadOnly(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	m := r.manager("zroot/system/default", "")
	require.NoError(t, m.Create(ctx, "b", CreateOptions{}))
	r.f.calls = nil
	require.NoError(t, m.Nspawn(ctx, "b", hooks.Cmd{}, "systemd.unit=multi-user.target"))
	var nspawn string
	var order []string
	for _, c := range r.f.Calls() {
		switch f := strings.Fields(c); f[0] {
		case "mount":
			order = append(order, "mount "+f[4])
		case "umount", "systemd-nspawn":
			order = append(order, f[0]+" ")
		}
		if strings.HasPrefix(c, "systemd-nspawn ") {
			nspawn = c
		}
	}
	assert.Equal(t, []string{"mount zfsutil,ro", "systemd-nspawn ", "umount "}, order, "read-only, unmounted after")
	assert.Regexp(t, `^systemd-nspawn --quiet --ephemeral --boot --machine paczfs-b -D \S+/paczfs-be-b-\d+ systemd.unit=multi-user.target$`, nspawn)
	assert.ErrorIs(t, m.Nspawn(ctx, "default", hooks.Cmd{}), ErrRefused, "the booted one runs already")
}

// An Arch environment's initramfs is the kernel preset's image, named
// after the kernel's package (/boot/initramfs-{pkgbase}.img): Create
// finds the package in the root's own usr/lib/modules/<kver>/pkgbase.
func TestCreateFindsAnArchRootsPresetImage(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	root := r.f.files("zroot/system/default")
	for name, data := range map[string]string{
		"usr/lib/modules/6.12.41-1-lts/vmlinuz": "kernel 6.12.41-1-lts",
		"usr/lib/modules/6.12.41-1-lts/pkgbase": "linux-lts\n",
		"boot/initramfs-linux-lts.img":          "the preset's image",
		strings.TrimPrefix(BootConfig, "/"):     `{"kernel":"/usr/lib/modules/{kver}/vmlinuz","initrd":"/boot/initramfs-{pkgbase}.img","root_options":["zfs={dataset}","rw"]}`,
	} {
		require.NoError(t, os.MkdirAll(filepath.Dir(filepath.Join(root, name)), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(root, name), []byte(data), 0o644))
	}
	m := r.manager("zroot/system/default", "zfs=zroot/system/default rw")
	require.NoError(t, m.Create(ctx, "arch", CreateOptions{}))
	assert.Equal(t, "the preset's image", r.read("env/arch/initramfs-linux-lts.img"))
	entry := r.read("loader/entries/paczfs-arch.conf")
	assert.Contains(t, entry, "linux   /env/arch/vmlinuz\n")
	assert.Contains(t, entry, "initrd  /env/arch/initramfs-linux-lts.img\n")
	assert.Contains(t, entry, "version 6.12.41-1-lts\n")

	// Without the pkgbase file, a clear error and nothing left.
	require.NoError(t, os.Remove(filepath.Join(root, "usr/lib/modules/6.12.41-1-lts/pkgbase")))
	err := m.Create(ctx, "nopkgbase", CreateOptions{})
	assert.ErrorIs(t, err, boot.ErrNoPkgBase)
	_, err = os.Stat(filepath.Join(r.esp, "env", "nopkgbase"))
	assert.True(t, os.IsNotExist(err), "no ESP files left")
}

func TestNewestKernelInBothLayouts(t *testing.T) {
	root := t.TempDir()
	for _, f := range []string{"usr/lib/modules/6.12.9-1-lts/vmlinuz", "usr/lib/modules/6.12.10-1-lts/vmlinuz", "usr/lib/modules/6.12.11-1-lts/modules.dep",
		"boot/vmlinuz-6.1.0-amd64", "boot/vmlinuz-6.12.9-amd64"} {
		require.NoError(t, os.MkdirAll(filepath.Dir(filepath.Join(root, f)), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(root, f), nil, 0o644))
	}
	k, err := newestKernel(root, "/usr/lib/modules/{kver}/vmlinuz")
	require.NoError(t, err)
	assert.Equal(t, "6.12.10-1-lts", k, "Arch: a directory per kernel; one without vmlinuz is no kernel")
	k, err = newestKernel(root, "/boot/vmlinuz-{kver}")
	require.NoError(t, err)
	assert.Equal(t, "6.12.9-amd64", k)
}

// An ESP that also boots legacy BIOS (SYSLINUX): every change of the
// entries rewrites the main configuration (DEFAULT follows the default
// entry, one INCLUDE per environment with files, its own lines kept) and
// each environment's label beside its files, from its entry.
func TestSyslinuxFollowsTheEntries(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	main := filepath.Join(r.esp, "syslinux", "syslinux.cfg")
	require.NoError(t, os.MkdirAll(filepath.Dir(main), 0o755))
	require.NoError(t, os.WriteFile(main, []byte("SERIAL 0 115200\nPROMPT 1\nTIMEOUT 10\nDEFAULT default\nINCLUDE /env/default/syslinux.cfg\n"), 0o644))
	m := r.manager("zroot/system/default", "")
	require.NoError(t, m.InstallBootFiles(ctx, "default"))
	label := r.read("env/default/syslinux.cfg")
	assert.Equal(t, "LABEL default\n  MENU LABEL Arch Linux on ZFS (default)\n  LINUX /env/default/vmlinuz-6.12.1\n  INITRD /env/default/initrd.img-6.12.1\n  APPEND boot=zfs root=ZFS=zroot/system/default rw console=ttyS0\n", label)

	require.NoError(t, m.Create(ctx, "b", CreateOptions{}))
	require.NoError(t, m.Activate(ctx, "b", ActivateOptions{Mode: Trial, Tries: 1}))
	cfg := r.read("syslinux/syslinux.cfg")
	assert.Contains(t, cfg, "SERIAL 0 115200\nPROMPT 1\nTIMEOUT 10\nDEFAULT default\nINCLUDE /env/b/syslinux.cfg\nINCLUDE /env/default/syslinux.cfg\n",
		"the trial is offered, the default stays the default")
	assert.Contains(t, r.read("env/b/syslinux.cfg"), "  APPEND boot=zfs root=ZFS=zroot/system/b rw console=ttyS0 paczfs.trial panic=10 rd.shell=0 rd.emergency=reboot\n")

	// The trial boots well: it becomes the default, its label loses the
	// trial's options.
	require.Equal(t, "b", r.firmwareBoot())
	_, err := r.manager("zroot/system/b", "root=ZFS=zroot/system/b rw paczfs.trial").Good(ctx)
	require.NoError(t, err)
	cfg = r.read("syslinux/syslinux.cfg")
	assert.Contains(t, cfg, "DEFAULT b\nINCLUDE /env/b/syslinux.cfg\nINCLUDE /env/default/syslinux.cfg\n")
	assert.Equal(t, 1, strings.Count(cfg, "SERIAL"), "the device's own lines once")
	assert.Contains(t, r.read("env/b/syslinux.cfg"), "  APPEND boot=zfs root=ZFS=zroot/system/b rw console=ttyS0\n")

	// Renamed and destroyed environments leave the menu.
	m = r.manager("zroot/system/b", "")
	require.NoError(t, m.Rename(ctx, "default", "old"))
	cfg = r.read("syslinux/syslinux.cfg")
	assert.Contains(t, cfg, "INCLUDE /env/old/syslinux.cfg\n")
	assert.NotContains(t, cfg, "/env/default/")
	assert.Contains(t, r.read("env/old/syslinux.cfg"), "LABEL old\n", "the label follows the name")
	require.NoError(t, m.Destroy(ctx, "old"))
	cfg = r.read("syslinux/syslinux.cfg")
	assert.True(t, strings.HasSuffix(cfg, "DEFAULT b\nINCLUDE /env/b/syslinux.cfg\n"), "%s", cfg)
}

// Without SYSLINUX on the ESP (UEFI only), nothing of it is written.
func TestNoSyslinuxWithoutBIOSBoot(t *testing.T) {
	r := newRig(t)
	m := r.manager("zroot/system/default", "")
	require.NoError(t, m.Create(context.Background(), "b", CreateOptions{}))
	assert.NoFileExists(t, filepath.Join(r.esp, "env", "b", "syslinux.cfg"))
	assert.NoDirExists(t, filepath.Join(r.esp, "syslinux"))
}

// biosBoot is what ldlinux does at a legacy BIOS boot: the boot-once
// label if one is set (cleared before the kernel loads), else DEFAULT.
func (r *rig) biosBoot() string {
	adv := filepath.Join(r.esp, "syslinux", "fake-adv-once")
	if once, err := os.ReadFile(adv); err == nil {
		require.NoError(r.t, os.Remove(adv))
		return string(once)
	}
	for _, l := range strings.Split(r.read("syslinux/syslinux.cfg"), "\n") {
		if d, ok := strings.CutPrefix(l, "DEFAULT "); ok {
			return d
		}
	}
	r.t.Fatal("no DEFAULT")
	return ""
}

func newBIOSRig(t *testing.T) *rig {
	r := newRig(t)
	require.NoError(t, os.MkdirAll(filepath.Join(r.esp, "syslinux"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(r.esp, "syslinux", "syslinux.cfg"), []byte("PROMPT 0\nDEFAULT default\nINCLUDE /env/default/syslinux.cfg\n"), 0o644))
	require.NoError(t, r.manager("zroot/system/default", "", WithEFIVars(filepath.Join(t.TempDir(), "none"))).InstallBootFiles(context.Background(), "default"))
	return r
}

// Under legacy BIOS a trial is SYSLINUX's boot-once with one try: it
// boots once; a good boot promotes it; a failed one falls back to the
// default at the next boot, whose Good marks it bad.
func TestLegacyBIOSTrial(t *testing.T) {
	ctx := context.Background()
	noEFI := WithEFIVars(filepath.Join(t.TempDir(), "none"))
	t.Run("good", func(t *testing.T) {
		r := newBIOSRig(t)
		m := r.manager("zroot/system/default", "", noEFI)
		require.NoError(t, m.Create(ctx, "b", CreateOptions{}))
		require.NoError(t, m.Activate(ctx, "b", ActivateOptions{Mode: Trial, Tries: 3}))
		assert.ElementsMatch(t, []string{"paczfs-b+0-1.conf", "paczfs-default.conf"}, r.entryFiles(), "one try, counted when armed")
		assert.Contains(t, r.f.calls, "extlinux --once=b "+filepath.Join(r.esp, "syslinux"))
		assert.Contains(t, r.read("syslinux/syslinux.cfg"), "DEFAULT default\n", "the default stays")
		assert.Equal(t, StateTrying, get(t, m, "b").State)
		st, err := m.Status(ctx)
		require.NoError(t, err)
		assert.Equal(t, "b", st.Next, "the boot-once")
		require.Equal(t, "b", r.biosBoot())
		rep, err := r.manager("zroot/system/b", "root=ZFS=zroot/system/b rw paczfs.trial", noEFI).Good(ctx)
		require.NoError(t, err)
		assert.True(t, rep.Promoted)
		assert.ElementsMatch(t, []string{"paczfs-b.conf", "paczfs-default.conf"}, r.entryFiles())
		assert.Equal(t, "zroot/system/b", r.f.bootfs)
		assert.Equal(t, "b", r.biosBoot(), "DEFAULT follows")
		assert.Equal(t, "b", r.biosBoot())
	})
	t.Run("fails", func(t *testing.T) {
		r := newBIOSRig(t)
		m := r.manager("zroot/system/default", "", noEFI)
		require.NoError(t, m.Create(ctx, "b", CreateOptions{}))
		require.NoError(t, m.Activate(ctx, "b", ActivateOptions{Mode: Trial, Tries: 1}))
		require.Equal(t, "b", r.biosBoot()) // and it fails: nothing blesses it
		require.Equal(t, "default", r.biosBoot(), "the next boot falls back by itself")
		rep, err := r.manager("zroot/system/default", "root=ZFS=zroot/system/default rw", noEFI).Good(ctx)
		require.NoError(t, err)
		assert.Equal(t, []string{"b"}, rep.Bad)
		assert.Equal(t, StateBad, get(t, m, "b").State)
		assert.Equal(t, "zroot/system/default", r.f.bootfs)
		st, err := m.Status(ctx)
		require.NoError(t, err)
		assert.Equal(t, "default", st.Next)
		assert.Equal(t, "default", r.biosBoot())
	})
	t.Run("once", func(t *testing.T) {
		r := newBIOSRig(t)
		m := r.manager("zroot/system/default", "", noEFI)
		require.NoError(t, m.Create(ctx, "b", CreateOptions{}))
		require.NoError(t, m.Activate(ctx, "b", ActivateOptions{Mode: Once}))
		assert.Equal(t, "b", r.biosBoot())
		assert.Equal(t, "default", r.biosBoot())
	})
	t.Run("uefi-boot-of-the-same-disk", func(t *testing.T) {
		// Booted by UEFI firmware (efivars present): systemd-boot's
		// counting, SYSLINUX's files kept in step.
		r := newBIOSRig(t)
		m := r.manager("zroot/system/default", "")
		require.NoError(t, m.Create(ctx, "b", CreateOptions{}))
		require.NoError(t, m.Activate(ctx, "b", ActivateOptions{Mode: Trial, Tries: 2}))
		assert.ElementsMatch(t, []string{"paczfs-b+2.conf", "paczfs-default.conf"}, r.entryFiles())
		assert.NotContains(t, strings.Join(r.f.calls, "\n"), "extlinux")
		assert.Contains(t, r.read("env/b/syslinux.cfg"), " paczfs.trial ")
	})
}

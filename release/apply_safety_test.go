package release

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/paczfs/paczfs/bootenv"
	"github.com/paczfs/paczfs/hooks/hookstest"
	"github.com/paczfs/paczfs/zfs"
)

// onPool is a device booted into release 3 (good) with release 2's
// environment, in state, still on the pool: release 2's snapshot has the
// guid the test manifest (version 2) names.
func onPool(t *testing.T, state string) (*bootenv.Manager, *hookstest.FakeRunner) {
	f := &hookstest.FakeRunner{}
	f.On(surveyCmd, hookstest.Response{Stdout: "zroot/system\tfilesystem\t11\t-\t10000000000\t-\n" +
		"zroot/system/release-2\tfilesystem\t12\t2\t10000000000\t" + state + "\n" +
		"zroot/system/release-2@v2\tsnapshot\t1234567890123\t2\t-\t-\n" +
		"zroot/system/release-3\tfilesystem\t13\t3\t10000000000\tgood\n" +
		"zroot/system/release-3@v3\tsnapshot\t5555\t3\t-\t-\n"})
	m, err := bootenv.New(context.Background(), bootenv.WithRunner(f), bootenv.WithBooted("zroot/system/release-3", ""),
		bootenv.WithESP(t.TempDir()), bootenv.WithEFIVars(""))
	require.NoError(t, err)
	return m, f
}

// An older signed release replayed (a stale mirror, a man in the middle)
// whose environment is still on the pool is refused as a downgrade, in
// whatever state it is: never activated again.
func TestApplyReplayedOlderReleaseIsADowngrade(t *testing.T) {
	secret, public := key(t)
	dir := release(t, secret, []byte("a send stream"), nil) // version 2
	for _, state := range []string{"good", "bad", "new", "trying", "-"} {
		m, f := onPool(t, state)
		var steps []Step
		_, err := Apply(context.Background(), m, ApplyOptions{Dir: dir, Trusted: [][]byte{public}, Runner: f,
			Step: func(s Step) { steps = append(steps, s) }})
		assert.ErrorIs(t, err, ErrDowngrade, state)
		assert.Equal(t, []Step{StepVerified}, steps, state)
		for _, c := range f.Calls() {
			assert.False(t, strings.HasPrefix(c, "zfs set") || strings.HasPrefix(c, "zfs mount"), "%s: %s", state, c)
		}
	}
}

// resumeDevice is booted into release 1 with release 2 received by an
// earlier run, its environment in state.
func resumeDevice(t *testing.T, state string) (*bootenv.Manager, *hookstest.FakeRunner) {
	f := &hookstest.FakeRunner{}
	f.On(surveyCmd, hookstest.Response{Stdout: pool(10000000000) +
		"zroot/system/release-2\tfilesystem\t13\t2\t10000000000\t" + state + "\n" +
		"zroot/system/release-2@v2\tsnapshot\t1234567890123\t2\t-\t-\n"})
	m, err := bootenv.New(context.Background(), bootenv.WithRunner(f), bootenv.WithBooted("zroot/system/v1", ""),
		bootenv.WithESP(t.TempDir()), bootenv.WithEFIVars(""))
	require.NoError(t, err)
	return m, f
}

// A release received before is carried on with only when an interrupted
// apply left it: new, or activated and not yet booted. One that booted
// well, or failed its trial, is not tried again.
func TestApplyResumesOnlyWhatAnInterruptedRunLeft(t *testing.T) {
	secret, public := key(t)
	dir := release(t, secret, []byte("a send stream"), nil)
	for _, state := range []string{"good", "bad"} {
		m, f := resumeDevice(t, state)
		var steps []Step
		_, err := Apply(context.Background(), m, ApplyOptions{Dir: dir, Trusted: [][]byte{public}, Runner: f,
			Step: func(s Step) { steps = append(steps, s) }})
		assert.ErrorIs(t, err, ErrApplied, state)
		assert.ErrorContains(t, err, "release-2 is "+state, state)
		assert.Equal(t, []Step{StepVerified}, steps, state)
	}

	// Its properties unset (a power cut after the receive's snapshot,
	// before its properties): set as the receive would have.
	m, f := resumeDevice(t, "-")
	r, _ := Apply(context.Background(), m, ApplyOptions{Dir: dir, Trusted: [][]byte{public}, Runner: f})
	assert.True(t, r.Resumed)
	var set string
	for _, c := range f.Calls() {
		if strings.HasPrefix(c, "zfs set") {
			set = c
		}
	}
	for _, p := range []string{"canmount=noauto", "mountpoint=/", "org.paczfs:state=new", "org.paczfs:version=2"} {
		assert.Contains(t, set, p)
	}
	assert.True(t, strings.HasSuffix(set, " zroot/system/release-2"), set)
	assert.False(t, received(f))
}

// The stream zfs receive reads is the file that was checked: one put in
// its place after the check is never received.
func TestApplyReceivesTheFileItChecked(t *testing.T) {
	secret, public := key(t)
	m, f := device(t)
	src := DirSource(release(t, secret, []byte("a send stream"), nil))
	work := filepath.Join(t.TempDir(), "work")
	// It fails after the receive: the fake environment has no boot files.
	_, _ = Apply(context.Background(), m, ApplyOptions{Source: src, Dir: work, Trusted: [][]byte{public}, Runner: f,
		Step: func(s Step) {
			if s == StepFetched { // after the check, before zfs receive
				p := filepath.Join(work, "v1-v2.zstream")
				require.NoError(t, os.Remove(p))
				require.NoError(t, os.WriteFile(p, []byte("EVIL STREAM!!"), 0o600))
			}
		}})
	n := 0
	for i, c := range f.Calls() {
		if strings.HasPrefix(c, "zfs receive") {
			n++
			assert.Equal(t, "a send stream", f.Stdin()[i])
		}
	}
	assert.Equal(t, 1, n)
}

// The work directory a Source fetches into is refused when anyone else
// could write in it, or when it is a link: before anything is fetched.
func TestApplyRefusesAWorkDirectoryOthersCanWrite(t *testing.T) {
	secret, public := key(t)
	src := DirSource(release(t, secret, []byte("a send stream"), nil))
	open := filepath.Join(t.TempDir(), "paczfs-release")
	require.NoError(t, os.Mkdir(open, 0o700))
	require.NoError(t, os.Chmod(open, 0o777))
	elsewhere := t.TempDir()
	link := filepath.Join(t.TempDir(), "paczfs-release")
	require.NoError(t, os.Symlink(elsewhere, link))
	for _, dir := range []string{open, link} {
		m, f := device(t)
		_, err := Apply(context.Background(), m, ApplyOptions{Source: src, Dir: dir, Trusted: [][]byte{public}, Runner: f})
		assert.ErrorIs(t, err, ErrWorkDir, dir)
		assert.False(t, received(f))
		ents, err := os.ReadDir(dir)
		require.NoError(t, err)
		assert.Empty(t, ents, "nothing fetched into %s", dir)
	}
	assert.ErrorContains(t, checkWorkDir(open), "chmod go-w")

	// One made by Apply (0700) is used.
	m, f := device(t)
	made := filepath.Join(t.TempDir(), "paczfs-release")
	_, err := Apply(context.Background(), m, ApplyOptions{Source: src, Dir: made, Trusted: [][]byte{public}, Runner: f})
	assert.NotErrorIs(t, err, ErrWorkDir)
	assert.True(t, received(f), "%v", err)
}

// A fetch never writes through a link put where its partial file goes.
func TestFetchDoesNotFollowALinkForItsPartialFile(t *testing.T) {
	secret, _ := key(t)
	src := DirSource(release(t, secret, []byte("a send stream"), nil))
	dir := t.TempDir()
	victim := filepath.Join(t.TempDir(), "victim")
	require.NoError(t, os.WriteFile(victim, []byte("keep"), 0o644))
	require.NoError(t, os.Symlink(victim, filepath.Join(dir, ManifestFile+".part")))
	_, err := fetch(context.Background(), src, dir, ManifestFile, maxManifest, -1)
	assert.Error(t, err)
	assert.Equal(t, "keep", readFile(t, victim))
}

// A run that resumes after the receive removes what the interrupted run
// fetched: nothing of it stays in the work directory.
func TestApplyResumedRemovesTheFetchedStream(t *testing.T) {
	secret, public := key(t)
	src := DirSource(release(t, secret, []byte("a send stream"), nil))
	work := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(work, "v1-v2.zstream"), []byte("a send stream"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(work, "v1-v2.zstream.part"), []byte("a send"), 0o600))
	m, f := resumeDevice(t, "new")
	r, _ := Apply(context.Background(), m, ApplyOptions{Source: src, Dir: work, Trusted: [][]byte{public}, Runner: f})
	require.True(t, r.Resumed)
	assert.NoFileExists(t, filepath.Join(work, "v1-v2.zstream"))
	assert.NoFileExists(t, filepath.Join(work, "v1-v2.zstream.part"))
}

// Copying and checking stop when the caller cancels, from a directory
// and from an archive.
func TestDownloadStopsWhenCancelled(t *testing.T) {
	secret, _ := key(t)
	rel := release(t, secret, []byte("a send stream"), nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Download(ctx, DirSource(rel), t.TempDir(), nil)
	assert.ErrorIs(t, err, context.Canceled)

	var archive strings.Builder
	require.NoError(t, WriteArchive(&archive, rel))
	_, _, err = ArchiveSource(strings.NewReader(archive.String())).Open(ctx, "v1-v2.zstream", 0)
	assert.ErrorIs(t, err, context.Canceled)

	f, err := os.Open(filepath.Join(rel, "v1-v2.zstream"))
	require.NoError(t, err)
	defer f.Close()
	assert.ErrorIs(t, checkStream(ctx, f, Stream{Size: 13}), context.Canceled)
}

// Write checks the versions its stream files are named after before it
// writes anything: nothing is created outside Dir, nor in it.
func TestWriteRefusesAVersionThatIsNoFileName(t *testing.T) {
	secret, _ := key(t)
	for _, o := range []WriteOptions{
		{Version: "../escaped"},
		{Version: "3", Previous: "../escaped", Base: "zroot/system/x@v2"},
		{Version: "3", Base: "zroot/system/x@v2"},
		{Version: ".."},
		{Version: "3\n"},
	} {
		f := &hookstest.FakeRunner{}
		f.On("zfs get", hookstest.Response{Stdout: "guid\t42\t-\n"})
		f.On("zfs send", hookstest.Response{Stdout: "stream"})
		parent := t.TempDir()
		o.Snapshot, o.Dir, o.Name, o.Secret = "zroot/system/x@v", filepath.Join(parent, "out"), "p", secret
		_, err := Write(context.Background(), zfs.New(zfs.WithRunner(f)), o)
		assert.Error(t, err, "%+v", o)
		ents, _ := os.ReadDir(parent)
		assert.Empty(t, ents, "%q: nothing written", o.Version)
		assert.Empty(t, f.Calls(), "%q: nothing sent", o.Version)
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	return string(b)
}

package image

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/paczfs/paczfs/hooks/hookstest"
)

// A record is rewritten over the old one and then cut to its length: a
// kill between leaves the new record whole with the old one's tail after
// it, which Recover reads past, never an empty, unreadable file.
func TestARecordKilledWhileRewrittenIsStillRead(t *testing.T) {
	dir := t.TempDir()
	s, err := openState(dir)
	require.NoError(t, err)
	work := filepath.Join(t.TempDir(), "work")
	require.NoError(t, os.Mkdir(work, 0o700))
	require.NoError(t, s.update(func(r *record) {
		r.Pools = []string{"paczfs-tmp-1", "paczfs-tmp-2", "paczfs-tmp-3", "paczfs-tmp-4", "paczfs-tmp-5", "paczfs-tmp-6", "paczfs-tmp-7", "paczfs-tmp-8"}
	}))
	long, err := os.ReadFile(s.name)
	require.NoError(t, err)
	// A shorter record written over it, killed before the cut.
	s.rec.Pools = nil
	s.rec.WorkDir = work
	short := append(mustJSON(t, s.rec), '\n')
	require.Less(t, len(short), len(long))
	_, err = s.f.WriteAt(short, 0)
	require.NoError(t, err)
	s.f.Close() // the build dies: its lock goes
	got, err := Recover(context.Background(), RecoverStateDir(dir), RecoverRunner(&hookstest.FakeRunner{}))
	require.NoError(t, err)
	require.Len(t, got, 1)
	assert.Contains(t, got[0].Released, "removed "+work, "the new record was read")
	assert.NoFileExists(t, s.name)

	// write itself leaves exactly the record.
	s2, err := openState(dir)
	require.NoError(t, err)
	defer s2.close()
	require.NoError(t, s2.update(func(r *record) { r.Pools = []string{"a", "b", "c"} }))
	require.NoError(t, s2.update(func(r *record) { r.Pools = nil }))
	data, err := os.ReadFile(s2.name)
	require.NoError(t, err)
	assert.Equal(t, string(append(mustJSON(t, s2.rec), '\n')), string(data))
}

// The work directory is recorded as the kernel names it (mounts and
// processes' roots are resolved paths): clean, its links resolved.
func TestCanonicalDir(t *testing.T) {
	base, err := filepath.EvalSymlinks(t.TempDir())
	require.NoError(t, err)
	require.NoError(t, os.Mkdir(filepath.Join(base, "real"), 0o755))
	require.NoError(t, os.Symlink(filepath.Join(base, "real"), filepath.Join(base, "link")))
	for in, want := range map[string]string{
		base + "/real/":          base + "/real",
		base + "/link":           base + "/real",
		base + "/link/new/deep/": base + "/real/new/deep",
		base + "/real/../real/x": base + "/real/x",
	} {
		got, err := canonicalDir(in)
		require.NoError(t, err)
		assert.Equal(t, want, got, in)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return b
}

// writeDeadRecord writes a record no process holds (its build died).
func writeDeadRecord(t *testing.T, dir string, rec record) string {
	t.Helper()
	name := filepath.Join(dir, rec.ID+".json")
	require.NoError(t, os.WriteFile(name, append(mustJSON(t, rec), '\n'), 0o600))
	return name
}

// Recover removes a dead build's image only while its path is still the
// file that build created: a later build's file there is left.
func TestRecoverLeavesAnImageThatIsAnotherFileByNow(t *testing.T) {
	state, out := t.TempDir(), t.TempDir()
	img := filepath.Join(out, "disk.img")
	require.NoError(t, os.WriteFile(img, []byte("build A's"), 0o644))
	id := fileID(img)
	require.NotEmpty(t, id)
	writeDeadRecord(t, state, record{ID: "a", PID: 999991, Image: img, Created: true, ImageID: id})
	// Build B's file, another inode, at the same path.
	require.NoError(t, os.Remove(img))
	keep, err := os.Create(filepath.Join(out, "pin")) // keeps A's inode number from being reused at once
	require.NoError(t, err)
	defer keep.Close()
	require.NoError(t, os.WriteFile(img, []byte("build B's finished image"), 0o644))
	require.NotEqual(t, id, fileID(img), "B's file must be another inode (pin holds A's)")
	got, err := Recover(context.Background(), RecoverStateDir(state), RecoverRunner(&hookstest.FakeRunner{}))
	require.NoError(t, err)
	require.Len(t, got, 1)
	assert.FileExists(t, img)
	assert.Contains(t, got[0].Released, "left "+img+": another file than the one this build created")

	// Its own file is removed.
	writeDeadRecord(t, state, record{ID: "b", PID: 999992, Image: img, Created: true, ImageID: fileID(img)})
	_, err = Recover(context.Background(), RecoverStateDir(state), RecoverRunner(&hookstest.FakeRunner{}))
	require.NoError(t, err)
	assert.NoFileExists(t, img)
}

// A build does not write an image file or release a dead build's record
// still claims (its recovery failed): recovering it later would remove
// them.
func TestABuildRefusesWhatADeadBuildStillClaims(t *testing.T) {
	state, out := t.TempDir(), t.TempDir()
	img := filepath.Join(out, "disk.img")
	writeDeadRecord(t, state, record{ID: "a", PID: 999991, Image: img, Created: true})
	b := &Builder{stateDir: state, cfg: Config{ImageFile: img}}
	err := b.claimedByDeadBuild()
	assert.ErrorIs(t, err, ErrClaimed)
	assert.ErrorContains(t, err, "image_file "+img)
	b.cfg.ImageFile = filepath.Join(out, "other.img")
	assert.NoError(t, b.claimedByDeadBuild())
	b.cfg.Release.Dir = filepath.Join(out, "rel")
	writeDeadRecord(t, state, record{ID: "b", PID: 999992, ReleaseDir: b.cfg.Release.Dir})
	assert.ErrorIs(t, b.claimedByDeadBuild(), ErrClaimed)

	// A live build's record (locked) claims nothing here: it is running.
	live, err := openState(t.TempDir())
	require.NoError(t, err)
	defer live.close()
	require.NoError(t, live.update(func(r *record) { r.Image = img }))
	b = &Builder{stateDir: filepath.Dir(live.name), cfg: Config{ImageFile: img}}
	assert.NoError(t, b.claimedByDeadBuild())
}

// A build that finished, or failed and keeps its files as asked, takes
// them out of its record: a record left because something else was not
// released never lets Recover remove them.
func TestFinishedOrKeptFilesLeaveTheRecord(t *testing.T) {
	for _, keep := range []bool{false, true} {
		s, err := openState(t.TempDir())
		require.NoError(t, err)
		st := &build{b: &Builder{keep: keep}, cfg: &Config{}, res: &Result{}, record: s}
		require.NoError(t, s.update(func(r *record) {
			r.Image, r.Created, r.ImageID, r.Partials, r.ReleaseDir = "/x/disk.img", true, "1:2", []string{"/x/p"}, "/x/rel"
		}))
		if keep {
			require.NoError(t, st.removePartial())
		} else {
			st.disownFiles()
		}
		var rec record
		data, err := os.ReadFile(s.name)
		require.NoError(t, err)
		require.NoError(t, json.Unmarshal(data, &rec))
		assert.Empty(t, rec.Image)
		assert.False(t, rec.Created)
		assert.Empty(t, rec.Partials)
		assert.Empty(t, rec.ReleaseDir)
		s.close()
	}
}

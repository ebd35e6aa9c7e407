package image

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/paczfs/paczfs/hooks/hookstest"
)

func writeRecord(t *testing.T, dir string, rec record) string {
	p := filepath.Join(dir, rec.ID+".json")
	data, err := json.Marshal(rec)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(p, data, 0o600))
	return p
}

// A dead build's record (nobody holds its lock) is released: its pool
// exported, its empty work directories and the image it created removed,
// then the record. A live build's record (locked) and an image that
// existed before the build are left alone.
func TestRecoverReleasesOnlyDeadBuilds(t *testing.T) {
	state, tmp := t.TempDir(), t.TempDir()
	work := filepath.Join(tmp, "work")
	require.NoError(t, os.MkdirAll(filepath.Join(work, "root/etc"), 0o755))
	img := filepath.Join(tmp, "dead.img")
	require.NoError(t, os.WriteFile(img, []byte("partial"), 0o644))
	dead := writeRecord(t, state, record{ID: "dead", PID: 999999, Image: img, Created: true, Backing: img,
		Pools: []string{"zroot-paczfs-dead01"}, WorkDir: work})

	kept := filepath.Join(tmp, "users.img")
	require.NoError(t, os.WriteFile(kept, []byte("the user's"), 0o644))
	notOurs := writeRecord(t, state, record{ID: "overwrote", PID: 999998, Image: kept, Created: false})

	live, err := openState(state)
	require.NoError(t, err)
	require.NoError(t, live.update(func(r *record) { r.Pools = []string{"zroot-paczfs-live01"}; r.WorkDir = work }))

	fake := &hookstest.FakeRunner{}
	got, err := Recover(context.Background(), RecoverStateDir(state), RecoverRunner(fake))
	require.NoError(t, err)
	calls := strings.Join(fake.Calls(), "\n")
	assert.Contains(t, calls, "zpool export -f zroot-paczfs-dead01")
	assert.NotContains(t, calls, "live01", "a live build is never touched")

	byID := map[string]Recovered{}
	for _, r := range got {
		byID[r.ID] = r
	}
	require.Contains(t, byID, "dead")
	assert.Equal(t, []string{"exported pool zroot-paczfs-dead01", "removed " + work, "removed partial image " + img}, byID["dead"].Released)
	for _, p := range []string{dead, img, work} {
		_, err := os.Stat(p)
		assert.ErrorIs(t, err, os.ErrNotExist, p)
	}
	_, err = os.Stat(kept)
	assert.NoError(t, err, "an image the build did not create stays")
	_, err = os.Stat(notOurs)
	assert.ErrorIs(t, err, os.ErrNotExist, "its record is done with")
	liveName := live.name
	_, err = os.Stat(liveName)
	assert.NoError(t, err, "the live build's record stays")
	require.NoError(t, live.close())
	_, err = os.Stat(liveName)
	assert.ErrorIs(t, err, os.ErrNotExist, "a finished build removes its record")
}

// A record whose release fails stays, for a later Recover.
func TestRecoverKeepsTheRecordWhenSomethingIsNotReleased(t *testing.T) {
	state := t.TempDir()
	rec := writeRecord(t, state, record{ID: "stuck", PID: 999997, Pools: []string{"p-paczfs-stuck"}})
	fake := (&hookstest.FakeRunner{}).On("zpool export", hookstest.Response{ExitCode: 1, Stderr: "cannot export 'p-paczfs-stuck': pool I/O is currently suspended"})
	_, err := Recover(context.Background(), RecoverStateDir(state), RecoverRunner(fake))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "recover stuck.json")
	_, serr := os.Stat(rec)
	assert.NoError(t, serr)
}

// Build records what it holds before acquiring it, and removes the record
// when everything was released.
func TestBuildRecordsAndRemovesItsRecord(t *testing.T) {
	var seen record
	rec := &recorder{}
	b, err := New(testConfig(t), hostOK)
	require.NoError(t, err)
	fakeStages(b, rec, "")
	b.stateDir = t.TempDir()
	b.stages["pool"] = func(ctx context.Context, st *build) error {
		require.NoError(t, st.record.update(func(r *record) { r.Pools = append(r.Pools, "zroot-paczfs-x") }))
		data, err := os.ReadFile(st.record.name)
		require.NoError(t, err)
		require.NoError(t, json.Unmarshal(data, &seen))
		return nil
	}
	_, err = b.Build(context.Background())
	require.NoError(t, err)
	assert.Equal(t, []string{"zroot-paczfs-x"}, seen.Pools)
	assert.Equal(t, os.Getpid(), seen.PID)
	left, _ := os.ReadDir(b.stateDir)
	assert.Empty(t, left, "the record is removed once all is released")
}

// A build killed while converting leaves its outputs' partial files and
// the qemu-img still writing one: Recover kills the writer, removes the
// partial files it recorded, and leaves the outputs' own names (a
// previous output the build would have replaced) alone.
func TestRecoverRemovesPartialOutputsAndTheirWriters(t *testing.T) {
	state, tmp := t.TempDir(), t.TempDir()
	out := filepath.Join(tmp, "disk.vdi")
	require.NoError(t, os.WriteFile(out, []byte("the previous output"), 0o644))
	partial := partialName(out, "conv01")
	require.NoError(t, os.WriteFile(partial, []byte("half"), 0o600))
	gone := partialName(filepath.Join(tmp, "disk.vmdk"), "conv01") // never created
	// A stand-in for the orphaned qemu-img: the partial file in its argv.
	writer := exec.Command("tail", "-f", partial)
	require.NoError(t, writer.Start())
	exited := make(chan error, 1)
	go func() { exited <- writer.Wait() }()
	writeRecord(t, state, record{ID: "conv01", PID: 999996, Partials: []string{partial, gone}})

	got, err := Recover(context.Background(), RecoverStateDir(state), RecoverRunner(&hookstest.FakeRunner{}))
	require.NoError(t, err)
	require.Len(t, got, 1)
	require.Len(t, got[0].Released, 2, "%q", got[0].Released)
	assert.True(t, strings.HasPrefix(got[0].Released[0], fmt.Sprintf("killed pid %d (tail -f ", writer.Process.Pid)), got[0].Released[0])
	assert.Equal(t, "removed partial output "+partial, got[0].Released[1])
	select {
	case err := <-exited:
		assert.ErrorContains(t, err, "killed")
	case <-time.After(10 * time.Second):
		t.Fatal("the writer still runs")
	}
	assert.NoFileExists(t, partial)
	data, err := os.ReadFile(out)
	require.NoError(t, err)
	assert.Equal(t, "the previous output", string(data))
}

package release

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// server serves dir on loopback and records every request ("GET name
// Range"); cutAfter > 0 makes the first GET of a stream end after that
// many bytes, its connection closed.
type server struct {
	*httptest.Server
	mu       sync.Mutex
	requests []string
	cut      map[string]int
}

func serve(t *testing.T, dir string, cut map[string]int) *server {
	s := &server{cut: cut}
	files := http.FileServer(http.Dir(dir))
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(r.URL.Path, "/rel/")
		s.mu.Lock()
		s.requests = append(s.requests, strings.TrimSpace("GET "+name+" "+r.Header.Get("Range")))
		n := s.cut[name]
		delete(s.cut, name)
		s.mu.Unlock()
		if n > 0 {
			data, err := os.ReadFile(filepath.Join(dir, name))
			require.NoError(t, err)
			w.Header().Set("Content-Length", strconv.Itoa(len(data)))
			w.WriteHeader(http.StatusOK)
			w.Write(data[:n])
			// Cut the connection mid-body, as a lost link would.
			conn, _, err := w.(http.Hijacker).Hijack()
			require.NoError(t, err)
			conn.(*net.TCPConn).SetLinger(0)
			conn.Close()
			return
		}
		r.URL.Path = "/" + name
		files.ServeHTTP(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *server) log() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.requests...)
}

// A stream cut halfway is resumed by the next Apply with a Range request,
// and the whole, verified file is what zfs receive reads.
func TestApplyFromHTTPResumesACutDownload(t *testing.T) {
	secret, public := key(t)
	stream := make([]byte, 256<<10)
	_, _ = rand.Read(stream)
	srv := serve(t, release(t, secret, stream, nil), map[string]int{"v1-v2.zstream": 100 << 10})
	src, err := HTTPSource(srv.URL+"/rel", nil)
	require.NoError(t, err)
	work := t.TempDir()
	m, f := device(t)
	_, err = Apply(context.Background(), m, ApplyOptions{Source: src, Dir: work, Trusted: [][]byte{public}, Runner: f})
	require.ErrorIs(t, err, ErrSource, "the cut download fails")
	assert.Contains(t, err.Error(), "run again to resume")
	assert.False(t, received(f))
	part, err := os.Stat(filepath.Join(work, "v1-v2.zstream.part"))
	require.NoError(t, err)
	assert.Greater(t, part.Size(), int64(0))

	m, f = device(t)
	_, err = Apply(context.Background(), m, ApplyOptions{Source: src, Dir: work, Trusted: [][]byte{public}, Runner: f})
	require.Error(t, err, "the fake runner cannot mount the received root for its boot files")
	var got string
	for i, c := range f.Calls() {
		if strings.HasPrefix(c, "zfs receive") {
			got = f.Stdin()[i]
		}
	}
	assert.True(t, got == string(stream), "zfs receive reads the whole verified stream (%d bytes, want %d)", len(got), len(stream))
	reqs := srv.log()
	assert.Contains(t, reqs, "GET v1-v2.zstream bytes="+strconv.FormatInt(part.Size(), 10)+"-", "resumed where it was cut: %v", reqs)
	_, err = os.Stat(filepath.Join(work, "v1-v2.zstream"))
	assert.ErrorIs(t, err, os.ErrNotExist, "the received stream's copy is removed")
}

// A manifest the device does not trust stops Apply before any stream is
// requested; a stream that does not match is refused before receive and
// its copy removed.
func TestApplyFromHTTPVerifiesBeforeFetchingAndReceiving(t *testing.T) {
	secret, public := key(t)
	_, other := key(t)
	stream := []byte("a send stream")
	dir := release(t, secret, stream, nil)
	srv := serve(t, dir, nil)
	src, err := HTTPSource(srv.URL+"/rel", nil)
	require.NoError(t, err)

	m, f := device(t)
	_, err = Apply(context.Background(), m, ApplyOptions{Source: src, Dir: t.TempDir(), Trusted: [][]byte{other}, Runner: f})
	assert.ErrorIs(t, err, ErrSignature)
	assert.Equal(t, []string{"GET manifest.json", "GET manifest.json.sig"}, srv.log(), "no stream is fetched for an untrusted manifest")
	assert.Empty(t, f.Calls(), "nothing runs on the device")

	require.NoError(t, os.WriteFile(filepath.Join(dir, "v1-v2.zstream"), []byte("a send strean"), 0o644))
	work := t.TempDir()
	m, f = device(t)
	_, err = Apply(context.Background(), m, ApplyOptions{Source: src, Dir: work, Trusted: [][]byte{public}, Runner: f})
	assert.ErrorIs(t, err, ErrStream)
	assert.False(t, received(f))
	_, err = os.Stat(filepath.Join(work, "v1-v2.zstream"))
	assert.ErrorIs(t, err, os.ErrNotExist, "a stream that does not match is not kept")
}

// The archive WriteArchive writes is applied from a pipe: the manifest
// and signature come first, the stream Apply wants is read, and an
// archive in the wrong order is refused with what it expected.
func TestApplyFromAnArchiveOnAPipe(t *testing.T) {
	secret, public := key(t)
	stream := []byte("a send stream")
	dir := release(t, secret, stream, nil)
	var archive bytes.Buffer
	require.NoError(t, WriteArchive(&archive, dir))

	m, f := device(t)
	src, err := OpenSource("-", bytes.NewReader(archive.Bytes()))
	require.NoError(t, err)
	_, err = Apply(context.Background(), m, ApplyOptions{Source: src, Dir: t.TempDir(), Trusted: [][]byte{public}, Runner: f})
	require.Error(t, err, "the fake runner cannot mount the received root")
	require.True(t, received(f), "%v", err)

	// The signature after the stream: a pipe cannot go back for it.
	var bad bytes.Buffer
	require.NoError(t, writeTar(&bad, dir, "manifest.json", "v1-v2.zstream", "manifest.json.sig"))
	m, f = device(t)
	_, err = Apply(context.Background(), m, ApplyOptions{Source: ArchiveSource(&bad), Dir: t.TempDir(), Trusted: [][]byte{public}, Runner: f})
	assert.ErrorIs(t, err, ErrSource)
	assert.Contains(t, err.Error(), "no v1-v2.zstream after \"manifest.json.sig\"")
	assert.False(t, received(f))

	// The incremental stream alone: what a device with the base needs.
	var small bytes.Buffer
	require.NoError(t, WriteArchive(&small, dir, Incremental))
	var names []string
	tr := tar.NewReader(bytes.NewReader(small.Bytes()))
	for h, err := tr.Next(); err == nil; h, err = tr.Next() {
		names = append(names, h.Name)
	}
	assert.Equal(t, []string{ManifestFile, SignatureFile, "v1-v2.zstream"}, names)
	m, f = device(t)
	_, err = Apply(context.Background(), m, ApplyOptions{Source: ArchiveSource(&small), Dir: t.TempDir(), Trusted: [][]byte{public}, Runner: f})
	require.Error(t, err, "the fake runner cannot mount the received root")
	assert.True(t, received(f), "%v", err)
	// A kind the release does not have is an error, not an empty archive.
	os.Remove(filepath.Join(dir, "v1-v2.zstream"))
	assert.Error(t, WriteArchive(io.Discard, dir, Incremental))
}

// writeTar writes dir's named files, in that order.
func writeTar(w io.Writer, dir string, names ...string) error {
	tw := tar.NewWriter(w)
	for _, n := range names {
		data, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			return err
		}
		if err := tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		if _, err := tw.Write(data); err != nil {
			return err
		}
	}
	return tw.Close()
}

// Download takes a whole release from a source: verified, every stream
// checked; a changed stream is refused and not kept.
func TestDownloadCopiesAndChecksTheWholeRelease(t *testing.T) {
	secret, public := key(t)
	stream := []byte("a send stream")
	dir := release(t, secret, stream, nil)
	out := filepath.Join(t.TempDir(), "mirror")
	mf, err := Download(context.Background(), DirSource(dir), out, [][]byte{public})
	require.NoError(t, err)
	assert.Equal(t, "2", mf.Version)
	for _, n := range []string{ManifestFile, SignatureFile, "v1-v2.zstream"} {
		a, _ := os.ReadFile(filepath.Join(dir, n))
		b, err := os.ReadFile(filepath.Join(out, n))
		require.NoError(t, err)
		assert.Equal(t, a, b, n)
	}
	_, other := key(t)
	_, err = Download(context.Background(), DirSource(dir), t.TempDir(), [][]byte{other})
	assert.ErrorIs(t, err, ErrSignature)

	require.NoError(t, os.WriteFile(filepath.Join(dir, "v1-v2.zstream"), []byte("a send strean"), 0o644))
	out = t.TempDir()
	_, err = Download(context.Background(), DirSource(dir), out, nil)
	assert.ErrorIs(t, err, ErrStream)
	_, err = os.Stat(filepath.Join(out, "v1-v2.zstream"))
	assert.ErrorIs(t, err, os.ErrNotExist)
}

// Apply reports its steps in order: what a caller shows, and where the
// power-cut tests stop it. (The fake runner cannot mount the received
// root, so this apply ends at the boot files.)
func TestApplyReportsItsSteps(t *testing.T) {
	secret, public := key(t)
	stream := make([]byte, 64<<10)
	_, _ = rand.Read(stream)
	srv := serve(t, release(t, secret, stream, nil), nil)
	src, err := HTTPSource(srv.URL+"/rel", nil)
	require.NoError(t, err)
	m, f := device(t)
	var steps []Step
	_, err = Apply(context.Background(), m, ApplyOptions{Source: src, Dir: t.TempDir(), Trusted: [][]byte{public}, Runner: f,
		Step: func(s Step) { steps = append(steps, s) }})
	require.Error(t, err)
	assert.Equal(t, []Step{StepVerified, StepFetching, StepFetched, StepReceiving, StepReceived}, steps)
}

// A stream file of the same name and size left in the work directory by
// another release is not taken for this one's: it is fetched again.
func TestApplyRefetchesAStaleCopy(t *testing.T) {
	secret, public := key(t)
	stream := []byte("a send stream")
	srv := serve(t, release(t, secret, stream, nil), nil)
	src, err := HTTPSource(srv.URL+"/rel", nil)
	require.NoError(t, err)
	work := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(work, "v1-v2.zstream"), []byte("another strea"), 0o600))
	m, f := device(t)
	_, err = Apply(context.Background(), m, ApplyOptions{Source: src, Dir: work, Trusted: [][]byte{public}, Runner: f})
	require.True(t, received(f), "%v", err)
	assert.Contains(t, srv.log(), "GET v1-v2.zstream")
}

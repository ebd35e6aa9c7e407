package release

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// A Source delivers a release's files by name: Apply asks for the
// manifest and its signature first, verifies them, and only then for the
// one stream it will receive. Sources: a directory (DirSource), an
// HTTP(S) URL (HTTPSource, resumable), an archive on a pipe
// (ArchiveSource, e.g. standard input), an OCI registry (package
// release/oci).
type Source interface {
	// Open returns file name from offset on. A source that cannot start
	// there returns start 0 and the whole file.
	Open(ctx context.Context, name string, offset int64) (rc io.ReadCloser, start int64, err error)
	// String names the source in errors and logs.
	String() string
}

// ErrSource: a source could not deliver a file.
var ErrSource = errors.New("release source")

// OpenSource returns the source ref names: an http:// or https:// URL
// of a release directory, "-" for an archive (WriteArchive's) on stdin,
// or a local directory.
func OpenSource(ref string, stdin io.Reader) (Source, error) {
	switch {
	case ref == "-":
		return ArchiveSource(stdin), nil
	case strings.HasPrefix(ref, "http://") || strings.HasPrefix(ref, "https://"):
		return HTTPSource(ref, nil)
	case strings.Contains(ref, "://"):
		return nil, fmt.Errorf("%w: %q: want a directory, an http(s) URL or - (an archive on stdin); OCI references are opened by package release/oci", ErrSource, ref)
	}
	return DirSource(ref), nil
}

// DirSource is a release directory on this machine (or a mounted share).
func DirSource(dir string) Source { return dirSource(dir) }

type dirSource string

func (d dirSource) String() string { return string(d) }

func (d dirSource) Open(ctx context.Context, name string, offset int64) (io.ReadCloser, int64, error) {
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	f, err := os.Open(filepath.Join(string(d), name))
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %w", ErrSource, err)
	}
	if offset > 0 {
		if _, err := f.Seek(offset, io.SeekStart); err != nil {
			f.Close()
			return nil, 0, err
		}
	}
	return f, offset, nil
}

// HTTPSource is a release directory served over HTTP(S) at base (the URL
// of the directory: base + "/manifest.json" is the manifest). A stream
// whose download was cut is resumed with a Range request. client nil
// means one with no overall timeout (streams are large) that follows the
// environment's proxy settings.
func HTTPSource(base string, client *http.Client) (Source, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w: %q is not an http(s) URL", ErrSource, base)
	}
	if client == nil {
		client = &http.Client{}
	}
	return &httpSource{base: strings.TrimSuffix(base, "/"), client: client}, nil
}

type httpSource struct {
	base   string
	client *http.Client
}

func (h *httpSource) String() string { return h.base }

func (h *httpSource) Open(ctx context.Context, name string, offset int64) (io.ReadCloser, int64, error) {
	u := h.base + "/" + url.PathEscape(name)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, 0, err
	}
	if offset > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(offset, 10)+"-")
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: GET %s: %w", ErrSource, u, err)
	}
	switch {
	case resp.StatusCode == http.StatusPartialContent && offset > 0:
		// Content-Range: bytes START-END/TOTAL; a server that answers
		// from elsewhere is not resumed from.
		var start int64 = -1
		if cr := resp.Header.Get("Content-Range"); strings.HasPrefix(cr, "bytes ") {
			if a, _, ok := strings.Cut(strings.TrimPrefix(cr, "bytes "), "-"); ok {
				start, _ = strconv.ParseInt(a, 10, 64)
			}
		}
		if start != offset {
			resp.Body.Close()
			return h.Open(ctx, name, 0)
		}
		return resp.Body, offset, nil
	case resp.StatusCode == http.StatusOK:
		return resp.Body, 0, nil
	case resp.StatusCode == http.StatusRequestedRangeNotSatisfiable && offset > 0:
		// What we hold is as long as the file, or longer: start again.
		resp.Body.Close()
		return h.Open(ctx, name, 0)
	}
	resp.Body.Close()
	return nil, 0, fmt.Errorf("%w: GET %s: %s", ErrSource, u, resp.Status)
}

// ArchiveSource reads a release from a tar archive on a pipe, such as
// standard input (`ssh device paczfs-bootenv apply - < release.tar`). It
// can only go forward: the archive must hold manifest.json and
// manifest.json.sig first, as WriteArchive writes them; the streams Apply
// does not want are read past.
func ArchiveSource(r io.Reader) Source { return &archiveSource{tr: tar.NewReader(r)} }

type archiveSource struct {
	tr   *tar.Reader
	last string
}

func (a *archiveSource) String() string { return "archive" }

func (a *archiveSource) Open(ctx context.Context, name string, _ int64) (io.ReadCloser, int64, error) {
	for {
		if err := ctx.Err(); err != nil {
			return nil, 0, err
		}
		// Next reads past the entry before: a stream not wanted is read
		// through, and stops when ctx is done.
		h, err := a.tr.Next()
		if err == io.EOF {
			return nil, 0, fmt.Errorf("%w: archive: no %s after %q (manifest.json and manifest.json.sig come first, then the streams)", ErrSource, name, a.last)
		}
		if err != nil {
			return nil, 0, fmt.Errorf("%w: archive: %w", ErrSource, err)
		}
		a.last = h.Name
		if h.Typeflag == tar.TypeReg && filepath.Base(h.Name) == name {
			return io.NopCloser(a.tr), 0, nil
		}
	}
}

// WriteArchive writes the release in dir as a tar archive for
// ArchiveSource: the manifest, its signature, then the incremental stream
// (what most devices want, so they stop reading early) and the full one.
// kinds, when given, are the streams to put in (Incremental alone makes
// a small archive for the devices that have the previous release); each
// must be in the manifest and in dir.
func WriteArchive(w io.Writer, dir string, kinds ...string) error {
	data, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		return err
	}
	mf, err := ParseManifest(data)
	if err != nil {
		return err
	}
	names := []string{ManifestFile, SignatureFile}
	for _, kind := range []string{Incremental, Full} {
		if len(kinds) > 0 && !slices.Contains(kinds, kind) {
			continue
		}
		s, ok := mf.Stream(kind)
		if !ok && len(kinds) > 0 {
			return fmt.Errorf("archive: release %s has no %s stream", mf.Version, kind)
		}
		if ok {
			names = append(names, s.File)
		}
	}
	tw := tar.NewWriter(w)
	for _, n := range names {
		f, err := os.Open(filepath.Join(dir, n))
		if err != nil {
			return err
		}
		st, err := f.Stat()
		if err == nil {
			err = tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: st.Size(), ModTime: st.ModTime(), Typeflag: tar.TypeReg, Format: tar.FormatPAX})
		}
		if err == nil {
			_, err = io.Copy(tw, f)
		}
		f.Close()
		if err != nil {
			return fmt.Errorf("archive %s: %w", n, err)
		}
	}
	return tw.Close()
}

// fetch copies file name from src into dir, through name+".part" (kept
// when the copy is cut, and resumed from by the next call). limit bounds
// what is accepted (a stream's manifest size, or small for the manifest);
// want >= 0 is the exact size expected. A complete file of that size
// already in dir is kept.
func fetch(ctx context.Context, src Source, dir, name string, limit, want int64) (string, error) {
	final := filepath.Join(dir, name)
	if want >= 0 {
		if st, err := os.Stat(final); err == nil && st.Size() == want {
			return final, nil
		}
	}
	part := final + ".part"
	var have int64
	if st, err := os.Stat(part); err == nil {
		have = st.Size()
		if want >= 0 && have > want {
			have = 0
		}
	}
	rc, start, err := src.Open(ctx, name, have)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	flags := os.O_WRONLY | os.O_CREATE
	if start > 0 {
		flags |= os.O_APPEND
	} else {
		flags |= os.O_TRUNC
	}
	// Never through a link put there.
	f, err := os.OpenFile(part, flags|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return "", err
	}
	n, err := io.Copy(f, io.LimitReader(ctxReader{ctx, rc}, limit-start+1))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("%w: %s from %s (at byte %d; run again to resume): %w", ErrSource, name, src, start+n, err)
	}
	total := start + n
	if total > limit || want >= 0 && total > want {
		os.Remove(part)
		return "", fmt.Errorf("%w: %s from %s is over %d bytes, want %s", ErrStream, name, src, total-1, sizeWant(limit, want))
	}
	if want >= 0 && total < want {
		return "", fmt.Errorf("%w: %s from %s ended at byte %d of %d (run again to resume)", ErrSource, name, src, total, want)
	}
	if err := os.Rename(part, final); err != nil {
		return "", err
	}
	return final, nil
}

func sizeWant(limit, want int64) string {
	if want >= 0 {
		return strconv.FormatInt(want, 10)
	}
	return "at most " + strconv.FormatInt(limit, 10)
}

// Download copies the whole release src delivers into dir (created):
// the manifest and signature, verified against trusted first when any
// are given, then every stream, resumed where a cut download stopped and
// checked against the manifest's size and SHA-256. It is how a mirror
// takes a release from one transport to another (a registry to a
// directory served over HTTP), or a device keeps one for later.
func Download(ctx context.Context, src Source, dir string, trusted [][]byte) (*Manifest, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	for _, n := range []string{ManifestFile, SignatureFile} {
		os.Remove(filepath.Join(dir, n+".part"))
		if _, err := fetch(ctx, src, dir, n, maxManifest, -1); err != nil {
			return nil, err
		}
	}
	data, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		return nil, err
	}
	if len(trusted) > 0 {
		sig, err := os.ReadFile(filepath.Join(dir, SignatureFile))
		if err != nil {
			return nil, err
		}
		if _, err := Verify(data, sig, trusted...); err != nil {
			return nil, err
		}
	}
	mf, err := ParseManifest(data)
	if err != nil {
		return nil, err
	}
	for _, st := range mf.Streams {
		file, err := fetch(ctx, src, dir, st.File, st.Size, st.Size)
		if err != nil {
			return nil, err
		}
		if err := checkStreamFile(ctx, file, st); err != nil {
			os.Remove(file)
			return nil, err
		}
	}
	return mf, nil
}

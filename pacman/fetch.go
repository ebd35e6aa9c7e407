package pacman

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// Download timeouts: a dead server fails in seconds, a stalled transfer in
// StallTimeout, and nothing waits forever.
const (
	DialTimeout   = 10 * time.Second
	HeaderTimeout = 30 * time.Second
	StallTimeout  = 30 * time.Second
)

// NewHTTPClient returns the client paczfs downloads with: bounded dial and
// response-header timeouts, proxies from the environment.
func NewHTTPClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: DialTimeout, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   DialTimeout,
		ResponseHeaderTimeout: HeaderTimeout,
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       90 * time.Second,
	}}
}

// DownloadError says which file could not be fetched from where, and why.
type DownloadError struct {
	Repo string // empty for package files fetched by URL
	URL  string
	Err  error
}

func (e *DownloadError) Error() string {
	if e.Repo != "" {
		return fmt.Sprintf("repository %s: %s: %v", e.Repo, e.URL, e.Err)
	}
	return fmt.Sprintf("%s: %v", e.URL, e.Err)
}

func (e *DownloadError) Unwrap() error { return e.Err }

// errNotFound is an HTTP 404 (or a missing file:// file).
var errNotFound = errors.New("not found (404)")

// fetcher downloads files for one install, cancelled by ctx.
type fetcher struct {
	ctx    context.Context
	client *http.Client
	emit   func(Event)
	bytes  atomic.Int64 // bytes transferred
	mu     sync.Mutex
	errs   map[string]error // last error per URL, for messages
}

func newFetcher(ctx context.Context, client *http.Client, emit func(Event)) *fetcher {
	return &fetcher{ctx: ctx, client: client, emit: emit, errs: map[string]error{}}
}

func (f *fetcher) lastError(u string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.errs[u]
}

// forget drops the recorded errors (before a new try).
func (f *fetcher) forget() {
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(f.errs)
}

func (f *fetcher) record(u string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errs[u] = err
}

// stallReader fails a read that makes no progress for StallTimeout.
type stallReader struct {
	r     io.Reader
	timer *time.Timer
}

func (s *stallReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if n > 0 {
		s.timer.Reset(StallTimeout)
	}
	return n, err
}

// errNotModified: the server's file is not newer than the local copy
// (HTTP 304 to If-Modified-Since).
var errNotModified = errors.New("not modified (304)")

// get downloads rawURL into dir under its base name, atomically (a .part
// file renamed into place). It returns the bytes transferred. With
// conditional, a local copy that has the server's modification time
// (every HTTP download is given it) is asked for only if newer, as
// pacman's own downloader does for databases: errNotModified, nothing
// changed.
func (f *fetcher) get(parent context.Context, rawURL, dir string, conditional bool, progress func(done, total int64)) (int64, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return 0, err
	}
	name := path.Base(u.Path)
	if name == "." || name == "/" || name == "" {
		return 0, fmt.Errorf("no file name in %s", rawURL)
	}
	dst := filepath.Join(dir, name)
	part := dst + ".part"
	var body io.ReadCloser
	var total int64 = -1
	var modified time.Time // the server's Last-Modified, when it sent one
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	switch u.Scheme {
	case "file":
		fh, err := os.Open(u.Path)
		if errors.Is(err, os.ErrNotExist) {
			return 0, errNotFound
		}
		if err != nil {
			return 0, err
		}
		if st, err := fh.Stat(); err == nil {
			total = st.Size()
		}
		body = fh
	case "http", "https":
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
		if err != nil {
			return 0, err
		}
		req.Header.Set("User-Agent", "paczfs (libalpm)")
		if fi, err := os.Stat(dst); conditional && err == nil && fi.Mode().IsRegular() && fi.ModTime().After(time.Unix(0, 0)) {
			req.Header.Set("If-Modified-Since", fi.ModTime().UTC().Format(http.TimeFormat))
		}
		resp, err := f.client.Do(req)
		if err != nil {
			return 0, err
		}
		if resp.StatusCode == http.StatusNotModified {
			resp.Body.Close()
			return 0, errNotModified
		}
		modified, _ = http.ParseTime(resp.Header.Get("Last-Modified"))
		if resp.StatusCode == http.StatusNotFound {
			resp.Body.Close()
			return 0, errNotFound
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			return 0, fmt.Errorf("HTTP %s", resp.Status)
		}
		total = resp.ContentLength
		body = resp.Body
	default:
		return 0, fmt.Errorf("unsupported URL scheme %q", u.Scheme)
	}
	defer body.Close()
	out, err := os.OpenFile(part, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return 0, err
	}
	stall := time.AfterFunc(StallTimeout, cancel)
	defer stall.Stop()
	var done int64
	buf := make([]byte, 256<<10)
	r := &stallReader{r: body, timer: stall}
	for {
		n, rerr := r.Read(buf)
		if n > 0 {
			if _, werr := out.Write(buf[:n]); werr != nil {
				out.Close()
				os.Remove(part)
				return done, werr
			}
			done += int64(n)
			f.bytes.Add(int64(n))
			if progress != nil {
				progress(done, total)
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			out.Close()
			os.Remove(part)
			if parent.Err() != nil {
				return done, parent.Err()
			}
			if ctx.Err() != nil {
				return done, fmt.Errorf("transfer stalled for %v", StallTimeout)
			}
			return done, rerr
		}
	}
	if total >= 0 && done != total {
		out.Close()
		os.Remove(part)
		return done, fmt.Errorf("short transfer: %d of %d bytes", done, total)
	}
	if err := out.Close(); err != nil {
		os.Remove(part)
		return done, err
	}
	if u.Scheme != "file" {
		// The server's time, or the epoch when it gave none (then the
		// next download is unconditional): never this host's clock.
		if modified.IsZero() {
			modified = time.Unix(0, 0)
		}
		if err := os.Chtimes(part, modified, modified); err != nil {
			os.Remove(part)
			return done, err
		}
	}
	return done, os.Rename(part, dst)
}

// Fetch implements libalpm's fetch callback: 0 downloaded, 1 the local
// copy is up to date, -1 failed. libalpm tries each server in turn and
// asks for signatures separately. Unless forced (pacman -Syy), a
// database or signature the server has not changed since the copy in
// localpath is not downloaded again.
func (f *fetcher) Fetch(rawURL, localpath string, force bool) int {
	if f.ctx.Err() != nil {
		f.record(rawURL, f.ctx.Err())
		return -1
	}
	n, err := f.get(f.ctx, rawURL, localpath, !force, nil)
	if errors.Is(err, errNotModified) {
		return 1
	}
	if err != nil {
		f.record(rawURL, err)
		return -1
	}
	f.emit(Event{Kind: EventDownloadDone, File: path.Base(rawURL), URL: rawURL, Bytes: n, Total: n})
	return 0
}

// downloadJob is one package (and its signature) to put in the cache.
type downloadJob struct {
	file   string   // package file name
	urls   []string // candidate URLs, in server order
	sig    bool     // fetch file.sig too
	sigOpt bool     // a missing signature is acceptable
	repo   string
}

// prefetch downloads jobs into dir with n parallel workers. The first
// failure cancels the rest and is returned.
func (f *fetcher) prefetch(jobs []downloadJob, dir string, n int) error {
	if n < 1 {
		n = 1
	}
	ctx, cancel := context.WithCancelCause(f.ctx)
	defer cancel(nil)
	work := make(chan downloadJob)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range work {
				if err := f.one(ctx, j, dir); err != nil {
					cancel(err)
				}
			}
		}()
	}
	for _, j := range jobs {
		select {
		case work <- j:
		case <-ctx.Done():
		}
	}
	close(work)
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) || f.ctx.Err() != nil {
		if f.ctx.Err() != nil {
			return f.ctx.Err()
		}
		return err
	}
	return nil
}

func (f *fetcher) one(ctx context.Context, j downloadJob, dir string) error {
	var last error
	for _, u := range j.urls {
		f.emit(Event{Kind: EventDownloadStart, Repo: j.repo, File: j.file, URL: u})
		n, err := f.get(ctx, u, dir, false, func(done, total int64) {
			f.emit(Event{Kind: EventDownloadProgress, Repo: j.repo, File: j.file, URL: u, Bytes: done, Total: total})
		})
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			last = &DownloadError{Repo: j.repo, URL: u, Err: err}
			continue
		}
		if j.sig {
			if _, err := f.get(ctx, u+".sig", dir, false, nil); err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if !(j.sigOpt && errors.Is(err, errNotFound)) {
					last = &DownloadError{Repo: j.repo, URL: u + ".sig", Err: err}
					continue
				}
			}
		}
		f.emit(Event{Kind: EventDownloadDone, Repo: j.repo, File: j.file, URL: u, Bytes: n, Total: n})
		return nil
	}
	return last
}

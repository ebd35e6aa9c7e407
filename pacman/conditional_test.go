//go:build cgo && linux

package pacman_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/paczfs/paczfs/pacman"
)

// A database the server has not changed since the last refresh of the
// same root is not downloaded again (If-Modified-Since, as pacman -Sy);
// a changed one is, and so is an unchanged one when the server sends no
// Last-Modified. The local copy keeps the server's time, not this host's.
func TestRefreshDownloadsOnlyAChangedDatabase(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "t.db")
	writeDB(t, db, map[string][]string{"bash": nil}, false)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "bash-1.0-1-x86_64.pkg.tar.zst"), make([]byte, 100), 0o644))
	old := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	require.NoError(t, os.Chtimes(db, old, old))
	var mu sync.Mutex
	var statuses []int
	lastModified := true
	files := http.FileServer(http.Dir(dir))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		mu.Lock()
		lm := lastModified
		mu.Unlock()
		files.ServeHTTP(rec, r)
		if !lm {
			rec.Header().Del("Last-Modified")
		}
		if strings.HasSuffix(r.URL.Path, "/t.db") {
			mu.Lock()
			statuses = append(statuses, rec.Code)
			mu.Unlock()
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		w.Write(rec.Body.Bytes())
	}))
	t.Cleanup(srv.Close)
	root := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(root, "var/lib/pacman/local"), 0o755))
	cfg := pacman.Config{Architecture: "x86_64", SigLevel: "Never", ParallelDownloads: 1, CacheDirs: []string{t.TempDir()},
		Repos: []pacman.Repo{{Name: "t", Servers: []string{srv.URL}}}}
	in, err := pacman.New(cfg)
	require.NoError(t, err)
	refresh := func() int64 {
		t.Helper()
		res, err := in.Download(context.Background(), root, []string{"bash"})
		require.NoError(t, err)
		return res.Downloaded
	}
	local := filepath.Join(root, "var/lib/pacman/sync/t.db")

	first := refresh()
	assert.Positive(t, first)
	fi, err := os.Stat(local)
	require.NoError(t, err)
	assert.True(t, fi.ModTime().Equal(old), "the copy has the server's time: %v", fi.ModTime())

	assert.Zero(t, refresh(), "unchanged: nothing downloaded")

	writeDB(t, db, map[string][]string{"bash": nil, "zsh": nil}, false)
	newer := old.Add(time.Hour)
	require.NoError(t, os.Chtimes(db, newer, newer))
	assert.Positive(t, refresh(), "changed: downloaded")
	want, err := os.ReadFile(db)
	require.NoError(t, err)
	got, err := os.ReadFile(local)
	require.NoError(t, err)
	assert.Equal(t, want, got)

	mu.Lock()
	lastModified = false
	mu.Unlock()
	newest := newer.Add(time.Hour)
	require.NoError(t, os.Chtimes(db, newest, newest))
	refresh()
	fi, err = os.Stat(local)
	require.NoError(t, err)
	assert.Equal(t, int64(0), fi.ModTime().Unix(), "no Last-Modified: the epoch, never this host's clock")
	refresh()
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, []int{200, 304, 200, 200, 200}, statuses)
}

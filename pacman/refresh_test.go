//go:build cgo && linux

package pacman_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/paczfs/paczfs/pacman"
)

// flakyRepo serves a repository whose database answers 404 to the first
// misses requests for it, as archzfs's does while its release is being
// recreated; it counts the database requests.
func flakyRepo(t *testing.T, misses int) (url string, requests func() int) {
	dir := t.TempDir()
	writeDB(t, filepath.Join(dir, "t.db"), map[string][]string{"bash": nil}, false)
	var mu sync.Mutex
	n := 0
	files := http.FileServer(http.Dir(dir))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/t.db") {
			mu.Lock()
			n++
			miss := n <= misses
			mu.Unlock()
			if miss {
				http.NotFound(w, r)
				return
			}
		}
		files.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, func() int { mu.Lock(); defer mu.Unlock(); return n }
}

func flakyConfig(url string, retries int) pacman.Config {
	return pacman.Config{Architecture: "x86_64", SigLevel: "Never", ParallelDownloads: 2,
		Repos: []pacman.Repo{{Name: "t", Servers: []string{url}, RefreshRetries: retries}}}
}

// A database that is briefly missing is fetched again after a wait, and
// each wait names the repository.
func TestRefreshRetriesAMissingDatabase(t *testing.T) {
	url, requests := flakyRepo(t, 2)
	var warnings []string
	in, err := pacman.New(flakyConfig(url, 3), pacman.WithScratchDir(t.TempDir()), pacman.WithRefreshWaits(10*time.Millisecond),
		pacman.WithEvents(func(e pacman.Event) {
			if e.Kind == pacman.EventLog && e.Level == "warning" {
				warnings = append(warnings, e.Message)
			}
		}))
	require.NoError(t, err)
	plan, err := in.Plan(context.Background(), []string{"bash"})
	require.NoError(t, err)
	assert.Equal(t, []string{"bash"}, plan.Names())
	assert.Equal(t, 3, requests(), "two 404s, then the database")
	require.Len(t, warnings, 2)
	assert.Contains(t, warnings[0], "repository t: database not available")
	assert.Contains(t, warnings[0], "(1 of 3)")
}

// One that stays missing fails after its last retry, naming the
// repository and URL; a repository with no retries (a wrong URL) fails at
// once.
func TestRefreshGivesUpAfterItsRetries(t *testing.T) {
	for _, retries := range []int{2, 0} {
		url, requests := flakyRepo(t, 1000)
		in, err := pacman.New(flakyConfig(url, retries), pacman.WithScratchDir(t.TempDir()), pacman.WithRefreshWaits(time.Millisecond))
		require.NoError(t, err)
		_, err = in.Plan(context.Background(), []string{"bash"})
		assert.True(t, errors.Is(err, pacman.ErrDownload), "%v", err)
		var de *pacman.DownloadError
		require.True(t, errors.As(err, &de), "%v", err)
		assert.Equal(t, "t", de.Repo)
		assert.Equal(t, url+"/t.db", de.URL)
		assert.Equal(t, 1+retries, requests())
	}
}

// Cancelling during a wait ends it at once.
func TestRefreshWaitEndsWithTheContext(t *testing.T) {
	url, _ := flakyRepo(t, 1000)
	in, err := pacman.New(flakyConfig(url, 1), pacman.WithScratchDir(t.TempDir()), pacman.WithRefreshWaits(time.Hour))
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = in.Plan(ctx, []string{"bash"})
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.ErrorIs(t, err, pacman.ErrDownload, "the download failure is kept beside the cancellation")
	assert.Less(t, time.Since(start), 30*time.Second)
}

// archzfs is the repository that is retried, by default.
func TestArchZFSIsRetried(t *testing.T) {
	assert.Equal(t, 4, pacman.ArchZFSRepo().RefreshRetries)
	var waited time.Duration
	for _, w := range pacman.RefreshWaits() {
		waited += w
	}
	assert.Equal(t, 2*time.Minute, waited, "about two minutes, then the build fails naming archzfs")
}

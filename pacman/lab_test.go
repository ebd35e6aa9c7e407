//go:build lab

package pacman_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/paczfs/paczfs/internal/labrepo"
	"github.com/paczfs/paczfs/internal/labtest"
	"github.com/paczfs/paczfs/pacman"
)

// recorder keeps the events of an install.
type recorder struct {
	mu     sync.Mutex
	events []pacman.Event
	at     []time.Time // when each event came
}

func (r *recorder) add(e pacman.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
	r.at = append(r.at, time.Now())
}

// profile says where an install's time went, from its events: until the
// first package download (the databases and the resolution), the
// downloads, libalpm's checks (each phase by pacman's name for it), the
// packages (extraction and scriptlets), the hooks, and what followed the
// last event.
func (r *recorder) profile(start, end time.Time) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.at) == 0 {
		return "no events"
	}
	var marks []string
	var times []time.Time
	mark := func(name string, t time.Time) {
		if len(marks) == 0 || marks[len(marks)-1] != name {
			marks, times = append(marks, name), append(times, t)
		}
	}
	mark("databases+resolve", start)
	for i, e := range r.events {
		switch e.Kind {
		case pacman.EventDownloadStart, pacman.EventDownloadProgress, pacman.EventDownloadDone:
			mark("downloads", r.at[i])
		case pacman.EventCheck:
			mark(e.Message, r.at[i])
		case pacman.EventInstall, pacman.EventInstalled, pacman.EventScriptlet:
			mark("packages", r.at[i])
		case pacman.EventHook:
			mark("hooks", r.at[i])
		}
	}
	mark("after the last event", r.at[len(r.at)-1])
	times = append(times, end)
	var b strings.Builder
	for i, m := range marks {
		fmt.Fprintf(&b, " %s %.1fs;", m, times[i+1].Sub(times[i]).Seconds())
	}
	return strings.TrimSuffix(b.String(), ";")
}

// packageBytes sums the bytes transferred for package files, read from
// the download-done events.
func (r *recorder) packageBytes() (n int64, files int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.events {
		if e.Kind == pacman.EventDownloadDone && strings.HasSuffix(e.File, ".pkg.tar.zst") {
			n += e.Bytes
			files++
		}
	}
	return n, files
}

// lastCheck is the last EventCheck of phase.
func (r *recorder) lastCheck(phase string) pacman.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var last pacman.Event
	for _, e := range r.events {
		if e.Kind == pacman.EventCheck && e.Message == phase {
			last = e
		}
	}
	return last
}

func (r *recorder) kinds() map[pacman.EventKind]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := map[pacman.EventKind]int{}
	for _, e := range r.events {
		m[e.Kind]++
	}
	return m
}

func labRepo(t *testing.T) *labrepo.Repo {
	dir, _ := labtest.LabRepo(t)
	repo, err := labrepo.Open(filepath.Dir(dir))
	require.NoError(t, err)
	return repo
}

// serve serves dir over HTTP on the VM's loopback.
func serve(t *testing.T, dir string) string {
	srv := httptest.NewServer(http.FileServer(http.Dir(dir)))
	t.Cleanup(srv.Close)
	return srv.URL
}

func installer(t *testing.T, cfg pacman.Config, rec *recorder) *pacman.Installer {
	in, err := pacman.New(cfg, pacman.WithEvents(rec.add), pacman.WithScratchDir(t.TempDir()))
	require.NoError(t, err)
	return in
}

// pacmanCmd runs the real pacman against root with a minimal config.
func pacmanCmd(t *testing.T, root, conf string, args ...string) (string, error) {
	base := []string{"--root", root, "--dbpath", filepath.Join(root, "var/lib/pacman"), "--config", conf,
		"--gpgdir", pacman.GPGDir(root), "--cachedir", filepath.Join(root, "var/cache/pacman/pkg"),
		"--hookdir", filepath.Join(root, "etc/pacman.d/hooks"), "--logfile", filepath.Join(root, "var/log/pacman.log"), "--noconfirm"}
	out, err := exec.Command("pacman", append(base, args...)...).CombinedOutput()
	return string(out), err
}

func pacmanConf(t *testing.T, url string) string {
	conf := filepath.Join(t.TempDir(), "pacman.conf")
	require.NoError(t, os.WriteFile(conf, []byte(fmt.Sprintf("[options]\nArchitecture = x86_64\nSigLevel = Required\nParallelDownloads = 5\n\n[%s]\nServer = %s\n", labrepo.RepoName, url)), 0o644))
	return conf
}

func localPackages(t *testing.T, root string) []string {
	entries, _ := os.ReadDir(filepath.Join(root, "var/lib/pacman/local"))
	var out []string
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	return out
}

func TestLabInstallBaseOnZFSVerifiedByPacmanAndEqualToPacman(t *testing.T) {
	labtest.Require(t)
	repo := labRepo(t)
	url := serve(t, repo.Dir)
	ctx := t.Context()
	root := labtest.ZFSRoot(t)
	rec := &recorder{}
	in := installer(t, repo.PacmanConfig(url), rec)

	plan, err := in.Plan(ctx, labrepo.Base)
	require.NoError(t, err)
	require.NotEmpty(t, plan.Packages)
	assert.Empty(t, localPackages(t, root), "planning writes nothing into the root")
	t.Logf("base set: %d packages, %d bytes to download, %d bytes installed", len(plan.Packages), plan.DownloadSize, plan.InstalledSize)

	require.NoError(t, in.InitKeyring(ctx, root))
	// One master key, ed25519 (gpg's algorithm 22), kept by pacman-key.
	// Public keys only: listing secret keys would start a gpg-agent.
	var masterAlgos []string
	algo := ""
	for _, l := range strings.Split(labtest.Run(t, "gpg", "--homedir", pacman.GPGDir(root), "--no-permission-warning", "--with-colons", "--list-keys"), "\n") {
		f := strings.Split(l, ":")
		switch {
		case f[0] == "pub" && len(f) > 3:
			algo = f[3]
		case f[0] == "uid" && len(f) > 9 && strings.Contains(f[9], "Pacman Keyring Master Key"):
			masterAlgos = append(masterAlgos, algo)
		}
	}
	assert.Equal(t, []string{"22"}, masterAlgos, "one ed25519 master key")
	res, err := in.Install(ctx, root, labrepo.Base)
	require.NoError(t, err)
	for _, w := range res.Warnings {
		t.Log(w)
	}
	assert.Len(t, res.Installed, len(plan.Packages))
	assert.Len(t, localPackages(t, root), len(plan.Packages))
	n, files := rec.packageBytes()
	assert.Equal(t, len(plan.Packages), files, "every package was downloaded once")
	assert.Positive(t, n)
	kinds := rec.kinds()
	// The signatures were checked by paczfs, every package, before
	// libalpm's commit (which then checks their checksums only).
	assert.Equal(t, len(plan.Packages), rec.lastCheck("checking package signatures").Current, "every signature checked in-process")
	assert.Positive(t, kinds[pacman.EventInstall])
	assert.Positive(t, kinds[pacman.EventInstalled])
	assert.Positive(t, kinds[pacman.EventHook], "the lab hooks ran")
	assert.Empty(t, labtest.Mounts(filepath.Join(root, "proc")), "nothing stays mounted in the root")
	assert.Empty(t, labtest.Mounts(filepath.Join(root, "dev")))
	_, err = os.Stat(filepath.Join(root, "var/lib/pacman/db.lck"))
	assert.True(t, errors.Is(err, os.ErrNotExist), "the lock is released")
	out, _ := exec.Command("pgrep", "-a", "gpg-agent").Output()
	assert.Empty(t, strings.TrimSpace(string(out)), "no gpg-agent left running")

	// pacman's own verifier: no missing or altered file.
	conf := pacmanConf(t, url)
	qkk, err := pacmanCmd(t, root, conf, "-Qkk")
	assert.NoError(t, err, "pacman -Qkk:\n%s", qkk)
	assert.NotContains(t, qkk, "warning:")
	assert.Contains(t, qkk, " 0 altered files")

	// pacman as the reference: the same set from the same repository.
	root2 := filepath.Join(t.TempDir(), "root2")
	require.NoError(t, os.MkdirAll(filepath.Join(root2, "var/lib/pacman"), 0o755))
	require.NoError(t, in.InitKeyring(ctx, root2))
	sy, err := pacmanCmd(t, root2, conf, "-Sy", strings.Join(labrepo.Base, " "))
	if err != nil {
		sy, err = pacmanCmd(t, root2, conf, append([]string{"-Sy"}, labrepo.Base...)...)
	}
	require.NoError(t, err, "pacman -Sy:\n%s", sy)
	q1, err := pacmanCmd(t, root, conf, "-Q")
	require.NoError(t, err)
	q2, err := pacmanCmd(t, root2, conf, "-Q")
	require.NoError(t, err)
	assert.Equal(t, q2, q1, "installed packages and versions")
	l1, err := pacmanCmd(t, root, conf, "-Ql")
	require.NoError(t, err)
	l2, err := pacmanCmd(t, root2, conf, "-Ql")
	require.NoError(t, err)
	assert.Equal(t, strings.ReplaceAll(l2, root2, ""), strings.ReplaceAll(l1, root, ""), "file lists")
	// What the local database says of each package's checks, as pacman
	// recorded them: paczfs checked the signatures, libalpm the checksums.
	validated := func(root string) []string {
		qi, err := pacmanCmd(t, root, conf, "-Qi")
		require.NoError(t, err)
		var out []string
		for _, l := range strings.Split(qi, "\n") {
			if strings.HasPrefix(l, "Name") || strings.HasPrefix(l, "Validated By") {
				out = append(out, strings.Join(strings.Fields(l), " "))
			}
		}
		return out
	}
	v1, v2 := validated(root), validated(root2)
	assert.Equal(t, v2, v1, "pacman -Qi's Validated By")
	assert.Contains(t, strings.Join(v1, "\n"), "Signature", "signatures recorded as checked")
	assert.Greater(t, strings.Count(l1, "\n"), 5000)
}

func TestLabPlanNamesUnknownPackagesAndMissingDependencies(t *testing.T) {
	labtest.Require(t)
	repo := labRepo(t)
	in := installer(t, repo.PacmanConfig(serve(t, repo.Dir)), &recorder{})
	_, err := in.Plan(t.Context(), []string{"bash", "no-such-package"})
	require.Error(t, err)
	assert.ErrorIs(t, err, pacman.ErrNotFound)
	assert.ErrorContains(t, err, "no-such-package")

	_, err = in.Plan(t.Context(), []string{labrepo.Broken})
	require.Error(t, err)
	assert.ErrorIs(t, err, pacman.ErrDependencies)
	assert.ErrorContains(t, err, labrepo.BrokenMissing)

	root := t.TempDir()
	require.NoError(t, in.InitKeyring(t.Context(), root))
	_, err = in.Install(t.Context(), root, []string{labrepo.Broken})
	assert.ErrorIs(t, err, pacman.ErrDependencies)
	assert.Empty(t, localPackages(t, root), "nothing installed")
	cached, _ := filepath.Glob(filepath.Join(root, "var/cache/pacman/pkg/*.pkg.tar*"))
	assert.Empty(t, cached, "nothing downloaded")
}

// copyRepo copies the repository so a test can damage its copy.
func copyRepo(t *testing.T, src string) string {
	dst := filepath.Join(t.TempDir(), "repo")
	labtest.Run(t, "cp", "-a", src, dst)
	return dst
}

func TestLabTamperedPackageAndUnsignedDatabaseAreRejected(t *testing.T) {
	labtest.Require(t)
	repo := labRepo(t)
	ctx := t.Context()
	// installLess installs less from dir (a damaged copy of the
	// repository) into a fresh root, which it returns with the error.
	installLess := func(dir string, rec *recorder) (string, error) {
		in := installer(t, repo.PacmanConfig(serve(t, dir)), rec)
		root := t.TempDir()
		require.NoError(t, in.InitKeyring(ctx, root))
		_, err := in.Install(ctx, root, []string{"less"})
		require.Error(t, err)
		t.Log(err)
		return root, err
	}
	less := func(dir string) string {
		pkgs, _ := filepath.Glob(filepath.Join(dir, "less-*.pkg.tar.zst"))
		require.Len(t, pkgs, 1)
		return pkgs[0]
	}

	bad := copyRepo(t, repo.Dir)
	data, err := os.ReadFile(less(bad))
	require.NoError(t, err)
	data[len(data)/2] ^= 0x01 // one byte changed
	require.NoError(t, os.WriteFile(less(bad), data, 0o644))
	rec := &recorder{}
	root, err := installLess(bad, rec)
	assert.ErrorIs(t, err, pacman.ErrIntegrity)
	assert.ErrorContains(t, err, "less-")
	assert.NotContains(t, strings.Join(localPackages(t, root), " "), "less-", "the root is not marked as having the package")
	assert.Positive(t, rec.lastCheck("checking package signatures").Count, "paczfs checked it first, then left it to libalpm")

	// A package signed by a key the keyring does not have: paczfs's check
	// does not pass it, and libalpm refuses it.
	foreign := copyRepo(t, repo.Dir)
	stranger, err := openpgp.NewEntity("stranger", "", "stranger@paczfs.invalid", &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA})
	require.NoError(t, err)
	f, err := os.Open(less(foreign))
	require.NoError(t, err)
	var sig bytes.Buffer
	require.NoError(t, openpgp.DetachSign(&sig, stranger, f, nil))
	f.Close()
	require.NoError(t, os.WriteFile(less(foreign)+".sig", sig.Bytes(), 0o644))
	root, err = installLess(foreign, &recorder{})
	assert.ErrorIs(t, err, pacman.ErrSignature)
	assert.ErrorContains(t, err, "key")
	assert.Empty(t, localPackages(t, root))

	unsigned := copyRepo(t, repo.Dir)
	for _, s := range []string{labrepo.RepoName + ".db.sig", labrepo.RepoName + ".db.tar.zst.sig"} {
		require.NoError(t, os.Remove(filepath.Join(unsigned, s)))
	}
	root, err = installLess(unsigned, &recorder{})
	assert.ErrorIs(t, err, pacman.ErrSignature)
	assert.ErrorContains(t, err, labrepo.RepoName+".db.sig")
	assert.Empty(t, localPackages(t, root))
}

// TestLabSignatureLeftToLibalpmStillInstalls: a signature paczfs's check
// does not take (here two good signatures in one file, which gpg and
// libalpm accept: paczfs's check takes exactly one) goes to libalpm's
// own check, which passes it, and the install goes on. (A marker packet
// after the signature, which paczfs's check also declines, makes
// libalpm 15 itself hang in its signature check, as pacman -S does.)
func TestLabSignatureLeftToLibalpmStillInstalls(t *testing.T) {
	labtest.Require(t)
	repo := labRepo(t)
	dir := repoWithDoubledSignature(t, repo, "less")
	rec := &recorder{}
	in := installer(t, repo.PacmanConfig(serve(t, dir)), rec)
	root := t.TempDir()
	require.NoError(t, in.InitKeyring(t.Context(), root))
	res, err := in.Install(t.Context(), root, []string{"less"})
	require.NoError(t, err)
	assert.Contains(t, strings.Join(localPackages(t, root), " "), "less")
	assert.Positive(t, rec.lastCheck("checking package signatures").Count, "paczfs's check ran first")
	assert.Less(t, rec.lastCheck("checking package signatures").Current, len(res.Installed), "and did not pass every package")
	qi, err := pacmanCmd(t, root, pacmanConf(t, serve(t, dir)), "-Qi", "less")
	require.NoError(t, err)
	assert.Contains(t, qi, "Signature", "libalpm checked the signature")
}

// repoWithDoubledSignature copies repo and gives pkg's file two good
// signatures in its .sig, which paczfs's check declines and libalpm's
// passes; it returns the copy's directory.
func repoWithDoubledSignature(t *testing.T, repo *labrepo.Repo, pkg string) string {
	t.Helper()
	dir := copyRepo(t, repo.Dir)
	pkgs, _ := filepath.Glob(filepath.Join(dir, pkg+"-*.pkg.tar.zst"))
	require.Len(t, pkgs, 1)
	sig, err := os.ReadFile(pkgs[0] + ".sig")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(pkgs[0]+".sig", append(sig, sig...), 0o644))
	return dir
}

func TestLabServerDownOrWrongURLFailsClearlyAndQuickly(t *testing.T) {
	labtest.Require(t)
	repo := labRepo(t)
	for name, url := range map[string]string{
		"server down": "http://127.0.0.1:9", // nothing listens on discard
		"wrong url":   serve(t, repo.Dir) + "/no/such/path",
	} {
		t.Run(name, func(t *testing.T) {
			in := installer(t, repo.PacmanConfig(url), &recorder{})
			start := time.Now()
			_, err := in.Plan(t.Context(), []string{"bash"})
			require.Error(t, err)
			t.Log(err)
			assert.ErrorIs(t, err, pacman.ErrDownload)
			assert.ErrorContains(t, err, "repository "+labrepo.RepoName)
			assert.ErrorContains(t, err, url)
			assert.Less(t, time.Since(start), 30*time.Second)
		})
	}
}

// slowFiles serves package files at about 64 KiB/s, databases at full speed.
type slowFiles struct{ dir string }

func (s slowFiles) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.Contains(r.URL.Path, ".pkg.tar") {
		http.FileServer(http.Dir(s.dir)).ServeHTTP(w, r)
		return
	}
	f, err := os.Open(filepath.Join(s.dir, filepath.Clean(r.URL.Path)))
	if err != nil {
		http.NotFound(w, r)
		return
	}
	defer f.Close()
	st, _ := f.Stat()
	w.Header().Set("Content-Length", fmt.Sprint(st.Size()))
	buf := make([]byte, 8<<10)
	for {
		n, err := f.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			w.(http.Flusher).Flush()
		}
		if err != nil {
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-time.After(125 * time.Millisecond):
		}
	}
}

func TestLabCancelDuringDownloadReturnsPromptlyAndLeavesNothing(t *testing.T) {
	labtest.Require(t)
	repo := labRepo(t)
	srv := httptest.NewServer(slowFiles{repo.Dir})
	defer srv.Close()
	rec := &recorder{}
	root := t.TempDir()
	ctx, cancel := context.WithCancel(t.Context())
	started := make(chan struct{})
	var once sync.Once
	in2, err := pacman.New(repo.PacmanConfig(srv.URL), pacman.WithEvents(func(e pacman.Event) {
		rec.add(e)
		if e.Kind == pacman.EventDownloadProgress {
			once.Do(func() { close(started) })
		}
	}))
	require.NoError(t, err)
	require.NoError(t, in2.InitKeyring(t.Context(), root))
	errc := make(chan error, 1)
	go func() { _, err := in2.Install(ctx, root, labrepo.Base); errc <- err }()
	select {
	case <-started:
	case <-time.After(2 * time.Minute):
		t.Fatal("downloads never started")
	}
	cancel()
	start := time.Now()
	select {
	case err = <-errc:
	case <-time.After(30 * time.Second):
		t.Fatal("Install did not return within 30s of cancellation")
	}
	t.Logf("returned %v after cancel: %v", time.Since(start), err)
	assert.ErrorIs(t, err, context.Canceled)
	assert.Less(t, time.Since(start), 10*time.Second)
	_, err = os.Stat(filepath.Join(root, "var/lib/pacman/db.lck"))
	assert.True(t, errors.Is(err, os.ErrNotExist), "the lock is released")
	assert.Empty(t, labtest.Mounts(root), "nothing stays mounted")
	assert.Empty(t, localPackages(t, root))
	parts, _ := filepath.Glob(filepath.Join(root, "var/cache/pacman/pkg/*.part"))
	assert.Empty(t, parts, "no partial downloads left")
}

func TestLabSecondInstallWithWarmCacheDownloadsNothing(t *testing.T) {
	labtest.Require(t)
	repo := labRepo(t)
	url := serve(t, repo.Dir)
	cache := t.TempDir()
	cfg := repo.PacmanConfig(url)
	cfg.CacheDirs = []string{cache}
	set := []string{"bash", "coreutils", "less"}
	for i, want := range []string{"cold", "warm"} {
		rec := &recorder{}
		in := installer(t, cfg, rec)
		root := t.TempDir()
		require.NoError(t, in.InitKeyring(t.Context(), root))
		res, err := in.Install(t.Context(), root, set)
		require.NoError(t, err, want)
		n, files := rec.packageBytes()
		t.Logf("%s cache: %d package files, %d bytes downloaded (%d in all, databases included)", want, files, n, res.Downloaded)
		if i == 0 {
			assert.Positive(t, n)
		} else {
			assert.Zero(t, n, "a warm cache downloads no package")
			assert.Zero(t, files)
			assert.NotEmpty(t, res.Installed)
		}
	}
}

// BenchmarkLabInstallBaseVersusPacman installs the base set into a fresh
// root with paczfs, then with pacman -Sy, from the same repository in the
// same VM, both with 5 parallel downloads and cold caches.
func BenchmarkLabInstallBaseVersusPacman(b *testing.B) {
	labtest.Require(b)
	dir, _ := labtest.LabRepo(b)
	repo, err := labrepo.Open(filepath.Dir(dir))
	require.NoError(b, err)
	srv := httptest.NewServer(http.FileServer(http.Dir(repo.Dir)))
	defer srv.Close()
	phase := func(format string, a ...any) {
		fmt.Fprintf(os.Stdout, "bench %s: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, a...))
	}
	// Each run starts from the same state: a fresh root with its keyring
	// (not timed), written back and dropped from the page cache, so that
	// neither side reads what the other left in memory.
	fresh := func() string {
		root := b.TempDir()
		in, err := pacman.New(repo.PacmanConfig(srv.URL))
		require.NoError(b, err)
		require.NoError(b, in.InitKeyring(b.Context(), root))
		require.NoError(b, os.MkdirAll(filepath.Join(root, "var/lib/pacman"), 0o755))
		labtest.Run(b, "sh", "-c", "sync && echo 3 > /proc/sys/vm/drop_caches")
		return root
	}
	conf := filepath.Join(b.TempDir(), "pacman.conf")
	require.NoError(b, os.WriteFile(conf, []byte(fmt.Sprintf("[options]\nArchitecture = x86_64\nSigLevel = Required\nParallelDownloads = 5\n\n[%s]\nServer = %s\n", labrepo.RepoName, srv.URL)), 0o644))
	for i := 0; i < b.N; i++ {
		run := 0
		ours := func() time.Duration {
			run++
			root := fresh()
			rec := &recorder{}
			in, err := pacman.New(repo.PacmanConfig(srv.URL), pacman.WithEvents(rec.add))
			require.NoError(b, err)
			phase("paczfs install (run %d)", run)
			start := time.Now()
			res, err := in.Install(b.Context(), root, labrepo.Base)
			took := time.Since(start)
			require.NoError(b, err)
			pkgBytes, _ := rec.packageBytes()
			fmt.Fprintf(os.Stdout, "  paczfs: %d packages, %d bytes downloaded (%d with databases), %.1f s\n", len(res.Installed), pkgBytes, res.Downloaded, took.Seconds())
			fmt.Fprintf(os.Stdout, "   %s\n", rec.profile(start, start.Add(took)))
			return took
		}
		// pacman runs bare, as the target names it, and as pacstrap runs
		// it (the API filesystems mounted under the root, in a PID
		// namespace of its own), which is what paczfs does around libalpm.
		// Each run's warnings and errors are printed: a scriptlet or hook
		// that needs /proc or /dev would show there in the bare runs.
		pacstrap := labtest.PacstrapScript(b)
		pacmanRun := func(name string, asPacstrap bool) func() time.Duration {
			return func() time.Duration {
				run++
				root := fresh()
				args := []string{"--dbpath", filepath.Join(root, "var/lib/pacman"), "--config", conf,
					"--gpgdir", pacman.GPGDir(root), "--cachedir", filepath.Join(root, "var/cache/pacman/pkg"), "--noconfirm", "-Sy"}
				args = append(args, labrepo.Base...)
				argv := append([]string{"pacman", "--root", root}, args...)
				if asPacstrap {
					argv = append([]string{"sh", pacstrap, root, "pacman", "--root", root}, args...)
				}
				phase("%s (run %d)", name, run)
				start := time.Now()
				out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
				took := time.Since(start)
				require.NoError(b, err, string(out))
				var pacBytes int64
				cached, _ := filepath.Glob(filepath.Join(root, "var/cache/pacman/pkg/*.pkg.tar.zst"))
				for _, c := range cached {
					if st, err := os.Stat(c); err == nil {
						pacBytes += st.Size()
					}
				}
				var complaints []string
				for _, l := range strings.Split(string(out), "\n") {
					if strings.Contains(l, "error") || strings.Contains(l, "warning") || strings.Contains(l, "failed") {
						complaints = append(complaints, strings.TrimSpace(l))
					}
				}
				fmt.Fprintf(os.Stdout, "  %s: %d packages, %d bytes downloaded, %.1f s, %d lines of errors or warnings\n", name, len(cached), pacBytes, took.Seconds(), len(complaints))
				for i, c := range complaints {
					if i == 5 {
						fmt.Fprintf(os.Stdout, "    ...\n")
						break
					}
					fmt.Fprintf(os.Stdout, "    %s\n", c)
				}
				return took
			}
		}
		// The repository's files are read once, untimed, so that the first
		// run does not pay alone for bringing them from the host's disk
		// (the page cache dropped before each run is the guest's).
		labtest.Run(b, "sh", "-c", "cat "+repo.Dir+"/* > /dev/null")
		// Three runs each, each side leading one round.
		r := labtest.Rotate(labtest.BenchRuns(), ours, pacmanRun("pacman -Sy", false), pacmanRun("pacstrap-style pacman -Sy", true))
		a, p, ps := r[0], r[1], r[2]
		fmt.Fprintf(os.Stdout, "install of the base set (%d packages asked for), from the same HTTP repository:\n", len(labrepo.Base))
		ratio := labtest.Compare(os.Stdout, "paczfs", a, "pacman", p)
		fmt.Fprintf(os.Stdout, "  (target: paczfs/pacman at most 1.0)\n")
		fmt.Fprintf(os.Stdout, "against pacman with the API filesystems mounted, as pacstrap runs it:\n")
		ratioStrap := labtest.Compare(os.Stdout, "paczfs", a, "pacstrap-style", ps)
		b.ReportMetric(a.Median().Seconds(), "paczfs-s")
		b.ReportMetric(p.Median().Seconds(), "pacman-s")
		b.ReportMetric(ps.Median().Seconds(), "pacstrap-s")
		b.ReportMetric(ratioStrap, "ratio-pacstrap")
		b.ReportMetric(ratio, "ratio")
	}
}

func TestLabStaleLockIsAClearError(t *testing.T) {
	labtest.Require(t)
	repo := labRepo(t)
	in := installer(t, repo.PacmanConfig(serve(t, repo.Dir)), &recorder{})
	root := t.TempDir()
	require.NoError(t, in.InitKeyring(t.Context(), root))
	lock := filepath.Join(root, "var/lib/pacman/db.lck")
	require.NoError(t, os.MkdirAll(filepath.Dir(lock), 0o755))
	require.NoError(t, os.WriteFile(lock, nil, 0o644))
	_, err := in.Install(t.Context(), root, []string{"less"})
	require.Error(t, err)
	t.Log(err)
	assert.ErrorIs(t, err, pacman.ErrLocked)
	assert.ErrorContains(t, err, "remove "+lock)
	_, err = os.Stat(lock)
	assert.NoError(t, err, "paczfs never removes a lock it did not take")
	assert.Empty(t, labtest.Mounts(root))
}

// The original's TRUSTED_KEYS: a key imported from a file and locally
// signed is enough to install, with no keyring package populated.
func TestLabTrustedKeyFromFile(t *testing.T) {
	labtest.Require(t)
	repo := labRepo(t)
	cfg := repo.PacmanConfig(serve(t, repo.Dir))
	cfg.Keyrings = nil
	cfg.TrustedKeys = []pacman.TrustedKey{{File: filepath.Join(repo.KeyringDir, labrepo.RepoName+".gpg")}}
	in := installer(t, cfg, &recorder{})
	root := t.TempDir()
	require.NoError(t, in.InitKeyring(t.Context(), root))
	res, err := in.Install(t.Context(), root, []string{"less"})
	require.NoError(t, err)
	assert.NotEmpty(t, res.Installed)
	out, err := exec.Command("gpg", "--homedir", pacman.GPGDir(root), "--list-keys", repo.Fingerprint).CombinedOutput()
	require.NoError(t, err, string(out))
	assert.Contains(t, string(out), "[  full  ]", "locally signed, so fully valid")
}

// Download fetches what a later Install into the same root needs, and
// installs nothing: the root's database stays as it was, and the Install
// after it downloads no package. Cancelled, it returns the context's
// error and the root is still unchanged.
func TestLabDownloadThenInstallDownloadsNothing(t *testing.T) {
	labtest.Require(t)
	repo := labRepo(t)
	url := serve(t, repo.Dir)
	cache := t.TempDir()
	cfg := repo.PacmanConfig(url)
	cfg.CacheDirs = []string{cache}
	root := t.TempDir()
	first := []string{"bash"}
	later := []string{"less", "rsync"}
	in := installer(t, cfg, &recorder{})
	require.NoError(t, in.InitKeyring(t.Context(), root))
	_, err := in.Install(t.Context(), root, first)
	require.NoError(t, err)
	before := localPackages(t, root)

	_, err = in.Download(t.Context(), t.TempDir(), later)
	assert.Error(t, err, "a root without a package database is refused")

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err = in.Download(ctx, root, later)
	require.ErrorIs(t, err, context.Canceled)

	rec := &recorder{}
	res, err := installer(t, cfg, rec).Download(t.Context(), root, later)
	require.NoError(t, err)
	n, files := rec.packageBytes()
	t.Logf("download: %d package files, %d bytes (%d in all), %d packages planned, %s", files, n, res.Downloaded, len(res.Installed), res.Took)
	assert.Positive(t, files, "the later install's packages are downloaded")
	var names []string
	for _, p := range res.Installed {
		names = append(names, p.Name)
		assert.FileExists(t, filepath.Join(cache, p.Filename), "%s is in the cache", p.Name)
	}
	assert.Subset(t, names, later)
	assert.NotContains(t, names, "bash", "what the root has is not fetched again")
	assert.Equal(t, before, localPackages(t, root), "Download installs nothing")
	assert.NoFileExists(t, filepath.Join(root, "var/lib/pacman/db.lck"), "the database is unlocked")

	rec = &recorder{}
	res, err = installer(t, cfg, rec).Install(t.Context(), root, later)
	require.NoError(t, err)
	n, files = rec.packageBytes()
	assert.Zero(t, n, "the install after Download downloads no package")
	assert.Zero(t, files)
	assert.Len(t, res.Installed, len(names), "it installs what Download planned")
}

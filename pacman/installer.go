package pacman

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/paczfs/paczfs/hooks"
	"github.com/paczfs/paczfs/internal/alpm"
	"github.com/paczfs/paczfs/internal/chroot"
	"github.com/paczfs/paczfs/internal/fsx"
)

// Errors callers branch on; each message says what to check.
var (
	// ErrUnavailable: this build has no libalpm (CGO_ENABLED=0 or no
	// libalpm headers when it was built).
	ErrUnavailable = alpm.ErrUnavailable
	// ErrNotFound: a requested package, group or provision exists in no
	// repository. The error names it.
	ErrNotFound = errors.New("package not found")
	// ErrDependencies: dependencies cannot be satisfied, or packages
	// conflict. The error names them.
	ErrDependencies = errors.New("unsatisfiable dependencies")
	// ErrFileConflicts: files of the new packages exist already.
	ErrFileConflicts = errors.New("file conflicts")
	// ErrSignature: a package or database has a missing or bad signature,
	// or one made by a key the target's keyring does not trust.
	ErrSignature = errors.New("invalid or missing signature")
	// ErrIntegrity: a package file does not match its database checksum
	// (damaged or tampered with). The error names the file.
	ErrIntegrity = errors.New("corrupted package")
	// ErrLocked: the root's pacman database is locked (db.lck exists).
	ErrLocked = errors.New("pacman database is locked")
	// ErrDownload: a file could not be downloaded; see the DownloadError.
	ErrDownload = errors.New("download failed")
	// ErrNoFileLists: a repository offers no files database (<repo>.files,
	// what pacman -F reads), so what its packages hold cannot be known
	// before they are installed.
	ErrNoFileLists = errors.New("repository offers no file lists")
)

// Installer installs packages into roots with libalpm. It holds only
// configuration; each Plan or Install has its own libalpm handle, so one
// Installer may serve several builds at once.
type Installer struct {
	cfg     Config
	log     *slog.Logger
	run     hooks.Runner
	emit    func(Event)
	client  *http.Client
	scratch string
	retry   []time.Duration
}

// RefreshWaits are the waits before each new try of a database refresh
// whose download of a repository with Repo.RefreshRetries failed; past
// the last, the last again.
func RefreshWaits() []time.Duration {
	return []time.Duration{5 * time.Second, 15 * time.Second, 40 * time.Second, 60 * time.Second}
}

// Option configures an Installer.
type Option func(*Installer)

// WithLogger sets the logger (the default discards).
func WithLogger(l *slog.Logger) Option { return func(i *Installer) { i.log = l } }

// WithRunner sets the runner for external commands (pacman-key, gpgconf).
func WithRunner(r hooks.Runner) Option { return func(i *Installer) { i.run = r } }

// WithEvents receives structured progress events. Each WithEvents adds a
// receiver; none replaces another (image.Builder's progress keeps working
// beside a caller's own).
func WithEvents(fn func(Event)) Option {
	return func(i *Installer) {
		if fn == nil {
			return
		}
		prev := i.emit
		if prev == nil {
			i.emit = fn
			return
		}
		i.emit = func(e Event) { prev(e); fn(e) }
	}
}

// WithHTTPClient replaces the download client (NewHTTPClient()).
func WithHTTPClient(c *http.Client) Option { return func(i *Installer) { i.client = c } }

// WithRefreshWaits replaces RefreshWaits (tests wait less). How many
// tries there are is each repository's RefreshRetries.
func WithRefreshWaits(waits ...time.Duration) Option {
	return func(i *Installer) { i.retry = slices.Clone(waits) }
}

// WithScratchDir sets where Plan keeps its temporary database (os.TempDir()).
func WithScratchDir(dir string) Option { return func(i *Installer) { i.scratch = dir } }

// New validates cfg and returns an Installer.
func New(cfg Config, opts ...Option) (*Installer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	in := &Installer{cfg: cfg, log: slog.New(slog.DiscardHandler), emit: func(Event) {}, retry: RefreshWaits()}
	for _, o := range opts {
		o(in)
	}
	if in.run == nil {
		in.run = &hooks.ExecRunner{Logger: in.log}
	}
	if in.client == nil {
		in.client = NewHTTPClient()
	}
	return in, nil
}

// Config returns the installer's configuration.
func (in *Installer) Config() Config { return in.cfg }

// PlannedPackage is one package a plan installs.
type PlannedPackage struct {
	Name, Version, Repo, Filename string
	DownloadSize, InstalledSize   int64
	// SHA256 is the package file's checksum in the sync database: a
	// package rebuilt at the same version has another. Empty when the
	// database has none.
	SHA256 string `json:",omitempty"`
}

// Plan is the resolved package set.
type Plan struct {
	Packages      []PlannedPackage
	DownloadSize  int64 // bytes, counting what the caches hold already as 0
	InstalledSize int64
}

// Names returns the planned package names.
func (p *Plan) Names() []string {
	var n []string
	for _, q := range p.Packages {
		n = append(n, q.Name)
	}
	return n
}

// Plan resolves names (packages, groups, provisions, "name>=version") to
// the full package set with versions and sizes, without touching any
// target: it works in a scratch database. An unknown name or an
// unsatisfiable dependency is an error naming it. Signatures are not
// checked here (there is no keyring yet); Install checks everything.
func (in *Installer) Plan(ctx context.Context, names []string) (*Plan, error) {
	if len(names) == 0 {
		return &Plan{}, nil
	}
	if !alpm.Available {
		return nil, ErrUnavailable
	}
	var plan *Plan
	err := in.inScratch(ctx, "", func(s *session) error {
		pkgs, err := s.resolve(names)
		if err != nil {
			return err
		}
		s.h.Release()
		plan = toPlan(pkgs)
		return nil
	})
	return plan, err
}

// inScratch opens the sync databases (of filesRepo's file lists only,
// when set) in a scratch directory, on a thread of their own, and runs
// fn there: Plan, Files and Lookup read, and touch no target.
func (in *Installer) inScratch(ctx context.Context, filesRepo string, fn func(*session) error) error {
	scratch, err := os.MkdirTemp(in.scratch, "paczfs-scratch-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(scratch)
	dbpath := filepath.Join(scratch, "var/lib/pacman")
	if err := fsx.Mkdir(dbpath, 0o755); err != nil {
		return err
	}
	return onOwnThread(func() error {
		s, err := in.open(ctx, scratch, dbpath, sigNone, true, filesRepo)
		if err != nil {
			return err
		}
		defer s.close()
		return fn(s)
	})
}

// SyncPackage is a package as the sync databases describe it.
type SyncPackage struct {
	Name, Version, Repo string
	// Depends are its dependencies as pacman writes them: a name, a
	// provision, or a name with a version constraint ("linux-lts=6.12.41-1").
	Depends []string
}

// Lookup reads names from the sync databases (the first repository that
// has each, as pacman -S picks), without resolving anything: how a
// package's dependencies compare with what the repositories offer. Names
// no repository has are left out of the map.
func (in *Installer) Lookup(ctx context.Context, names []string) (map[string]SyncPackage, error) {
	if !alpm.Available {
		return nil, ErrUnavailable
	}
	out := map[string]SyncPackage{}
	err := in.inScratch(ctx, "", func(s *session) error {
		for _, n := range names {
			if p, deps, ok := s.h.SyncPackage(n); ok {
				out[n] = SyncPackage{Name: p.Name, Version: p.Version, Repo: p.Repo, Depends: deps}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Files returns the paths each named package of repo installs (relative
// to the root; directories end in "/"), read from the repository's files
// database in a scratch directory as Plan reads its database: no target
// is touched. Only that repository's file lists are fetched (Arch's core
// is about 1 MB, extra tens). A repository without them gives
// ErrNoFileLists; a name repo does not have is left out of the map.
func (in *Installer) Files(ctx context.Context, repo string, names []string) (map[string][]string, error) {
	if !alpm.Available {
		return nil, ErrUnavailable
	}
	if !slices.ContainsFunc(in.cfg.Repos, func(r Repo) bool { return r.Name == repo }) {
		return nil, fmt.Errorf("file lists: %q is not a configured repository", repo)
	}
	out := map[string][]string{}
	err := in.inScratch(ctx, repo, func(s *session) error {
		for _, n := range names {
			if files, ok := s.h.Files(repo, n); ok {
				out[n] = files
			}
		}
		return nil
	})
	if errors.Is(err, ErrDownload) {
		return nil, fmt.Errorf("%s: %w: %w", repo, ErrNoFileLists, err)
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}

// planned is what a plan says of a package libalpm resolved.
func planned(q alpm.Package) PlannedPackage {
	return PlannedPackage{Name: q.Name, Version: q.Version, Repo: q.Repo, Filename: q.Filename,
		DownloadSize: q.DownloadSize, InstalledSize: q.InstalledSize, SHA256: q.SHA256}
}

func toPlan(pkgs []alpm.Package) *Plan {
	p := &Plan{}
	for _, q := range pkgs {
		p.Packages = append(p.Packages, planned(q))
		p.DownloadSize += q.DownloadSize
		p.InstalledSize += q.InstalledSize
	}
	return p
}

// Result reports an install.
type Result struct {
	Installed  []PlannedPackage
	Downloaded int64 // bytes transferred, databases included
	Took       time.Duration
	// Warnings are libalpm's error and warning lines that did not fail the
	// transaction (pacman prints them and goes on): a failed scriptlet
	// shows up here.
	Warnings []string
	// DirModes are the directories that existed before the install (paths
	// relative to root) whose package declares another mode: libalpm
	// keeps an existing directory's mode and warns. A caller that made
	// such a directory itself, as a dataset's mount point, gives it this
	// mode (the filesystem package's /root is 0750 on Arch).
	DirModes map[string]os.FileMode
}

// Install refreshes the sync databases and installs names, with their
// dependencies, into root: a directory (the mounted root dataset) that
// gets var/lib/pacman, its cache, and the keyring that InitKeyring made.
// Scriptlets and hooks run chrooted in root with /proc, /sys, /dev and
// /run mounted there privately: the mounts live in a mount namespace of
// the installing thread only, never seen by the host, and go with it.
// Cancelling ctx stops downloads at once and a commit between packages.
func (in *Installer) Install(ctx context.Context, root string, names []string) (*Result, error) {
	if !alpm.Available {
		return nil, ErrUnavailable
	}
	start := time.Now()
	root, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	// Made before the first package (which owns /etc, /var...) with 0755
	// whatever the caller's umask; then given the modes their packages
	// declare, like the API mount points.
	var made []string
	for _, d := range []string{"var/lib/pacman", "var/cache/pacman/pkg", "var/log", "etc/pacman.d/hooks"} {
		dirs, err := fsx.MkdirAll(filepath.Join(root, d), 0o755)
		if err != nil {
			return nil, fmt.Errorf("install into %s: %w", root, err)
		}
		made = append(made, dirs...)
	}
	res := &Result{}
	err = onInstallThread(in.log, func() (err error) {
		unmount, created, err := mountAPI(root, in.log)
		if err != nil {
			return err
		}
		created = append(created, made...)
		var s *session
		defer func() {
			err = errors.Join(err, unmount())
			if s != nil {
				err = errors.Join(err, s.fixModes(created))
			}
		}()
		dbpath := filepath.Join(root, "var/lib/pacman")
		s, err = in.open(ctx, root, dbpath, sigPaczfs, false, "")
		if err != nil {
			return err
		}
		var downloaded int64 // by a session closed before the commit
		defer func() {
			if s == nil { // the second session did not open
				res.Downloaded = downloaded
				return
			}
			res.Downloaded = downloaded + s.fetch.bytes.Load()
			res.Warnings = s.warnings
			res.DirModes = s.relativeDirModes(root)
			s.close()
		}()
		pkgs, err := s.resolve(names)
		if err != nil {
			return err
		}
		if err := s.prefetch(pkgs); err != nil {
			s.h.Release()
			return err
		}
		// libalpm computed download sizes before the files were cached, and
		// would fetch everything again: prepare afresh (in memory, quick).
		s.h.Release()
		if pkgs, err = s.resolve(names); err != nil {
			return err
		}
		signed, err := s.checkSignatures(pkgs)
		if errors.Is(err, errSigSlowPath) {
			var n int64
			s, n, err = in.toLibalpm(ctx, s, root, dbpath, err)
			if downloaded += n; err != nil {
				return err
			}
			if pkgs, err = s.resolve(names); err != nil {
				return err
			}
		} else if err != nil {
			s.h.Release()
			return err
		}
		stop := context.AfterFunc(ctx, s.h.Interrupt)
		defer stop()
		if err := s.h.Commit(); err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("install: %w (%v)", ctx.Err(), err)
			}
			return s.classify(err)
		}
		for _, p := range s.h.Installed() {
			for _, q := range pkgs {
				if p.Name == q.Name {
					res.Installed = append(res.Installed, planned(q))
				}
			}
		}
		return recordSignatures(dbpath, signed)
	})
	res.Took = time.Since(start)
	return res, err
}

// Download fetches into the first cache directory (Config.CacheDirs, or
// root's own cache without them) the packages an Install of names into
// root would fetch, and installs nothing: root's package database is
// read, never changed (its sync databases are refreshed, as Install
// refreshes them). Signatures and checksums are the Install's to check:
// a file Download left that does not pass is refused there. It lets a
// caller fetch a later install's packages while other work runs; an
// Install that finds them cached downloads nothing. Result.Installed
// lists what the install would install; Downloaded counts bytes moved.
func (in *Installer) Download(ctx context.Context, root string, names []string) (*Result, error) {
	if !alpm.Available {
		return nil, ErrUnavailable
	}
	start := time.Now()
	root, err := installedRoot("download for", root)
	if err != nil {
		return nil, err
	}
	res := &Result{}
	err = onInstallThread(in.log, func() error {
		s, err := in.open(ctx, root, filepath.Join(root, "var/lib/pacman"), sigPaczfs, false, "")
		if err != nil {
			return err
		}
		defer func() {
			res.Downloaded = s.fetch.bytes.Load()
			res.Warnings = s.warnings
			s.close()
		}()
		pkgs, err := s.resolve(names)
		if err != nil {
			return err
		}
		defer s.h.Release()
		for _, p := range pkgs {
			res.Installed = append(res.Installed, planned(p))
		}
		return s.prefetch(pkgs)
	})
	res.Took = time.Since(start)
	return res, err
}

// installedRoot returns root made absolute, or an error (op names the
// call) when it holds no installed system's package database.
func installedRoot(op, root string) (string, error) {
	root, err := filepath.Abs(root)
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(filepath.Join(root, "var/lib/pacman/local")); err != nil {
		return "", fmt.Errorf("%s %s: no installed system (var/lib/pacman/local): %w", op, root, err)
	}
	return root, nil
}

// SyncResult reports a Sync.
type SyncResult struct {
	Result
	// Removed are the packages Sync removed: those installed by name
	// that the new set does not name, and the dependencies nothing needs
	// any more.
	Removed []PlannedPackage
}

// Sync brings root's installed packages to the set names describes, as
// one release derived from the previous one does: it installs what is
// missing and upgrades every package that has a newer version (pacman
// -Syu), then removes the packages installed by name that names no
// longer covers, with the dependencies nothing needs any more (pacman
// -Rs), and the orphans the upgrade left (pacman -Qdtq | pacman -Rs -).
// root holds an installed system (Install's, with its keyring); its
// scriptlets and hooks run as Install's do.
func (in *Installer) Sync(ctx context.Context, root string, names []string) (*SyncResult, error) {
	if !alpm.Available {
		return nil, ErrUnavailable
	}
	start := time.Now()
	root, err := installedRoot("sync", root)
	if err != nil {
		return nil, err
	}
	res := &SyncResult{}
	err = onInstallThread(in.log, func() (err error) {
		unmount, _, err := mountAPI(root, in.log)
		if err != nil {
			return err
		}
		defer func() { err = errors.Join(err, unmount()) }()
		dbpath := filepath.Join(root, "var/lib/pacman")
		s, err := in.open(ctx, root, dbpath, sigPaczfs, false, "")
		if err != nil {
			return err
		}
		var downloaded int64 // by a session closed before the commit
		defer func() {
			if s == nil { // the second session did not open
				res.Downloaded = downloaded
				return
			}
			res.Downloaded, res.Warnings = downloaded+s.fetch.bytes.Load(), s.warnings
			s.close()
		}()
		// 1. Install and upgrade (nothing to do is no transaction).
		var signed []alpm.Package // whose signatures paczfs checked
		pkgs, err := s.h.PrepareUpgrade(names, alpm.TransNeeded)
		if err != nil {
			return s.classify(err)
		}
		if len(pkgs) > 0 {
			if err := s.prefetch(pkgs); err != nil {
				s.h.Release()
				return err
			}
			s.h.Release()
			if pkgs, err = s.h.PrepareUpgrade(names, alpm.TransNeeded); err != nil {
				return s.classify(err)
			}
			if signed, err = s.checkSignatures(pkgs); errors.Is(err, errSigSlowPath) {
				var n int64
				s, n, err = in.toLibalpm(ctx, s, root, dbpath, err)
				if downloaded += n; err != nil {
					return err
				}
				if pkgs, err = s.h.PrepareUpgrade(names, alpm.TransNeeded); err != nil {
					return s.classify(err)
				}
			} else if err != nil {
				s.h.Release()
				return err
			}
		} else {
			s.h.Release()
		}
		stop := context.AfterFunc(ctx, s.h.Interrupt)
		defer stop()
		commit := func(what string) error {
			if err := s.h.Commit(); err != nil {
				if ctx.Err() != nil {
					return fmt.Errorf("sync: %s: %w (%v)", what, ctx.Err(), err)
				}
				return s.classify(err)
			}
			return nil
		}
		if len(pkgs) > 0 {
			if err := commit("install"); err != nil {
				return err
			}
			res.Installed = append(res.Installed, toPlan(pkgs).Packages...)
			if err := recordSignatures(dbpath, signed); err != nil {
				return err
			}
		}
		// 2. What the set no longer covers: packages no name is satisfied
		// by (nor a named group has) that nothing installed needs, in
		// passes from the leaves (what a removed package needed is
		// removed by the next pass, or with it when it was a dependency).
		keep := map[string]bool{}
		for _, n := range names {
			if p := s.h.Satisfier(n); p != "" {
				keep[p] = true
			}
			for _, m := range s.h.GroupMembers(n) {
				keep[m] = true
			}
		}
		for pass := 0; pass < 100; pass++ {
			var drop []string
			for _, p := range s.h.Local() {
				if !keep[p.Name] && !p.Required {
					drop = append(drop, p.Name)
				}
			}
			if len(drop) == 0 {
				return nil
			}
			gone, err := s.h.PrepareRemove(drop, alpm.TransRecurse)
			if err != nil {
				return s.classify(err)
			}
			if err := commit("remove"); err != nil {
				return err
			}
			res.Removed = append(res.Removed, toPlan(gone).Packages...)
		}
		return errors.New("sync: removals did not settle in 100 passes")
	})
	res.Took = time.Since(start)
	return res, err
}

// session is one libalpm handle at work.
type session struct {
	in      *Installer
	ctx     context.Context
	h       *alpm.Handle
	fetch   *fetcher
	cache   []string
	repos   map[string]Repo
	rootDir string
	dbext   string // ".db", or ".files" for file lists
	release func() // the process-wide libalpm lock (see alpm.AcquireGPGDir)
	// pkgLevels, in a sigPaczfs session, are the package signature bits
	// of each repository, which libalpm was not given: checkSignatures
	// applies them.
	pkgLevels map[string]int
	gpgdir    string                 // the stable link libalpm's gpgme uses
	dirModes  map[string]os.FileMode // from libalpm's "directory permissions differ" warnings
	mu        sync.Mutex
	warnings  []string
	errs      []string
}

func (in *Installer) cacheDirs(root string) []string {
	if len(in.cfg.CacheDirs) > 0 {
		return in.cfg.CacheDirs
	}
	return []string{filepath.Join(root, "var/cache/pacman/pkg")}
}

// sigMode says who checks signatures in a session.
type sigMode int

const (
	sigNone    sigMode = iota // nothing is checked (plans, in a scratch directory)
	sigLibalpm                // libalpm checks databases and packages
	sigPaczfs                 // libalpm checks databases; packages are checkSignatures's first (sigcheck.go)
)

// toLibalpm closes s, whose package signatures paczfs's check did not
// pass (why), and opens the session in which libalpm checks them itself,
// given the package levels (the files are in the cache now). It returns
// the new session (nil when it did not open) and the bytes s downloaded.
func (in *Installer) toLibalpm(ctx context.Context, s *session, root, dbpath string, why error) (*session, int64, error) {
	in.log.Info("package signatures left to libalpm", "why", why)
	s.h.Release()
	n := s.fetch.bytes.Load()
	s.close()
	ns, err := in.open(ctx, root, dbpath, sigLibalpm, false, "")
	return ns, n, err
}

// open starts a libalpm session on root, checking signatures with the
// target's keyring as mode says; plan mode writes only dbpath.
// filesRepo, when set, registers only that repository, with its files
// database (.files) instead of .db.
func (in *Installer) open(ctx context.Context, root, dbpath string, mode sigMode, plan bool, filesRepo string) (*session, error) {
	verify := mode != sigNone
	s := &session{in: in, ctx: ctx, repos: map[string]Repo{}, rootDir: root, dbext: ".db"}
	s.fetch = newFetcher(ctx, in.client, in.emit)
	level, err := alpm.ParseSigLevel(in.cfg.SigLevel, alpm.DefaultSigLevel)
	if err != nil {
		return nil, err
	}
	local := level
	if in.cfg.LocalFileSigLevel != "" {
		if local, err = alpm.ParseSigLevel(in.cfg.LocalFileSigLevel, level); err != nil {
			return nil, err
		}
	}
	if !verify {
		level, local = 0, 0
	}
	// The package bits libalpm is given: none when paczfs checks the
	// packages itself, the levels kept for that check.
	const pkgBits = alpm.SigPackage | alpm.SigPackageOptional | alpm.SigPackageMarginalOK | alpm.SigPackageUnknownOK
	alpmLevel := func(l int) int { return l }
	if mode == sigPaczfs {
		s.pkgLevels = map[string]int{}
		alpmLevel = func(l int) int { return l &^ pkgBits }
	}
	s.cache = in.cacheDirs(root)
	if plan {
		s.cache = []string{filepath.Join(root, "cache")}
	}
	for _, d := range s.cache {
		if err := fsx.Mkdir(d, 0o755); err != nil {
			return nil, err
		}
	}
	gpgdir, release, err := alpm.AcquireGPGDir(GPGDir(root))
	if err != nil {
		return nil, err
	}
	s.release, s.gpgdir = release, gpgdir
	o := alpm.Options{
		Root: root, DBPath: dbpath, CacheDirs: s.cache,
		GPGDir:             gpgdir,
		Architecture:       in.cfg.Architecture,
		SigLevel:           alpmLevel(level),
		LocalFileSigLevel:  local,
		RemoteFileSigLevel: level, // URLs are libalpm's to check, whatever the mode
		ParallelDownloads:  in.cfg.ParallelDownloads,
		IgnorePkgs:         in.cfg.IgnorePkgs,
		NoExtract:          in.cfg.NoExtract,
		// Scriptlets, hooks and gpg get the environment chrooted commands
		// get, never the build host's (LANG, TZ, HOME, PATH order...).
		ChildEnv: chroot.Environ(),
	}
	if filesRepo != "" {
		o.DBExt, s.dbext = ".files", ".files"
	}
	if !plan {
		o.LogFile = filepath.Join(root, "var/log/pacman.log")
		o.HookDirs = []string{filepath.Join(root, "etc/pacman.d/hooks")}
	}
	h, err := alpm.Open(o, s)
	if err != nil {
		release()
		return nil, fmt.Errorf("libalpm %s: %w", root, err)
	}
	s.h = h
	closeAll := func() { h.Close(); release() }
	// Downloads are ours (Fetch); libalpm's own sandboxed downloader is
	// never used, so its sandbox user does not apply to the build.
	if err := h.SetSandbox(""); err != nil && !errors.Is(err, errors.ErrUnsupported) {
		closeAll()
		return nil, err
	}
	for _, r := range in.cfg.Repos {
		if filesRepo != "" && r.Name != filesRepo {
			continue
		}
		rl := alpm.SigUseDefault
		if r.SigLevel != "" && verify {
			if rl, err = alpm.ParseSigLevel(r.SigLevel, level); err != nil {
				closeAll()
				return nil, err
			}
		}
		if s.pkgLevels != nil {
			if rl == alpm.SigUseDefault {
				s.pkgLevels[r.Name] = level & pkgBits
			} else {
				s.pkgLevels[r.Name] = rl & pkgBits
				rl = alpmLevel(rl)
			}
		}
		var servers []string
		for _, sv := range r.Servers {
			servers = append(servers, ExpandServer(sv, r.Name, in.cfg.Architecture))
		}
		s.repos[r.Name] = r
		if err := h.RegisterRepo(r.Name, rl, servers); err != nil {
			closeAll()
			return nil, err
		}
	}
	if err := ctx.Err(); err != nil {
		closeAll()
		return nil, err
	}
	if err := s.refresh(); err != nil {
		closeAll()
		return nil, err
	}
	return s, nil
}

// refresh updates the sync databases. While the failure is the download
// of a repository's database (not a signature, not a cancellation) and
// that repository has RefreshRetries left, it waits and tries again,
// naming the repository each time. A files database (Files) is never
// waited for: without one, the locale check only warns.
func (s *session) refresh() error {
	for try := 0; ; try++ {
		err := s.h.UpdateDBs(false)
		if err == nil {
			return nil
		}
		err = s.dbError(err)
		var de *DownloadError
		if !errors.Is(err, ErrDownload) || errors.Is(err, ErrSignature) || s.ctx.Err() != nil || !errors.As(err, &de) ||
			s.dbext != ".db" || try >= s.repos[de.Repo].RefreshRetries || len(s.in.retry) == 0 {
			return err
		}
		wait := s.in.retry[min(try, len(s.in.retry)-1)]
		msg := fmt.Sprintf("repository %s: database not available (%v); trying again in %v (%d of %d)", de.Repo, de.Err, wait, try+1, s.repos[de.Repo].RefreshRetries)
		s.in.log.Warn(msg)
		s.in.emit(Event{Kind: EventLog, Level: "warning", Repo: de.Repo, URL: de.URL, Message: msg})
		t := time.NewTimer(wait)
		select {
		case <-s.ctx.Done():
			t.Stop()
			return fmt.Errorf("refresh databases: %w (%w)", s.ctx.Err(), err)
		case <-t.C:
		}
		s.fetch.forget()
	}
}

func (s *session) close() {
	s.h.Close()
	// gpgme's gpg (2.4) starts keyboxd or gpg-agent for the keyring and
	// leaves them running, holding files of the root open: the pool would
	// not export. Stop them while the link still points at this root.
	if s.gpgdir != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if _, err := s.in.run.Run(ctx, hooks.Cmd{Args: []string{"gpgconf", "--homedir", s.gpgdir, "--kill", "all"}}); err != nil {
			s.in.log.Warn("stop gnupg daemons", "keyring", s.rootDir, "err", err)
		}
		cancel()
	}
	s.release()
}

// dbError turns a failed database refresh into one naming the repository
// and URL, from what Fetch recorded.
func (s *session) dbError(err error) error {
	if s.ctx.Err() != nil {
		return fmt.Errorf("refresh databases: %w", s.ctx.Err())
	}
	for _, r := range s.in.cfg.Repos {
		if _, ok := s.repos[r.Name]; !ok {
			continue
		}
		for _, sv := range r.Servers {
			u := ExpandServer(sv, r.Name, s.in.cfg.Architecture) + "/" + r.Name + s.dbext
			if ferr := s.fetch.lastError(u); ferr != nil {
				return fmt.Errorf("refresh databases: %w: %w", ErrDownload, &DownloadError{Repo: r.Name, URL: u, Err: ferr})
			}
			if ferr := s.fetch.lastError(u + ".sig"); ferr != nil {
				derr := &DownloadError{Repo: r.Name, URL: u + ".sig", Err: ferr}
				if errors.Is(ferr, errNotFound) {
					return fmt.Errorf("refresh databases: %w: the database of %s is not signed and its SigLevel requires a signature: %w", ErrSignature, r.Name, derr)
				}
				return fmt.Errorf("refresh databases: %w: %w", ErrDownload, derr)
			}
		}
	}
	return s.classify(fmt.Errorf("refresh databases: %w", err))
}

func (s *session) resolve(names []string) ([]alpm.Package, error) {
	pkgs, err := s.h.Prepare(names, alpm.TransNeeded)
	if err != nil {
		return nil, s.classify(err)
	}
	return pkgs, nil
}

// classify wraps libalpm errors with the sentinel callers branch on, and
// adds the libalpm error lines logged meanwhile (they name files and keys).
func (s *session) classify(err error) error {
	var ae *alpm.Error
	if !errors.As(err, &ae) {
		return err
	}
	s.mu.Lock()
	logged := strings.Join(s.errs, "; ")
	s.mu.Unlock()
	if logged != "" {
		err = fmt.Errorf("%w (libalpm: %s)", err, logged)
	}
	switch ae.Code {
	case alpm.ErrCodePkgNotFound:
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	case alpm.ErrCodeUnsatisfiedDeps, alpm.ErrCodeConflictingDeps:
		return fmt.Errorf("%w: %w", ErrDependencies, err)
	case alpm.ErrCodeFileConflicts:
		return fmt.Errorf("%w: %w", ErrFileConflicts, err)
	case alpm.ErrCodePkgInvalidSig, alpm.ErrCodeDBInvalidSig, alpm.ErrCodeSigMissing, alpm.ErrCodeSigInvalid:
		return fmt.Errorf("%w: %w", ErrSignature, err)
	case alpm.ErrCodePkgInvalidChecksum, alpm.ErrCodePkgInvalid:
		return fmt.Errorf("%w: %w", ErrIntegrity, err)
	case alpm.ErrCodeHandleLock:
		return fmt.Errorf("%w: %w: if no other pacman or paczfs works on this root, remove %s", ErrLocked, err,
			filepath.Join(s.rootDir, "var/lib/pacman/db.lck"))
	case alpm.ErrCodeRetrieve, alpm.ErrCodeExternalDownload:
		return fmt.Errorf("%w: %w", ErrDownload, err)
	}
	// libalpm's words for a signature it refused: "signature from ... is
	// invalid", "PGP signature", "key ... is unknown" or "disabled", and
	// for a key it could not import, "required key missing from keyring".
	lower := strings.ToLower(logged)
	for _, w := range []string{"signature", "pgp", "keyring", `key "`} {
		if strings.Contains(lower, w) {
			return fmt.Errorf("%w: %w", ErrSignature, err)
		}
	}
	return err
}

// prefetch downloads what the cache lacks, in parallel.
func (s *session) prefetch(pkgs []alpm.Package) error {
	level, _ := alpm.ParseSigLevel(s.in.cfg.SigLevel, alpm.DefaultSigLevel)
	var jobs []downloadJob
	for _, p := range pkgs {
		r := s.repos[p.Repo]
		rl := level
		if r.SigLevel != "" {
			rl, _ = alpm.ParseSigLevel(r.SigLevel, level)
		}
		if p.DownloadSize == 0 && s.cached(p.Filename, rl&alpm.SigPackage != 0) {
			continue
		}
		j := downloadJob{file: p.Filename, repo: p.Repo, sig: rl&alpm.SigPackage != 0, sigOpt: rl&alpm.SigPackageOptional != 0}
		for _, sv := range r.Servers {
			j.urls = append(j.urls, ExpandServer(sv, r.Name, s.in.cfg.Architecture)+"/"+p.Filename)
		}
		jobs = append(jobs, j)
	}
	if len(jobs) == 0 {
		return nil
	}
	if err := s.fetch.prefetch(jobs, s.cache[0], s.in.cfg.ParallelDownloads); err != nil {
		if s.ctx.Err() != nil {
			return fmt.Errorf("download packages: %w", s.ctx.Err())
		}
		return fmt.Errorf("download packages: %w: %w", ErrDownload, err)
	}
	return nil
}

func (s *session) cached(file string, sig bool) bool {
	for _, d := range s.cache {
		if _, err := os.Stat(filepath.Join(d, file)); err == nil {
			if !sig {
				return true
			}
			if _, err := os.Stat(filepath.Join(d, file+".sig")); err == nil {
				return true
			}
		}
	}
	return false
}

// relativeDirModes returns dirModes under root, relative to it.
func (s *session) relativeDirModes(root string) map[string]os.FileMode {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out map[string]os.FileMode
	for p, m := range s.dirModes {
		rel, err := filepath.Rel(root, p)
		if err != nil || !filepath.IsLocal(rel) {
			continue
		}
		if out == nil {
			out = map[string]os.FileMode{}
		}
		out[rel] = m
	}
	return out
}

// The alpm.Callbacks of a session.

var permsDiffer = regexp.MustCompile(`directory permissions differ on (.+?)/?\nfilesystem: ([0-7]+)\s+package: ([0-7]+)`)

// fixModes gives the mount points paczfs created the modes their package
// declares (libalpm leaves an existing directory's mode and warns).
func (s *session) fixModes(created []string) error {
	var errs []error
	for _, d := range created {
		if m, ok := s.dirModes[filepath.Clean(d)]; ok {
			if err := os.Chmod(d, m); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

func (s *session) Log(level int, msg string) {
	if m := permsDiffer.FindStringSubmatch(msg); m != nil {
		if mode, err := strconv.ParseUint(m[3], 8, 32); err == nil {
			s.mu.Lock()
			if s.dirModes == nil {
				s.dirModes = map[string]os.FileMode{}
			}
			// Octal st_mode bits: keep permissions and the sticky bit.
			fm := os.FileMode(mode & 0o777)
			if mode&0o1000 != 0 {
				fm |= os.ModeSticky
			}
			s.dirModes[filepath.Clean(m[1])] = fm
			s.mu.Unlock()
		}
	}
	msg = strings.TrimRight(msg, "\n")
	switch {
	case level&alpm.LogError != 0:
		s.mu.Lock()
		s.errs = append(s.errs, msg)
		s.warnings = append(s.warnings, "error: "+msg)
		s.mu.Unlock()
		s.in.log.Error("libalpm", "msg", msg)
		s.in.emit(Event{Kind: EventLog, Level: "error", Message: msg})
	case level&alpm.LogWarning != 0:
		s.mu.Lock()
		s.warnings = append(s.warnings, "warning: "+msg)
		s.mu.Unlock()
		s.in.log.Warn("libalpm", "msg", msg)
		s.in.emit(Event{Kind: EventLog, Level: "warning", Message: msg})
	default:
		s.in.log.Debug("libalpm", "msg", msg)
	}
}

func (s *session) Event(e alpm.Event) {
	switch e.Type {
	case alpm.EventScriptletInfo:
		line := strings.TrimRight(e.A, "\n")
		s.in.log.Info("scriptlet", "line", line)
		s.in.emit(Event{Kind: EventScriptlet, Message: line})
	case alpm.EventPackageOperationDone:
		s.in.emit(Event{Kind: EventInstalled, Package: e.A, Version: e.B})
	case alpm.EventHookRunStart:
		s.in.log.Info("hook", "name", e.A, "desc", e.B)
		s.in.emit(Event{Kind: EventHook, Package: e.A, Message: e.B, Current: int(e.N1), Count: int(e.N2)})
	}
}

func (s *session) Progress(kind int, pkg string, percent, howmany, current int) {
	if phase := alpm.ProgressKind(kind).CheckPhase(); phase != "" {
		s.in.emit(Event{Kind: EventCheck, Message: phase, Percent: percent, Current: current, Count: howmany})
		return
	}
	if pkg == "" {
		return
	}
	s.in.emit(Event{Kind: EventInstall, Package: pkg, Percent: percent, Current: current, Count: howmany})
}

func (s *session) Download(string, int, int64, int64) {}

func (s *session) Fetch(url, localpath string, force bool) int {
	rc := s.fetch.Fetch(url, localpath, force)
	base := path.Base(url)
	if strings.HasSuffix(base, ".db") || strings.HasSuffix(base, ".db.sig") {
		repo := strings.TrimSuffix(strings.TrimSuffix(base, ".sig"), ".db")
		s.in.emit(Event{Kind: EventDatabase, Repo: repo, URL: url})
	}
	return rc
}

func (s *session) Question(kind int, what string) {
	s.in.log.Info("libalpm question answered", "type", kind, "about", what)
	if kind == alpm.QuestionCorruptedPkg {
		// libalpm reports the file only here; it is deleted from the cache.
		s.mu.Lock()
		s.errs = append(s.errs, what+" is invalid or corrupted (deleted from the cache)")
		s.mu.Unlock()
	}
}

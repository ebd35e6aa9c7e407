package image

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/paczfs/paczfs/cleanup"
	"github.com/paczfs/paczfs/disk"
	"github.com/paczfs/paczfs/hooks"
	"github.com/paczfs/paczfs/pacman"
	"github.com/paczfs/paczfs/release"
)

// Version is paczfs's version, recorded in every image (/etc/paczfs/version).
const Version = "0.2.0"

// Errors a caller can test with errors.Is.
var (
	// ErrStageConflict: two hooks replace the same stage.
	ErrStageConflict = errors.New("two hooks replace the same stage")
	// ErrHook: a hook is misdeclared (unknown stage or position).
	ErrHook = errors.New("bad hook")
	// ErrPanic: stage or hook code panicked; the build was released as
	// after any failure. Please report it: it is a bug (ours, or a hook's).
	ErrPanic = errors.New("panic")
)

// StageError is a failure at a stage, by the stage itself or by one of its
// hooks (Hook names it).
type StageError struct {
	Stage hooks.Stage
	Hook  string
	Err   error
}

func (e *StageError) Error() string {
	if e.Hook != "" {
		return fmt.Sprintf("stage %s: hook %s: %v", e.Stage, e.Hook, e.Err)
	}
	return fmt.Sprintf("stage %s: %v", e.Stage, e.Err)
}

func (e *StageError) Unwrap() error { return e.Err }

// ProgressKind says what a Progress report is.
type ProgressKind string

// Progress kinds.
const (
	StageStarted  ProgressKind = "stage-started"
	StageFinished ProgressKind = "stage-finished"
	PackageEvent  ProgressKind = "package"
	Message       ProgressKind = "message"
)

// Progress is one report to the WithProgress callback.
type Progress struct {
	Kind    ProgressKind
	Stage   hooks.Stage
	Message string
	Took    time.Duration // StageFinished
	Package *pacman.Event // PackageEvent
}

// StageTiming is how long one stage took, and what ran in it.
type StageTiming struct {
	Stage    hooks.Stage
	Took     time.Duration
	Replaced string   // the hook that replaced the stage, if any
	Hooks    []string // hooks that ran before and after it
}

// Result is what a build produced.
type Result struct {
	// Disk is the raw image file or the block device that was written.
	Disk    string
	Outputs []Output
	Stages  []StageTiming
	Took    time.Duration
	// Packages installed, in install order, with versions.
	Packages []pacman.PlannedPackage
	// Environments are the bootable root datasets, the default first.
	Environments []string
	Kernel       string // kernel version on the ESP
	HostID       string
	Warnings     []string
	// Release is the manifest of the release written (Config.Release).
	Release *release.Manifest
	// InitramfsReused: the generator did not run. A derived build kept
	// the previous release's initramfs, since nothing it is made from
	// changed, or every kernel's image came from Config.CacheDir.
	InitramfsReused bool
	// LayersReused are the layers taken from Config.CacheDir instead of
	// installed (LayerBase, LayerBootable).
	LayersReused []string
	// CachePruned are the least recently used entries removed from
	// Config.CacheDir after the build, to keep it within Config.CacheMax.
	CachePruned []string
}

// Option configures a Builder.
type Option func(*Builder)

// WithRunner sets how commands run (default: hooks.BuildRunner with the
// builder's logger: umask 022 and hooks.BuildEnviron for every command,
// whatever the caller's). A runner of your own decides both; wrap
// hooks.BuildRunner to keep the image independent of the build host.
func WithRunner(r hooks.Runner) Option { return func(b *Builder) { b.runner = r } }

// WithStateDir sets where builds record what they hold, for Recover
// (default DefaultStateDir). Builds that should recover each other share
// one directory.
func WithStateDir(dir string) Option { return func(b *Builder) { b.stateDir = dir } }

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(b *Builder) { b.log = l } }

// WithHooks adds hooks; they run in the order given.
func WithHooks(h ...hooks.Hook) Option { return func(b *Builder) { b.hooks = append(b.hooks, h...) } }

// WithProgress receives stage and package progress. It is called from the
// building goroutine and from download and conversion workers, never by
// two at once: keep it quick.
func WithProgress(fn func(Progress)) Option { return func(b *Builder) { b.progress = fn } }

// WithKeepOnFailure keeps a partial image file and outputs after a failed
// or cancelled build, to inspect them (an output not yet whole under its
// partial name, .<name>.paczfs-<id>.partial, beside it). Mounts, the pool
// and the loop device are released either way.
func WithKeepOnFailure(keep bool) Option { return func(b *Builder) { b.keep = keep } }

// WithInstallerOptions passes options to the pacman installer (an HTTP
// client, a scratch directory).
func WithInstallerOptions(o ...pacman.Option) Option {
	return func(b *Builder) { b.pacmanOpts = append(b.pacmanOpts, o...) }
}

// withHostProbe replaces how the host is inspected (tests).
func withHostProbe(lookPath func(string) (string, error), geteuid func() int) Option {
	return func(b *Builder) { b.lookPath, b.geteuid = lookPath, geteuid }
}

// WithHostChecks(false) lets New accept a configuration on a host that
// could not build it (not root, no zpool): for dry runs (Plan) and for
// writing configurations elsewhere. Build checks the host anyway.
func WithHostChecks(enabled bool) Option { return func(b *Builder) { b.skipHost = !enabled } }

// Builder builds one image from a Config. New validates; Build runs.
type Builder struct {
	cfg        Config
	runner     hooks.Runner
	log        *slog.Logger
	hooks      []hooks.Hook
	progress   func(Progress)
	keep       bool
	pacmanOpts []pacman.Option
	installer  *pacman.Installer
	// stages maps each stage to its built-in implementation; tests
	// swap them to check ordering, hooks and cleanup without a kernel.
	stages   map[hooks.Stage]stageFunc
	adopters map[hooks.Stage]stageFunc
	stateDir string
	lookPath func(string) (string, error)
	geteuid  func() int
	skipHost bool
}

type stageFunc func(ctx context.Context, st *build) error

// New checks the configuration, the hooks and the host, and returns a
// Builder, or a *ConfigError listing every problem with its field and fix.
// It writes nothing. The checks that need commands or the network (the
// block device's state, package resolution) run in the checks stage,
// which Build runs first, still before anything is written; Plan runs
// them without building.
func New(cfg Config, opts ...Option) (*Builder, error) {
	b := &Builder{cfg: cfg.Clone(), lookPath: exec.LookPath, geteuid: os.Geteuid}
	var nilOpts problems
	for i, o := range opts {
		if o == nil {
			nilOpts.add(fmt.Sprintf("options[%d]", i), "drop it, or pass an Option such as WithLogger", "nil")
			continue
		}
		o(b)
	}
	if b.log == nil {
		b.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if b.runner == nil {
		// Commands start with umask 022 and a fixed environment: nothing
		// of the caller's shell reaches the image.
		b.runner = hooks.BuildRunner(b.log)
	}
	if b.progress == nil {
		b.progress = func(Progress) {}
	} else {
		// Downloads, conversions and the build goroutine report at once
		// (the workstation layer downloads during the initramfs stage):
		// the caller's function is called by one goroutine at a time.
		fn := b.progress
		var mu sync.Mutex
		b.progress = func(p Progress) { mu.Lock(); defer mu.Unlock(); fn(p) }
	}
	if b.stateDir == "" {
		b.stateDir = DefaultStateDir
	}
	b.stages = builtinStages()
	b.adopters = map[hooks.Stage]stageFunc{}
	for _, d := range pipeline() {
		if d.adopt != nil {
			b.adopters[d.stage] = d.adopt
		}
	}
	p := append(nilOpts, b.cfg.validate()...)
	p = append(p, b.cfg.checkFiles(!b.skipHost)...)
	p = append(p, b.checkHooks()...)
	if !b.skipHost {
		p = append(p, b.checkHost()...)
	}
	if len(p) > 0 {
		return nil, &ConfigError{Problems: p}
	}
	popts := append([]pacman.Option{pacman.WithLogger(b.log), pacman.WithRunner(b.runner),
		pacman.WithEvents(func(e pacman.Event) { b.progress(Progress{Kind: PackageEvent, Package: &e}) })}, b.pacmanOpts...)
	in, err := pacman.New(b.cfg.Pacman, popts...)
	if err != nil {
		return nil, fmt.Errorf("pacman: %w", err)
	}
	b.installer = in
	return b, nil
}

// HostProblems reports what keeps this host from building the image (not
// root, missing tools, output files in the way); New reports them unless
// WithHostChecks(false).
func (b *Builder) HostProblems() []*FieldError { return b.checkHost() }

// Config returns the validated configuration.
func (b *Builder) Config() Config { return b.cfg.Clone() }

func (b *Builder) checkHooks() problems {
	var p problems
	replaced := map[hooks.Stage]string{}
	for i, h := range b.hooks {
		if h == nil {
			p = append(p, &FieldError{Field: fmt.Sprintf("hooks[%d]", i), Err: ErrHook, Fix: "drop it, or pass a hooks.Hook", Problem: "nil"})
			continue
		}
		f := fmt.Sprintf("hooks[%d] (%s)", i, h.Name())
		if _, err := hooks.ParseStage(string(h.Stage())); err != nil {
			p = append(p, &FieldError{Field: f, Err: ErrHook, Fix: "use one of the stage names in package hooks", Problem: err.Error()})
			continue
		}
		if _, err := hooks.ParseWhen(string(h.When())); err != nil {
			p = append(p, &FieldError{Field: f, Err: ErrHook, Problem: err.Error()})
			continue
		}
		if h.When() == hooks.Replace {
			if prev, ok := replaced[h.Stage()]; ok {
				p = append(p, &FieldError{Field: f, Err: ErrStageConflict, Fix: "keep one replacement per stage; chain the work inside it",
					Problem: fmt.Sprintf("%v: %s is also replaced by %s", ErrStageConflict, h.Stage(), prev)})
			}
			replaced[h.Stage()] = h.Name()
		}
		if c, ok := h.(interface{ Check() error }); ok {
			if err := c.Check(); err != nil {
				p.add(f, "", "%v", err)
			}
		}
	}
	return p
}

// hostTools are the programs a build runs on the build host.
func (b *Builder) hostTools() []string {
	tools := []string{"zpool", "zfs", "unshare", "chroot", "mount"}
	if slices.ContainsFunc(b.cfg.Outputs, func(o Output) bool { return !InProcess(o) }) {
		tools = append(tools, "qemu-img")
	}
	if b.cfg.SwapSize > 0 || slices.ContainsFunc(b.cfg.layout().Partitions, func(p disk.PartitionSpec) bool { return p.Role == disk.RoleSwap }) {
		tools = append(tools, "mkswap")
	}
	if b.cfg.BlockDevice != "" {
		tools = append(tools, "wipefs", "blkid")
	}
	return tools
}

func (b *Builder) checkHost() problems {
	var p problems
	if b.geteuid() != 0 {
		p.add("host", "run as root (sudo)", "building needs root: loop devices, zpool, mounts")
	}
	for _, t := range b.hostTools() {
		if _, err := b.lookPath(t); err != nil {
			p.add("host", "install it (OpenZFS for zpool and zfs, util-linux, qemu-utils for qemu-img)", "%s not found in PATH", t)
		}
	}
	if b.cfg.ImageFile != "" {
		if err := checkFree(b.cfg.ImageFile, b.cfg.Overwrite); err != nil {
			p.add("image_file", "choose a new file, or allow overwriting", "%v", err)
		}
	}
	for i, o := range b.cfg.Outputs {
		if o.Path == "" {
			continue
		}
		if err := checkFree(o.Path, b.cfg.Overwrite); err != nil {
			p.add(fmt.Sprintf("outputs[%d].path", i), "choose a new file, or allow overwriting", "%v", err)
		}
	}
	if b.cfg.WorkDir != "" {
		if ents, err := os.ReadDir(b.cfg.WorkDir); err == nil && len(ents) > 0 {
			p.add("work_dir", "give an empty or missing directory", "%s is not empty", b.cfg.WorkDir)
		}
	}
	return p
}

// checkFree reports whether path can be created: its directory exists and
// it does not (unless overwrite, and then it must be a regular file).
func checkFree(path string, overwrite bool) error {
	dir := filepath.Dir(path)
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return fmt.Errorf("directory %s does not exist", dir)
	}
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if !overwrite {
		return fmt.Errorf("%s exists", path)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s exists and is not a regular file", path)
	}
	return nil
}

// build is one run of Build: the hooks' State plus what stages hand on.
type build struct {
	b     *Builder
	cfg   *Config
	state hooks.State
	stack cleanup.Stack
	res   *Result
	ok    bool // the build succeeded: nothing partial to remove
	// set by stages
	workDir  string
	plan     *buildPlan
	target   *targetInfo
	envs     []bootEnv
	kver     string
	hostID   string
	record   *stateFile // what this build holds, for Recover (nil in Plan)
	packages []pacman.PlannedPackage
	warnings []string
	// the bootable set after the module pairs' choices (nil: as configured)
	bootable []string
	modules  []ModuleChoice
	// a derived build (Config.Release.From)
	previous *release.Manifest
	changed  []string // files of the packages the sync changed
	// cacheUsed: the cache entries this build took or stored (not pruned)
	cacheUsed map[string]bool
	// prefetchDS: the temporary dataset over the target's package cache
	// (prefetchWorkstation), prefetchMade once zfs created it
	prefetchDS   string
	prefetchMade bool
	// partials: the files the convert stage created for its outputs;
	// newOutputs: the outputs it renamed into place where none was
	partials   []string
	newOutputs []string
	// releaseDir: the build began writing Config.Release.Dir
	releaseDir bool
	// layers is the layer cache (Config.CacheDir), nil without one
	layers *layerCache
	// dryRun: Builder.Plan, which writes nothing (not even to the cache)
	dryRun bool
}

// Build runs every stage in order, with the hooks, and releases everything
// it acquired whatever happens. After a failure or cancellation the
// partial image and outputs are removed unless WithKeepOnFailure. The
// error is a *StageError; cleanup failures are joined to it, never
// dropped.
func (b *Builder) Build(ctx context.Context) (res *Result, err error) {
	if p := b.checkHost(); len(p) > 0 {
		return nil, &ConfigError{Problems: p}
	}
	start := time.Now()
	st := b.newBuild()
	// What builds that died on this host left is released first (only
	// theirs: see Recover); then this build records what it holds.
	recovered, rerr := Recover(ctx, RecoverStateDir(b.stateDir), RecoverRunner(b.runner), RecoverLogger(b.log))
	for _, r := range recovered {
		st.warn("released what build %s (pid %d, started %s) left: %s", r.ID, r.PID, r.Started.Format(time.RFC3339), strings.Join(r.Released, "; "))
	}
	if rerr != nil {
		st.warn("recovering dead builds: %v", rerr)
	}
	if err := b.claimedByDeadBuild(); err != nil {
		return nil, &StageError{Stage: hooks.StageChecks, Err: err}
	}
	if st.record, err = openState(b.stateDir); err != nil {
		return nil, &StageError{Stage: hooks.StageChecks, Err: err}
	}
	defer func() {
		cerr := st.stack.Unwind(ctx)
		if cerr != nil {
			err = errors.Join(err, cerr)
			// Something was not released: the record stays (unlocked
			// once this process ends) for Recover to finish the job.
			st.record.f.Close()
		} else if rerr := st.record.close(); rerr != nil {
			b.log.Warn("remove build record", "err", rerr)
		}
		if err != nil {
			res = nil
			return
		}
		st.res.Took = time.Since(start)
		st.res.Warnings = st.warnings
		res = st.res
	}()
	// Registered first, so it runs last: after the pool is exported and
	// the loop device detached.
	st.stack.Push("remove partial outputs", func(context.Context) error { return st.removePartial() })
	for _, stage := range hooks.Stages() {
		if err := st.runStage(ctx, stage); err != nil {
			return nil, err
		}
	}
	st.pruneAfterBuild(ctx)
	// Finished: the image, outputs and release are the user's, never
	// Recover's to remove, whatever the release of the rest does.
	st.disownFiles()
	st.ok = true
	return nil, nil
}

func (b *Builder) newBuild() *build {
	st := &build{b: b, cfg: &b.cfg, res: &Result{}}
	st.stack.Logger = b.log
	st.state = hooks.State{
		Runner: b.runner,
		Logger: b.log,
		Defer:  st.stack.Push,
	}
	return st
}

func (st *build) runStage(ctx context.Context, stage hooks.Stage) (err error) {
	b := st.b
	// A panic in stage or hook code must not skip the release of what the
	// build holds (a pool, a loop device, mounts): it fails the stage, and
	// Build unwinds as after any error.
	defer func() {
		if r := recover(); r != nil {
			err = &StageError{Stage: stage, Err: fmt.Errorf("%w: %v", ErrPanic, r)}
		}
	}()
	st.state.Stage = stage
	st.refreshState()
	b.progress(Progress{Kind: StageStarted, Stage: stage})
	b.log.Info("stage", "stage", stage)
	t0 := time.Now()
	timing := StageTiming{Stage: stage}
	run := func(h hooks.Hook) error {
		if err := ctx.Err(); err != nil {
			return &StageError{Stage: stage, Err: err}
		}
		b.log.Info("hook", "stage", stage, "when", h.When(), "hook", h.Name())
		if h.When() != hooks.Replace {
			timing.Hooks = append(timing.Hooks, h.Name())
		}
		if err := h.Run(ctx, &st.state); err != nil {
			return &StageError{Stage: stage, Hook: h.Name(), Err: err}
		}
		st.refreshState()
		return nil
	}
	for _, h := range b.hooks {
		if h.Stage() == stage && h.When() == hooks.Before {
			if err := run(h); err != nil {
				return err
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return &StageError{Stage: stage, Err: err}
	}
	if i := slices.IndexFunc(b.hooks, func(h hooks.Hook) bool { return h.Stage() == stage && h.When() == hooks.Replace }); i >= 0 {
		timing.Replaced = b.hooks[i].Name()
		if err := run(b.hooks[i]); err != nil {
			return err
		}
		// What the hook made becomes the builder's, or the build stops
		// here naming what is missing (never a nil dereference later).
		if adopt := b.adopters[stage]; adopt != nil {
			if err := adopt(ctx, st); err != nil {
				return &StageError{Stage: stage, Hook: b.hooks[i].Name(), Err: err}
			}
			st.refreshState()
		}
	} else if err := b.stages[stage](ctx, st); err != nil {
		if ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
			err = fmt.Errorf("%w (%w)", ctx.Err(), err)
		}
		return &StageError{Stage: stage, Err: err}
	}
	st.refreshState()
	for _, h := range b.hooks {
		if h.Stage() == stage && h.When() == hooks.After {
			if err := run(h); err != nil {
				return err
			}
		}
	}
	timing.Took = time.Since(t0)
	st.res.Stages = append(st.res.Stages, timing)
	b.progress(Progress{Kind: StageFinished, Stage: stage, Took: timing.Took})
	return nil
}

// refreshState derives the hooks' environment from the State fields.
func (st *build) refreshState() {
	s := &st.state
	root := s.Root
	s.Chroot = func(argv ...string) []string { return chrootArgs(root, argv...) }
	env := []string{
		"PACZFS_STAGE=" + string(s.Stage),
		"PACZFS_ROOT=" + s.Root,
		"PACZFS_IMAGE=" + s.ImageFile,
		"PACZFS_DEVICE=" + s.Device,
		"PACZFS_POOL=" + s.Pool,
		"PACZFS_POOL_NAME=" + s.PoolName,
		"PACZFS_ROOT_DATASET=" + s.RootDataset,
	}
	for _, role := range []string{"esp", "zfs", "swap"} {
		env = append(env, "PACZFS_"+strings.ToUpper(role)+"_DEV="+s.Partitions[role])
	}
	s.Env = env
}

func (st *build) warn(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	st.warnings = append(st.warnings, msg)
	st.b.log.Warn(msg)
	st.b.progress(Progress{Kind: Message, Stage: st.state.Stage, Message: "warning: " + msg})
}

// removePartial deletes what a failed build created, unless asked to keep
// it. Only files this build created are removed.
// ErrClaimed: a build that died, and could not be recovered yet, still
// claims a file this build would write.
var ErrClaimed = errors.New("claimed by a build that died and is not recovered")

// claimedByDeadBuild refuses an image file or release directory a dead
// build's record still names: recovering it later would remove what this
// build writes there.
func (b *Builder) claimedByDeadBuild() error {
	img := ""
	if b.cfg.ImageFile != "" {
		img, _ = filepath.Abs(b.cfg.ImageFile)
	}
	rel := b.cfg.Release.Dir
	for _, r := range deadRecords(b.stateDir) {
		switch {
		case img != "" && r.Image == img:
			return fmt.Errorf("image_file %s: %w (build %s, pid %d): Recover reports why; fix that, then build again", img, ErrClaimed, r.ID, r.PID)
		case rel != "" && r.ReleaseDir == rel:
			return fmt.Errorf("release.dir %s: %w (build %s, pid %d): Recover reports why; fix that, then build again", rel, ErrClaimed, r.ID, r.PID)
		}
	}
	return nil
}

// disownFiles takes the image, the partial outputs and the release out of
// the build's record: they stay whatever becomes of the record.
func (st *build) disownFiles() {
	if err := st.record.update(func(r *record) {
		r.Image, r.Created, r.ImageID, r.Partials, r.ReleaseDir = "", false, "", nil, ""
	}); err != nil {
		st.warn("build record: %v", err)
	}
}

func (st *build) removePartial() error {
	if st.ok {
		return nil
	}
	if st.b.keep {
		st.disownFiles() // kept as asked: not Recover's to remove
		return nil
	}
	var errs []error
	if st.target != nil && st.target.created {
		if err := os.Remove(st.target.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	for _, p := range st.partials {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	for _, p := range st.newOutputs {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if st.releaseDir {
		// The checks found it absent or empty: all of it is this build's.
		if err := removeReleaseFiles(st.cfg.Release.Dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

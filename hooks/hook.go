package hooks

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/paczfs/paczfs/internal/fsx"
)

// When says where a hook runs relative to its stage.
type When string

// Hook positions. Replace runs instead of the stage (the original's
// handled=true); at most one hook may replace a stage.
const (
	Before  When = "before"
	After   When = "after"
	Replace When = "replace"
)

// ParseWhen reads a hook position.
func ParseWhen(s string) (When, error) {
	switch When(s) {
	case Before, After, Replace:
		return When(s), nil
	}
	return "", fmt.Errorf("unknown hook position %q: use before, after or replace", s)
}

// Hook is code that runs at a stage of an image build.
type Hook interface {
	// Name identifies the hook in logs and errors.
	Name() string
	// Stage and When place it.
	Stage() Stage
	When() When
	// Run does the work. An error fails the build, naming the hook and
	// the stage; the build then releases everything it acquired.
	Run(ctx context.Context, s *State) error
}

// Keyed is a hook whose effect on the target is named by its CacheKey.
// A build that reuses work (image.Config.CacheDir) turns its cache off
// when a hook it cannot name runs before the work it would reuse; a
// Keyed hook's key goes into the cache's key instead. Give another key
// whenever what the hook does to the target changes: a version, or the
// SHA-256 of the files it copies in. The initramfs cache's key also
// reads what the hook left under /etc and the packages it installed; the
// layers' keys are made before anything is written, so for a hook at or
// before a layer's stage its own key is all that cache knows of it.
type Keyed interface {
	Hook
	CacheKey() string
}

// WithCacheKey returns h as a Keyed hook with key.
func WithCacheKey(h Hook, key string) Keyed { return keyedHook{h, key} }

type keyedHook struct {
	Hook
	key string
}

func (h keyedHook) CacheKey() string { return h.key }

// Check is the wrapped hook's, when it has one.
func (h keyedHook) Check() error {
	if c, ok := h.Hook.(interface{ Check() error }); ok {
		return c.Check()
	}
	return nil
}

// State is what a hook sees of the build. Fields that a stage has not
// produced yet are empty (before the pool stage, Pool is "").
type State struct {
	Stage Stage
	// Root is where the target's root dataset is mounted on the build
	// host (the pool's altroot): the target's "/" during the build.
	Root string
	// ImageFile is the raw image being built ("" for a block device);
	// Device is the disk as the kernel sees it (/dev/loopN or the block
	// device); Partitions maps "esp", "swap", "zfs" to their device nodes.
	ImageFile  string
	Device     string
	Partitions map[string]string
	// PoolName is the pool's name on disk; Pool the name it has while
	// imported on the build host (zfs commands must use Pool).
	PoolName string
	Pool     string
	// RootDataset is the root boot environment, with the imported name.
	RootDataset string
	// ESP gives access to the EFI System Partition's files (nil before
	// the esp stage).
	ESP ESPWriter
	// Runner runs commands; Logger logs (never nil).
	Runner Runner
	Logger *slog.Logger
	// Defer registers a release action that runs when the build ends,
	// successfully or not, last registered first. Use it for anything a
	// hook acquires that must not outlive the build.
	Defer func(name string, fn func(ctx context.Context) error)
	// Chroot returns the argv that runs argv inside Root with /proc, /sys,
	// /dev and /run mounted privately for that command only.
	Chroot func(argv ...string) []string
	// Env is the environment shell hooks get (PACZFS_*), derived from
	// the fields above.
	Env []string
}

// ESPWriter writes files on the ESP without mounting it.
type ESPWriter interface {
	WriteFile(name string, data []byte) error
	ReadFile(name string) ([]byte, error)
}

// Func adapts a function to a Hook.
func Func(name string, stage Stage, when When, fn func(ctx context.Context, s *State) error) Hook {
	return funcHook{name, stage, when, fn}
}

type funcHook struct {
	name  string
	stage Stage
	when  When
	fn    func(ctx context.Context, s *State) error
}

func (h funcHook) Name() string                            { return h.name }
func (h funcHook) Stage() Stage                            { return h.stage }
func (h funcHook) When() When                              { return h.when }
func (h funcHook) Run(ctx context.Context, s *State) error { return h.fn(ctx, s) }

// Script is a shell hook: an executable file run on the build host, or
// copied into the target and run there chrooted (InTarget). It gets the
// State as environment variables:
//
//	PACZFS_STAGE, PACZFS_WHEN   the stage and position
//	PACZFS_ROOT                 the target root on the host ("/" in the target)
//	PACZFS_IMAGE, PACZFS_DEVICE the image file and the disk device
//	PACZFS_ESP_DEV, PACZFS_ZFS_DEV, PACZFS_SWAP_DEV  partition devices
//	PACZFS_POOL                 the pool's imported name
//	PACZFS_POOL_NAME            the pool's name on disk
//	PACZFS_ROOT_DATASET         the root boot environment (imported name)
//
// Its output is logged; a non-zero exit fails the build. On the host it
// runs with the runner's environment (for image builds, BuildEnviron and
// BuildUmask: not the caller's shell); in the target with the chroot's
// (PATH, HOME=/root, LANG=C.UTF-8, TERM=dumb, umask 022). The variables
// above come on top of either.
type Script struct {
	Path     string
	AtStage  Stage
	Position When
	InTarget bool
}

// ParseScriptName reads a hook file name of the form
// "<position>-<stage>[.anything]", e.g. "after-system.sh": the convention
// for a directory of shell hooks.
func ParseScriptName(path string) (Stage, When, error) {
	base := filepath.Base(path)
	if i := strings.IndexByte(base, '.'); i > 0 {
		base = base[:i]
	}
	pos, stage, ok := strings.Cut(base, "-")
	if !ok {
		return "", "", fmt.Errorf("hook %s: name it <before|after|replace>-<stage>, e.g. after-system.sh", path)
	}
	w, err := ParseWhen(pos)
	if err != nil {
		return "", "", fmt.Errorf("hook %s: %w", path, err)
	}
	st, err := ParseStage(stage)
	if err != nil {
		return "", "", fmt.Errorf("hook %s: %w", path, err)
	}
	return st, w, nil
}

func (h Script) Name() string { return "script " + h.Path }
func (h Script) Stage() Stage { return h.AtStage }
func (h Script) When() When   { return h.Position }

// Check reports whether the script can run: it exists, is a regular
// executable file.
func (h Script) Check() error {
	fi, err := os.Stat(h.Path)
	if err != nil {
		return fmt.Errorf("hook script: %w", err)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("hook script %s: not an executable file (chmod +x it)", h.Path)
	}
	return nil
}

// Run runs the script.
func (h Script) Run(ctx context.Context, s *State) error {
	env := append(slices.Clone(s.Env), "PACZFS_WHEN="+string(h.Position))
	if !h.InTarget {
		_, err := s.Runner.Run(ctx, Cmd{Args: []string{h.Path}, Env: env})
		return err
	}
	if s.Root == "" {
		return fmt.Errorf("hook %s: stage %s has no target root yet; run it on the host", h.Path, s.Stage)
	}
	data, err := os.ReadFile(h.Path)
	if err != nil {
		return err
	}
	dir := filepath.Join(s.Root, "var", "tmp", "paczfs-hook")
	if _, err := os.Stat(filepath.Dir(dir)); err != nil {
		return fmt.Errorf("hook %s: the target has no /var/tmp: %w", h.Path, err)
	}
	if err := fsx.Mkdir(dir, 0o700); err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := fsx.WriteFile(filepath.Join(dir, "hook"), data, 0o700); err != nil {
		return err
	}
	// Inside the target, the root is "/".
	for i, e := range env {
		if strings.HasPrefix(e, "PACZFS_ROOT=") {
			env[i] = "PACZFS_ROOT=/"
		}
	}
	// The chroot starts from a clean environment: pass ours explicitly.
	argv := append(append([]string{"/usr/bin/env"}, env...), "/var/tmp/paczfs-hook/hook")
	_, err = s.Runner.Run(ctx, Cmd{Args: s.Chroot(argv...)})
	return err
}

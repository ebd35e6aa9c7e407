package image

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/paczfs/paczfs/disk"
	"github.com/paczfs/paczfs/hooks"
	"github.com/paczfs/paczfs/internal/fsx"
	"github.com/paczfs/paczfs/internal/procs"
	"github.com/paczfs/paczfs/zfs"
)

// DefaultStateDir is where builds record what they hold (one file per
// build), so that what a killed build leaves can be found and released.
// Under /run: a reboot releases loop devices, imports and mounts anyway.
const DefaultStateDir = "/run/paczfs/builds"

// record is a build's state file: what it holds, each entry written
// before the thing is acquired. While the build runs it holds an
// exclusive flock on the file; the kernel drops the lock when the process
// dies, however it dies, so a lock that can be taken means a dead build
// (a recycled PID cannot fool it).
type record struct {
	ID      string    `json:"id"`
	PID     int       `json:"pid"`
	Started time.Time `json:"started"`
	// Image is the image file this build creates (removed on recovery
	// only when Created: never a file that existed before).
	Image   string `json:"image,omitempty"`
	Created bool   `json:"created,omitempty"`
	// ImageID is the created file's device and inode ("dev:ino"):
	// Recover removes Image only while that path is still that file.
	ImageID string `json:"image_id,omitempty"`
	// Backing is the file or device the build's loop devices serve.
	Backing string `json:"backing,omitempty"`
	// Pools are the temporary (imported) pool names, unique per build.
	Pools []string `json:"pools,omitempty"`
	// WorkDir holds the pool's altroot: every mount of the build is below.
	WorkDir string `json:"work_dir,omitempty"`
	// ReleaseDir is the release the build began writing (Config.Release:
	// it was new or empty, so its release files are the build's).
	ReleaseDir string `json:"release_dir,omitempty"`
	// Partials are the files the convert stage writes its outputs to
	// until each is whole (each created by the build, O_EXCL).
	Partials []string `json:"partials,omitempty"`
}

// stateFile is a live build's record, locked for the build's life.
type stateFile struct {
	f    *os.File
	name string
	rec  record
}

func openState(dir string) (*stateFile, error) {
	if err := fsx.Mkdir(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	s := &stateFile{rec: record{ID: randomID(), PID: os.Getpid(), Started: time.Now().UTC()}}
	// Made under a name Recover does not read, locked and written, then
	// renamed into place: Recover never sees a record unlocked or empty.
	final := filepath.Join(dir, s.rec.ID+".json")
	f, err := os.OpenFile(final+".new", os.O_RDWR|os.O_CREATE|os.O_EXCL|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("state file: %w", err)
	}
	fail := func(err error) (*stateFile, error) {
		f.Close()
		os.Remove(f.Name())
		return nil, fmt.Errorf("state file: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		return fail(err)
	}
	s.f = f
	if err := s.write(); err != nil {
		return fail(err)
	}
	if err := os.Rename(f.Name(), final); err != nil {
		return fail(err)
	}
	s.name = final
	return s, nil
}

// id names the build in the files it makes beside the caller's
// (partialName): its record's ID, or a random one without a record.
func (s *stateFile) id() string {
	if s != nil {
		return s.rec.ID
	}
	return randomID()
}

// randomID is 12 random hex digits: a build's ID, or a file name's part.
func randomID() string {
	var id [6]byte
	_, _ = rand.Read(id[:])
	return hex.EncodeToString(id[:])
}

// update changes the record and writes it to disk before returning: the
// caller acquires the thing only then.
func (s *stateFile) update(change func(*record)) error {
	if s == nil {
		return nil
	}
	change(&s.rec)
	return s.write()
}

// write writes the record over the old one, then cuts what is left of
// the old: killed in between, the file holds the whole new record (and
// perhaps the old one's tail, which Recover's reader ignores), never an
// empty one.
func (s *stateFile) write() error {
	data, err := json.Marshal(s.rec)
	if err != nil {
		return err
	}
	data = append(data, '\n')
	if _, err := s.f.WriteAt(data, 0); err != nil {
		return err
	}
	if err := s.f.Truncate(int64(len(data))); err != nil {
		return err
	}
	return s.f.Sync()
}

// close removes the record (everything in it was released) and drops the
// lock.
func (s *stateFile) close() error {
	if s == nil || s.f == nil {
		return nil
	}
	err := os.Remove(s.name)
	s.f.Close()
	s.f = nil
	return err
}

// Recovered is what Recover released for one dead build.
type Recovered struct {
	ID       string    // the build's state file name
	PID      int       // the process that ran it (dead)
	Started  time.Time // when it started
	Released []string  // what was released, in order
}

// RecoverOption configures Recover.
type RecoverOption func(*recoverer)

// RecoverStateDir reads build records from dir (default DefaultStateDir).
func RecoverStateDir(dir string) RecoverOption { return func(r *recoverer) { r.dir = dir } }

// RecoverRunner runs the zpool and umount commands (default:
// hooks.BuildRunner).
func RecoverRunner(run hooks.Runner) RecoverOption { return func(r *recoverer) { r.run = run } }

// RecoverLogger logs what is released (default: discard).
func RecoverLogger(l *slog.Logger) RecoverOption { return func(r *recoverer) { r.log = l } }

type recoverer struct {
	dir string
	run hooks.Runner
	log *slog.Logger
}

// ErrStillHeld: a dead build's tree is held by a process recovery did not
// kill (one that is not the build's: a shell in the work directory, say).
var ErrStillHeld = errors.New("still held by a process that is not the build's")

// Recover releases what builds that died (SIGKILL, OOM, power cut of the
// process) left on this host, and only that: every build records what it
// holds before acquiring it, and holds a lock on its record while it
// runs, so the builds still running, and anything that is not in a dead
// build's record (the user's pools, loop devices, mounts), are never
// touched. For each dead build, in order: it kills the processes the
// build started that still run in its target (chrooted commands, the
// keyring's gpg-agent), force-exports its temporary pools, unmounts what
// remains below its work directory, detaches its loop devices, removes
// its empty work directories, kills what still writes its partial outputs
// and removes them and the partial image it created, then its record.
// Build calls it first, for every build on the host.
func Recover(ctx context.Context, opts ...RecoverOption) ([]Recovered, error) {
	r := &recoverer{dir: DefaultStateDir}
	for _, o := range opts {
		o(r)
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.run == nil {
		r.run = hooks.BuildRunner(r.log)
	}
	files, err := filepath.Glob(filepath.Join(r.dir, "*.json"))
	if err != nil {
		return nil, err
	}
	var out []Recovered
	var errs []error
	for _, name := range files {
		got, err := r.one(ctx, name)
		if got != nil {
			out = append(out, *got)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("recover %s: %w", filepath.Base(name), err))
		}
	}
	return out, errors.Join(errs...)
}

// one recovers the build of one record, if it is dead.
func (r *recoverer) one(ctx context.Context, name string) (*Recovered, error) {
	f, err := os.OpenFile(name, os.O_RDWR|unix.O_CLOEXEC, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil // finished meanwhile
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, nil // alive: its lock is held
		}
		return nil, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil || st.Nlink == 0 {
		return nil, err // removed by its build as it finished
	}
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	var rec record
	// The first JSON value: a record killed while it was rewritten may
	// have the old one's tail after it.
	if err := json.NewDecoder(bytes.NewReader(data)).Decode(&rec); err != nil {
		return nil, fmt.Errorf("unreadable record (left as it is): %w", err)
	}
	got := &Recovered{ID: rec.ID, PID: rec.PID, Started: rec.Started}
	done := func(what string) {
		got.Released = append(got.Released, what)
		r.log.Info("recovered", "build", rec.ID, "released", what)
	}
	var errs []error
	z := zfs.New(zfs.WithRunner(r.run), zfs.WithLogger(r.log))
	if rec.WorkDir != "" {
		// Processes of the build: chrooted in its target, or with an
		// argument in it (gpg-agent --homedir through a short link).
		victims := map[int]string{}
		for _, p := range procs.Find(rec.WorkDir) {
			if p.Root {
				victims[p.PID] = p.Cmdline
			}
		}
		for _, p := range procs.WithArgUnder(rec.WorkDir) {
			victims[p.PID] = p.Cmdline
		}
		for pid, cmd := range victims {
			if err := syscall.Kill(pid, syscall.SIGKILL); err == nil {
				done(fmt.Sprintf("killed pid %d (%s)", pid, cmd))
			}
		}
		if len(victims) > 0 {
			time.Sleep(200 * time.Millisecond) // let the kernel reap them
		}
	}
	for _, pool := range rec.Pools {
		imported, err := z.PoolImported(ctx, pool)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !imported {
			continue
		}
		if err := exportPool(ctx, z, pool, zfs.ExportOptions{Force: true}); err != nil {
			errs = append(errs, fmt.Errorf("export %s: %w", pool, err))
			continue
		}
		done("exported pool " + pool)
	}
	if rec.WorkDir != "" {
		for _, m := range mountsBelow(rec.WorkDir) {
			if err := unix.Unmount(m, 0); err != nil {
				if err := unix.Unmount(m, unix.MNT_DETACH); err != nil {
					errs = append(errs, fmt.Errorf("unmount %s: %w", m, err))
					continue
				}
			}
			done("unmounted " + m)
		}
		if held := procs.Find(rec.WorkDir); len(held) > 0 {
			var names []string
			for _, p := range held {
				names = append(names, p.String())
			}
			errs = append(errs, fmt.Errorf("%s: %w: %s", rec.WorkDir, ErrStillHeld, strings.Join(names, "; ")))
		}
	}
	if rec.Backing != "" {
		devs, err := disk.DetachBacking(ctx, rec.Backing, 30*time.Second)
		for _, d := range devs {
			done("detached " + d)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	if rec.WorkDir != "" {
		removeShortKeyringLinks(rec.WorkDir)
		if err := removeEmptyDirs(rec.WorkDir); err != nil {
			errs = append(errs, err)
		} else if _, err := os.Stat(rec.WorkDir); errors.Is(err, fs.ErrNotExist) {
			done("removed " + rec.WorkDir)
		}
	}
	if rec.ReleaseDir != "" && len(errs) == 0 {
		if err := removeReleaseFiles(rec.ReleaseDir); err != nil {
			errs = append(errs, err)
		} else {
			done("removed partial release " + rec.ReleaseDir)
		}
	}
	for _, p := range rec.Partials {
		// A qemu-img the build started goes on writing after the build
		// is killed: it goes first.
		for _, w := range procs.WithArgUnder(p) {
			if err := syscall.Kill(w.PID, syscall.SIGKILL); err == nil {
				done(fmt.Sprintf("killed pid %d (%s)", w.PID, w.Cmdline))
			}
		}
		if err := os.Remove(p); err == nil {
			done("removed partial output " + p)
		} else if !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if rec.Created && rec.Image != "" && len(errs) == 0 {
		if id := fileID(rec.Image); rec.ImageID != "" && id != "" && id != rec.ImageID {
			// Another file by now (a later build's): not this build's.
			done("left " + rec.Image + ": another file than the one this build created")
		} else if err := os.Remove(rec.Image); err == nil {
			done("removed partial image " + rec.Image)
		} else if !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return got, errors.Join(errs...) // the record stays: try again
	}
	return got, os.Remove(name)
}

// fileID is path's device and inode ("dev:ino"), "" when it cannot be
// read.
func fileID(path string) string {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return ""
	}
	return fmt.Sprintf("%d:%d", st.Dev, st.Ino)
}

// deadRecords are the records of builds that died and were not
// recovered (Recover failed for them): their files are still theirs.
func deadRecords(dir string) []record {
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	var out []record
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			continue
		}
		if unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB) == nil {
			var rec record
			if json.NewDecoder(f).Decode(&rec) == nil {
				out = append(out, rec)
			}
		}
		f.Close()
	}
	return out
}

// mountsBelow lists the mount points at or below dir, deepest first.
func mountsBelow(dir string) []string {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var out []string
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.Fields(l)
		if len(f) < 5 {
			continue
		}
		mp := unescapeMount(f[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	slices.SortFunc(out, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
	return slices.Compact(out)
}

func unescapeMount(s string) string {
	return strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`).Replace(s)
}

// removeShortKeyringLinks removes the short links pacman's keyring setup
// makes in the temporary directory (pzk-*/g) that point into dir.
func removeShortKeyringLinks(dir string) {
	links, _ := filepath.Glob(filepath.Join(os.TempDir(), "pzk-*", "g"))
	for _, l := range links {
		if t, err := os.Readlink(l); err == nil && strings.HasPrefix(t, dir+"/") {
			os.RemoveAll(filepath.Dir(l))
		}
	}
}

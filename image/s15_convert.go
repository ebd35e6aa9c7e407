package image

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/paczfs/paczfs/hooks"
	"github.com/paczfs/paczfs/internal/fsx"
)

// stageConvert writes every output at once: each qemu-img (or the
// in-process QCOW2 writer) reads the same exported image (from the page
// cache after the first) and compresses on CPUs of its own, so two
// outputs take about as long as the slowest rather than the sum. At most GOMAXPROCS (and at least two) run
// together. The first failure stops the others.
//
// Each output is written to a file of its own beside it
// (partialName), recorded for Recover before it is created, synced, and
// renamed to the output's name only once every output is whole. So a
// failed, cancelled or killed build never leaves a half-written file
// under an output's name (the build's cleanup, or Recover after a
// SIGKILL, removes the partial files), and with Config.Overwrite the
// previous outputs stay until the new ones replace them. Without it, a
// file that appeared at an output's path during the build is not
// replaced: the stage fails naming it, before any output is renamed
// (checkRenames).
func stageConvert(ctx context.Context, st *build) error {
	// Every argv before any file is touched: a bad output fails the stage
	// with nothing written.
	for _, o := range st.cfg.Outputs {
		if _, err := OutputArgs(st.target.path, o); err != nil {
			return err
		}
	}
	mask, err := fsx.Umask()
	if err != nil {
		return err
	}
	id := st.record.id()
	partial := make([]string, len(st.cfg.Outputs))
	for i, o := range st.cfg.Outputs {
		// Absolute, through no link: Recover, run from anywhere, finds
		// the file, and the qemu-img whose argument names it.
		dir, err := filepath.Abs(filepath.Dir(o.Path))
		if err != nil {
			return err
		}
		if real, err := filepath.EvalSymlinks(dir); err == nil {
			dir = real
		}
		partial[i] = partialName(filepath.Join(dir, filepath.Base(o.Path)), id)
	}
	if err := st.record.update(func(r *record) { r.Partials = append(r.Partials, partial...) }); err != nil {
		return err
	}
	for _, p := range partial {
		// O_EXCL: the file is this build's, so removing it is always safe.
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return fmt.Errorf("convert: %w", err)
		}
		st.partials = append(st.partials, p)
		if err := f.Close(); err != nil {
			return err
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(2, runtime.GOMAXPROCS(0)))
	for i, o := range st.cfg.Outputs {
		name := filepath.Base(o.Path)
		report := func(pct int) {
			if pct%10 == 0 {
				st.b.progress(Progress{Kind: Message, Stage: hooks.StageConvert, Message: fmt.Sprintf("%s (%s): %d%%", name, o.Format, pct)})
			}
		}
		tmp := o
		tmp.Path = partial[i]
		g.Go(func() error {
			if err := writeOutput(gctx, st.b.runner, st.target.path, tmp, report); err != nil {
				return fmt.Errorf("%w (output %s)", err, o.Path)
			}
			// Outputs are the caller's files, not the image's: they get
			// the caller's umask as the image file does (qemu-img and
			// the writer ran with the build's).
			if err := os.Chmod(tmp.Path, 0o644&^mask); err != nil {
				return err
			}
			return syncFile(tmp.Path)
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	if err := checkRenames(st.cfg.Outputs, st.cfg.Overwrite); err != nil {
		return err
	}
	dirs := map[string]bool{}
	for i, o := range st.cfg.Outputs {
		_, lerr := os.Lstat(o.Path)
		if err := renameOutput(partial[i], o.Path, st.cfg.Overwrite); err != nil {
			return fmt.Errorf("outputs[%d].path: %w", i, err)
		}
		st.res.Outputs = append(st.res.Outputs, o)
		// One that replaced a previous output stays if the build fails
		// later: it is whole, and the previous one is gone.
		if lerr != nil {
			st.newOutputs = append(st.newOutputs, o.Path)
		}
		dirs[filepath.Dir(o.Path)] = true
	}
	for d := range dirs {
		if err := syncFile(d); err != nil {
			return err
		}
	}
	return nil
}

// checkRenames looks at every output's path before the first whole
// output is renamed into place, so what would fail a later rename (a
// file that appeared without overwrite, a directory in the way) fails
// the stage with no output replaced, rather than after some were.
func checkRenames(outputs []Output, overwrite bool) error {
	for i, o := range outputs {
		fi, err := os.Lstat(o.Path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return fmt.Errorf("outputs[%d].path: %w", i, err)
		case !overwrite:
			return fmt.Errorf("outputs[%d].path: %s: %w (not replaced: remove it, or allow overwriting)", i, o.Path, ErrOutputExists)
		case fi.IsDir():
			return fmt.Errorf("outputs[%d].path: %s is a directory (a build replaces only files: move it away)", i, o.Path)
		}
	}
	return nil
}

// partialName is where output path is written until it is whole: a
// hidden file beside it (the same filesystem, so the rename is atomic)
// named for the build.
func partialName(path, id string) string {
	return filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".paczfs-"+id+".partial")
}

// ErrOutputExists: a file appeared at an output's path during a build
// without Config.Overwrite; the build does not replace it.
var ErrOutputExists = errors.New("a file appeared at the output's path during the build")

// renameOutput moves the finished partial file to path: over an existing
// file only with overwrite.
func renameOutput(partial, path string, overwrite bool) error {
	if overwrite {
		return os.Rename(partial, path)
	}
	err := unix.Renameat2(unix.AT_FDCWD, partial, unix.AT_FDCWD, path, unix.RENAME_NOREPLACE)
	switch {
	case errors.Is(err, unix.EEXIST):
		return fmt.Errorf("%s: %w (not replaced: remove it, or allow overwriting)", path, ErrOutputExists)
	case errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOSYS):
		// A filesystem without RENAME_NOREPLACE: a link cannot replace
		// a file either.
		lerr := os.Link(partial, path)
		switch {
		case errors.Is(lerr, fs.ErrExist):
			return fmt.Errorf("%s: %w (not replaced: remove it, or allow overwriting)", path, ErrOutputExists)
		case lerr == nil:
			return os.Remove(partial)
		}
		// Nor links (some FUSE and SMB mounts): look, then rename.
		if _, err := os.Lstat(path); err == nil {
			return fmt.Errorf("%s: %w (not replaced: remove it, or allow overwriting)", path, ErrOutputExists)
		}
		return os.Rename(partial, path)
	case err != nil:
		return &os.LinkError{Op: "rename", Old: partial, New: path, Err: err}
	}
	return nil
}

// syncFile flushes a file's or directory's data to its disk.
func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

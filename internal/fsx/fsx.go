package fsx

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// MkdirAll creates dir and any missing parents, each with exactly perm
// (permission and sticky/setgid bits; the umask does not apply). It
// returns the directories it created, outermost first. Directories that
// exist keep their mode.
func MkdirAll(dir string, perm fs.FileMode) ([]string, error) {
	dir = filepath.Clean(dir)
	var missing []string
	for p := dir; ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err == nil {
			if !fi.IsDir() {
				return nil, &fs.PathError{Op: "mkdir", Path: p, Err: errors.New("not a directory")}
			}
			break
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		missing = append(missing, p)
		if parent := filepath.Dir(p); parent == p {
			break
		}
	}
	var created []string
	for i := len(missing) - 1; i >= 0; i-- {
		p := missing[i]
		if err := os.Mkdir(p, perm.Perm()); err != nil {
			if errors.Is(err, fs.ErrExist) {
				continue // made meanwhile by someone else: theirs
			}
			return created, err
		}
		if err := os.Chmod(p, perm); err != nil {
			return created, err
		}
		created = append(created, p)
	}
	return created, nil
}

// Mkdir is MkdirAll without the list.
func Mkdir(dir string, perm fs.FileMode) error {
	_, err := MkdirAll(dir, perm)
	return err
}

// DirMode is the mode of parent directories that WriteFile creates.
const DirMode fs.FileMode = 0o755

// WriteFile writes data to name atomically (a temporary file beside it,
// renamed over it) with exactly perm, creating missing parent
// directories with DirMode.
func WriteFile(name string, data []byte, perm fs.FileMode) error {
	if err := Mkdir(filepath.Dir(name), DirMode); err != nil {
		return err
	}
	tmp := name + ".paczfs-new"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	return fill(f, data, perm, func() error { return os.Rename(tmp, name) }, func() { os.Remove(tmp) })
}

// fill writes data to the new temporary file f, gives it exactly perm,
// closes it and renames it into place; on any failure it removes it.
func fill(f *os.File, data []byte, perm fs.FileMode, rename func() error, remove func()) error {
	_, err := f.Write(data)
	if err == nil {
		err = f.Chmod(perm)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = rename()
	}
	if err != nil {
		remove()
	}
	return err
}

// Umask returns the process's file mode creation mask without changing it
// (the umask system call can only read it by setting it, which would race
// with every other goroutine creating files).
func Umask() (fs.FileMode, error) {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, fmt.Errorf("read umask: %w", err)
	}
	return parseUmask(data)
}

func parseUmask(status []byte) (fs.FileMode, error) {
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		if v, ok := bytes.CutPrefix(sc.Bytes(), []byte("Umask:")); ok {
			m, err := strconv.ParseUint(string(bytes.TrimSpace(v)), 8, 32)
			if err != nil {
				return 0, fmt.Errorf("read umask: %q: %w", v, err)
			}
			return fs.FileMode(m) & fs.ModePerm, nil
		}
	}
	return 0, errors.New("read umask: no Umask line in /proc/self/status (Linux 4.7 or later has it)")
}

// MkdirAllIn is MkdirAll inside root: the directories made have exactly
// perm, and no link leads out of root (os.Root refuses it).
func MkdirAllIn(root *os.Root, dir string, perm fs.FileMode) error {
	dir = filepath.Clean(dir)
	if dir == "." || dir == "/" {
		return nil
	}
	if fi, err := root.Stat(dir); err == nil {
		if !fi.IsDir() {
			return &fs.PathError{Op: "mkdir", Path: dir, Err: errors.New("not a directory")}
		}
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := MkdirAllIn(root, filepath.Dir(dir), perm); err != nil {
		return err
	}
	if err := root.Mkdir(dir, perm); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return root.Chmod(dir, perm)
}

// WriteFileIn is WriteFile for name inside root: the file and its parent
// directories are reached without following a link out of root, so a
// target's absolute link never sends a write to the build host.
func WriteFileIn(root *os.Root, name string, data []byte, perm fs.FileMode) error {
	name = strings.TrimPrefix(filepath.Clean("/"+name), "/")
	if err := MkdirAllIn(root, filepath.Dir(name), DirMode); err != nil {
		return err
	}
	tmp := name + ".paczfs-new"
	// A leftover, or a link put there: removed, never followed.
	if err := root.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	f, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	return fill(f, data, perm, func() error { return root.Rename(tmp, name) }, func() { root.Remove(tmp) })
}

package image

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/paczfs/paczfs/hooks"
	"github.com/paczfs/paczfs/internal/chroot"
	"github.com/paczfs/paczfs/internal/fsx"
	"github.com/paczfs/paczfs/zfs"
)

func builtinStages() map[hooks.Stage]stageFunc {
	m := map[hooks.Stage]stageFunc{}
	for _, d := range pipeline() {
		m[d.stage] = d.run
	}
	return m
}

func chrootArgs(root string, argv ...string) []string { return chroot.Command(root, argv...) }

func (st *build) zfs() *zfs.Client {
	return zfs.New(zfs.WithRunner(st.b.runner), zfs.WithLogger(st.b.log))
}

// writeFile writes name (relative to root) with exactly mode, and any
// missing parent directory with 0755, whatever the caller's umask, never
// through a link that leads out of root (a target's absolute link would
// otherwise resolve on the build host). A regular file that already holds
// data with mode is left alone: in a build derived from a release,
// rewriting it would put its blocks in the incremental stream again (the
// device tool alone is 12 MB).
func writeFile(root, name string, data []byte, mode os.FileMode) error {
	r, err := os.OpenRoot(root)
	if err != nil {
		return err
	}
	defer r.Close()
	rel := strings.TrimPrefix(filepath.Clean("/"+name), "/")
	if fi, err := r.Lstat(rel); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm() == mode.Perm() && fi.Size() == int64(len(data)) {
		if have, err := r.ReadFile(rel); err == nil && bytes.Equal(have, data) {
			return nil
		}
	}
	if err := fsx.WriteFileIn(r, rel, data, mode); err != nil {
		return fmt.Errorf("%s in the target: %w", "/"+rel, err)
	}
	return nil
}

// writeFiles writes files (path in root: content) with writeFile, those
// whose content starts with #! executable (0755), the others 0644.
func writeFiles(root string, files map[string]string) error {
	for name, content := range files {
		mode := os.FileMode(0o644)
		if strings.HasPrefix(content, "#!") {
			mode = 0o755
		}
		if err := writeFile(root, strings.TrimPrefix(name, "/"), []byte(content), mode); err != nil {
			return err
		}
	}
	return nil
}

// removeEmptyDirs removes dir and its subdirectories bottom-up, only while
// they are empty: never os.RemoveAll, which would delete the files of
// anything still mounted below.
func removeEmptyDirs(dir string) error {
	// Never into a file system still mounted below it (a pool kept for
	// inspection, a hook's bind mount of a host directory): its empty
	// directories are not the build's.
	mounted := map[string]bool{}
	for _, m := range mountsBelow(filepath.Clean(dir)) {
		mounted[m] = true
	}
	var dirs []string
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		if mounted[p] {
			return filepath.SkipDir
		}
		dirs = append(dirs, p)
		return nil
	})
	for i := len(dirs) - 1; i >= 0; i-- {
		_ = os.Remove(dirs[i])
	}
	if _, err := os.Stat(dir); err == nil {
		return fmt.Errorf("%s is not empty; left in place", dir)
	}
	return nil
}

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"syscall"

	"github.com/paczfs/paczfs/hooks"
)

// remoteCacheRE is the original's host:path test, tightened: exactly one
// colon, and no slash before it (so ./a:b and /srv/x:y stay local paths).
var remoteCacheRE = regexp.MustCompile(`^[^:/]+:[^:]+$`)

// isRemoteCache reports whether CACHE_PATH names a directory on another
// host, to be mounted with sshfs.
func isRemoteCache(p string) bool { return remoteCacheRE.MatchString(p) }

// sshfsCache is a remote package cache mounted read-only for one build.
// Packages the remote cache lacks are downloaded to a scratch directory
// beside it (pacman downloads into the first cache directory, and the
// mount is read-only).
type sshfsCache struct {
	Remote   string
	dir      string // our temporary directory
	Mount    string // dir/remote, the sshfs mount point
	Download string // dir/download
}

// newSSHFSCache makes the directories and registers their removal.
func newSSHFSCache(remote string, deferFn func(string, func(context.Context) error)) (*sshfsCache, error) {
	dir, err := os.MkdirTemp("", "paczfs-cache-")
	if err != nil {
		return nil, err
	}
	c := &sshfsCache{Remote: remote, dir: dir, Mount: filepath.Join(dir, "remote"), Download: filepath.Join(dir, "download")}
	deferFn("remove "+dir, func(context.Context) error {
		// Never RemoveAll through a mount point: the mount point and our
		// directory are removed only when empty.
		return errors.Join(os.RemoveAll(c.Download), os.Remove(c.Mount), os.Remove(c.dir))
	})
	for _, d := range []string{c.Mount, c.Download} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// CacheDirs are the pacman cache directories: downloads first.
func (c *sshfsCache) CacheDirs() []string { return []string{c.Download, c.Mount} }

// mount runs sshfs. The unmount is registered first, so it runs at exit
// whatever happens, also when sshfs fails half-way or Ctrl-C stops it.
func (c *sshfsCache) mount(ctx context.Context, r hooks.Runner, deferFn func(string, func(context.Context) error)) error {
	deferFn("unmount "+c.Mount, func(ctx context.Context) error { return c.unmount(ctx, r) })
	if _, err := r.Run(ctx, hooks.Cmd{Args: []string{"sshfs", "-o", "ro", c.Remote, c.Mount}}); err != nil {
		return fmt.Errorf("CACHE_PATH: mount %s with sshfs (ssh options go in root's ~/.ssh/config): %w", c.Remote, err)
	}
	return nil
}

func (c *sshfsCache) unmount(ctx context.Context, r hooks.Runner) error {
	if !isMountPoint(c.Mount) {
		return nil
	}
	var errs []error
	for _, argv := range [][]string{{"fusermount3", "-u", c.Mount}, {"fusermount", "-u", c.Mount}, {"umount", c.Mount}} {
		_, err := r.Run(ctx, hooks.Cmd{Args: argv})
		if err == nil || !isMountPoint(c.Mount) {
			return nil
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// isMountPoint reports whether dir is on another filesystem than its
// parent. A dead sshfs connection makes stat fail: that counts as mounted.
func isMountPoint(dir string) bool {
	var st, parent syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		return !errors.Is(err, os.ErrNotExist)
	}
	if err := syscall.Stat(filepath.Dir(dir), &parent); err != nil {
		return true
	}
	return st.Dev != parent.Dev
}

package pacman

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/paczfs/paczfs/internal/osthread"
)

// onOwnThread runs fn on an OS thread of its own, with its own mount
// namespace and filesystem context (current directory, umask, root).
//
// libalpm changes the current directory and umask while it extracts, and
// the scriptlet mounts must not reach the host: both stay on this thread,
// which ends with fn (internal/osthread). The thread's umask is 022
// whatever the caller's: the directories libalpm makes for the local
// database, and the files gpg makes when libalpm checks signatures, must
// not depend on the build host.
func onOwnThread(fn func() error) error {
	return osthread.Run(unix.CLONE_NEWNS|unix.CLONE_FS, func() error {
		// Nothing mounted from here on propagates to the host.
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			return fmt.Errorf("private mount namespace: %w", err)
		}
		unix.Umask(installUmask)
		return fn()
	})
}

// installUmask is the file mode creation mask of everything paczfs runs for an
// install: libalpm's thread, and through it gpg, scriptlets and hooks.
const installUmask = 0o022

type apiMount struct {
	source, target, fstype string
	flags                  uintptr
	data                   string
	mode                   os.FileMode // of the directory left in the root
}

// apiMounts are the filesystems pacstrap gives scriptlets and hooks:
// fresh instances, none bound from the host (no host /run or /tmp leaks in).
func apiMounts(root string) []apiMount {
	j := func(p string) string { return filepath.Join(root, p) }
	return []apiMount{
		{"proc", j("proc"), "proc", unix.MS_NOSUID | unix.MS_NOEXEC | unix.MS_NODEV, "", 0o555},
		{"sys", j("sys"), "sysfs", unix.MS_NOSUID | unix.MS_NOEXEC | unix.MS_NODEV | unix.MS_RDONLY, "", 0o555},
		{"udev", j("dev"), "devtmpfs", unix.MS_NOSUID, "mode=0755", 0o755},
		{"devpts", j("dev/pts"), "devpts", unix.MS_NOSUID | unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5", 0o755},
		{"shm", j("dev/shm"), "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777", os.ModeSticky | 0o777},
		{"run", j("run"), "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=0755", 0o755},
		{"tmp", j("tmp"), "tmpfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_STRICTATIME, "mode=1777", os.ModeSticky | 0o777},
	}
}

// mountAPI mounts the API filesystems under root (call on the thread of
// onOwnThread) and returns the function that unmounts them, in reverse,
// and the mount point directories it had to create.
func mountAPI(root string, log *slog.Logger) (unmountAll func() error, created []string, err error) {
	var done []string
	unmount := func() error {
		var errs []error
		for i := len(done) - 1; i >= 0; i-- {
			if err := unix.Unmount(done[i], 0); err != nil {
				errs = append(errs, fmt.Errorf("unmount %s: %w", done[i], err))
			}
		}
		done = nil
		return errors.Join(errs...)
	}
	for _, m := range apiMounts(root) {
		// The directories stay in the root: give them the modes packages
		// expect (/proc 0555, /tmp 1777...), or pacman -Qkk reports them.
		if _, err := os.Lstat(m.target); errors.Is(err, os.ErrNotExist) {
			if err := os.Mkdir(m.target, m.mode.Perm()); err != nil {
				return nil, nil, errors.Join(err, unmount())
			}
			if err := os.Chmod(m.target, m.mode); err != nil {
				return nil, nil, errors.Join(err, unmount())
			}
			created = append(created, m.target)
		}
		if err := unix.Mount(m.source, m.target, m.fstype, m.flags, m.data); err != nil {
			return nil, nil, errors.Join(fmt.Errorf("mount %s on %s: %w", m.fstype, m.target, err), unmount())
		}
		log.Debug("mounted", "fstype", m.fstype, "on", m.target)
		done = append(done, m.target)
	}
	return unmount, created, nil
}

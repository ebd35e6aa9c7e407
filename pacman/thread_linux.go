package pacman

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
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

// onInstallThread is onOwnThread for a transaction (Install, Sync), in
// which libalpm runs scriptlets and hooks in the target and gpgme runs
// gpg. The thread's children also get a PID namespace of their own,
// whose first process is a keeper started here: every process they start
// is in it, daemons included (the gpg-agent that archlinux-keyring's
// scriptlet starts through pacman-key --populate, which gpgconf --kill
// from outside may not reach: its socket directory depends on
// /run/user/0). When fn returns, or the thread or the process dies, the
// keeper dies, and the kernel kills every process left in the namespace,
// as pacstrap's unshare --pid does (arch-install-scripts #21). Nothing
// started in the target keeps its datasets busy after the transaction.
func onInstallThread(log *slog.Logger, fn func() error) error {
	return onOwnThread(func() error {
		stop, err := pidNamespace()
		if errors.Is(err, errNoPIDNamespace) {
			// A host that refuses PID namespaces: the transaction still
			// runs; what it leaves is stopped by close (gpgconf --kill).
			log.Warn("no PID namespace for the transaction", "err", err)
			return fn()
		}
		if err != nil {
			return err
		}
		defer stop()
		return fn()
	})
}

// errNoPIDNamespace: the kernel refused a PID namespace (nothing changed).
var errNoPIDNamespace = errors.New("no PID namespace")

// pidNamespace puts the calling thread's future children in a new PID
// namespace and starts its first process, the keeper (cat on a pipe only
// this process writes: it ends when stop closes it, or when this process
// dies). stop ends it and waits. Once the namespace is made, a failure
// to start the keeper is an error: the thread can fork nothing more.
// Call on a locked thread that ends with the work (onOwnThread).
func pidNamespace() (stop func(), err error) {
	cat, err := exec.LookPath("cat")
	if err != nil {
		return nil, err
	}
	// The first process forked after the unshare is the namespace's
	// first, and when it ends no process can be forked there again. Go
	// probes clone(CLONE_PIDFD) once per process with a child that exits
	// at once: let that happen before, with a fork that does nothing.
	if err := exec.Command(cat, "/dev/null").Run(); err != nil {
		return nil, err
	}
	if err := unix.Unshare(unix.CLONE_NEWPID); err != nil {
		return nil, fmt.Errorf("%w: unshare(CLONE_NEWPID): %w", errNoPIDNamespace, err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	// No Pdeathsig: Go's child checks its parent is still there by
	// getppid, which is 0 for the first process of a namespace, and would
	// kill itself. The pipe does it: the kernel closes it when this
	// process dies, however it dies.
	keeper := exec.Command(cat)
	keeper.Stdin = r
	err = keeper.Start()
	r.Close()
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("start the PID namespace's first process: %w", err)
	}
	return func() {
		w.Close()
		_ = keeper.Process.Kill()
		_ = keeper.Wait()
	}, nil
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

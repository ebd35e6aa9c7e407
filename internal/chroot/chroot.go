package chroot

import "strings"

// PATH inside the target: Arch's and Debian's directories.
const PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Umask is the file mode creation mask of chrooted commands (as
// pacstrap's and libalpm's scriptlets get): what an initramfs generator,
// locale-gen or systemctl enable makes in the target never depends on the
// build host's umask.
const Umask = "022"

// Environ returns the whole environment of a chrooted command, before
// the variables a caller adds with CommandEnv.
func Environ() []string { return []string{"PATH=" + PATH, "HOME=/root", "LANG=C.UTF-8", "TERM=dumb"} }

// script runs as root in a new mount namespace whose mounts do not
// propagate back (unshare --propagation private), so every mount below is
// private to this command and its children. The command gets umask 022
// and a clean environment, whatever the caller's.
func script() string {
	return `set -e
umask ` + Umask + `
r=$1; shift
for d in proc sys dev run; do [ -d "$r/$d" ] || mkdir -m 0755 "$r/$d"; done
mount -t proc -o nosuid,noexec,nodev proc "$r/proc"
mount -t sysfs -o nosuid,noexec,nodev,ro sys "$r/sys"
mount --rbind /dev "$r/dev"
mount -t tmpfs -o nosuid,nodev,mode=0755 run "$r/run"
exec chroot "$r" /usr/bin/env -i ` + strings.Join(Environ(), " ") + ` "$@"
`
}

// Command returns the argv that runs argv chrooted in root. Environment
// variables the caller passes are not inherited by argv (the target gets a
// clean environment); use Env for those.
func Command(root string, argv ...string) []string {
	return CommandEnv(root, nil, argv...)
}

// unshare is the argv prefix that gives the command a mount namespace of
// its own whose mounts do not propagate back, and a PID namespace of its
// own in which it is the first process, as arch-chroot and pacstrap run
// theirs: when it exits, the kernel kills every process left in it (a
// gpg-agent that pacman-key started, a daemon a hook forked), and
// --kill-child kills it when unshare itself dies (SIGKILL included).
// Nothing the command starts outlives it to keep the target busy.
func unshare() []string {
	return []string{"unshare", "--mount", "--propagation", "private", "--pid", "--fork", "--kill-child", "--"}
}

// CommandEnv is Command with extra KEY=VALUE variables for argv.
func CommandEnv(root string, env []string, argv ...string) []string {
	args := append(unshare(), "/bin/sh", "-c", script(), "paczfs-chroot", root)
	args = append(args, env...)
	return append(args, argv...)
}

// Package chroot builds command lines that run a program inside a target
// root with the API filesystems it expects (/proc, /sys, /dev, /run), in a
// private mount namespace of that command alone, and a PID namespace of
// its own: the mounts are never visible on the build host and vanish when
// the command exits, even if paczfs is killed, and so does every process
// the command started (daemons included). This is what arch-chroot does,
// without its cleanup traps.
//
// The commands need root and util-linux (unshare, mount) and coreutils'
// chroot on the build host, and /usr/bin/env in the target.
package chroot

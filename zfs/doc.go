// Package zfs drives OpenZFS pools and datasets through the zpool and zfs
// commands, run by a hooks.Runner with a context.
//
// Pools are created with a temporary in-core name (zpool create -t), so the
// name written on disk may equal a pool the build host already has; with an
// altroot and cachefile=none, so nothing of the build host is recorded; and
// with ashift=12 and the dataset defaults recommended for a root-on-ZFS
// Linux system (DefaultPoolProperties, DefaultFSProperties), each of which
// can be overridden or dropped. Import and export are idempotent.
//
// Argument lists are built by pure functions (CreatePoolArgs,
// ImportPoolArgs, SendArgs...) with every option before the pool name and
// properties sorted. Errors callers branch on are sentinels (ErrNotFound,
// ErrExists, ErrBusy, ErrHasDependents) classified from zfs's messages, and
// wrap the *hooks.CmdError with the command line and stderr.
//
// Send and Receive stream to an io.Writer and from an io.Reader and stop
// when the context is cancelled; Receive leaves the result unmounted unless
// asked.
//
// Needs root and the zfs kernel module; tested against OpenZFS 2.3.
package zfs

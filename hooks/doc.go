// Package hooks holds paczfs's extension points: the things a caller plugs
// into a build.
//
// The lowest one is [Runner]: every external program paczfs starts (zpool,
// zfs, mount, chroot, qemu-img...) goes through a Runner, which takes a
// [context.Context], logs the command line with log/slog and returns a
// [*CmdError] carrying argv, exit code and the tail of stderr. [ExecRunner]
// runs commands on the host; package hookstest has a scriptable fake that
// records what was run, for unit tests of ordering, errors and rollback.
//
// Runner lives here, not in the packages that use it (disk, zfs, pacman,
// boot, image), because callers must be able to name it and this package
// imports nothing else from paczfs, so every other package can import it.
package hooks

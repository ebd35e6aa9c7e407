// Package fsx writes files and directories with the modes it is given,
// whatever the process's umask: the build host's umask must never reach
// an image (a caller with umask 077 would otherwise ship an /etc that only
// root can enter). Directories that already exist are left as they are.
//
// It also reads the process's umask without changing it (Umask), for the
// few files paczfs writes for the caller rather than into an image.
//
// Needs nothing; Umask reads /proc/self/status (Linux 4.7 or later).
package fsx

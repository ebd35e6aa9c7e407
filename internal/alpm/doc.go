// Package alpm is paczfs's binding to libalpm, pacman's library: the only
// cgo in paczfs. It covers what installing into a new root needs and
// go-alpm lacks: database refresh, transactions with error details, and
// every callback (log, event, progress, download, fetch, question).
//
// It uses only typedef names and declares pacman 7's sandbox functions
// weak, so it compiles against libalpm 13 (Debian 12), 14 and 15 (pacman
// 7: Arch, Debian 13). Without cgo it builds too, and Open reports
// ErrUnavailable.
//
// libalpm is not thread-safe and changes process state while it works
// (current directory, umask); package pacman runs it on a dedicated OS
// thread with its own mount namespace and filesystem context.
package alpm

// Package osthread runs a function on an OS thread of its own that ends
// with it: what the function changes about that thread (a mount
// namespace, a filesystem context with its own umask and current
// directory) can never reach another goroutine or the caller.
//
// Used by package pacman (libalpm changes the umask and directory while
// it extracts; scriptlet mounts stay private) and by hooks.ExecRunner
// (commands start with a fixed umask without changing the process's).
//
// Needs Linux.
package osthread

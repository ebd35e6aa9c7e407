// Package cleanup is a LIFO stack of release actions: push one right after
// acquiring something (a loop device, an imported pool, a mount), and
// Unwind releases everything in reverse order, on success and on failure.
//
// Unwind keeps going when an action fails and reports every failure; it
// runs even when the build's context is cancelled (Ctrl-C), with a bounded
// time per action, so an interrupted build still leaves the host clean.
//
// It is public (not internal to image) because a Go program that composes
// the typed packages itself, as examples/storage does with disk and zfs,
// needs the same guarantee image.Builder gives: whatever it acquired is
// released, in order, however the program ends short of SIGKILL.
package cleanup

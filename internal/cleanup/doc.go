// Package cleanup is a LIFO stack of release actions: push one right after
// acquiring something (a loop device, an imported pool, a mount), and
// Unwind releases everything in reverse order, on success and on failure.
//
// Unwind keeps going when an action fails and reports every failure; it
// runs even when the build's context is cancelled (Ctrl-C), with a bounded
// time per action, so an interrupted build still leaves the host clean.
package cleanup

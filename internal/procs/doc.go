// Package procs answers "what keeps this busy?": which processes hold a
// directory tree by their root, working directory, open files, or mounts
// in a mount namespace of their own. The image builder adds it to a pool
// export that fails as busy; the lab tests use it in failure messages.
//
// It reads /proc and needs root to see every process.
package procs

package osthread

import (
	"fmt"
	"runtime"

	"golang.org/x/sys/unix"
)

// Run calls fn on a locked OS thread that has first unshared flags (for
// example unix.CLONE_FS, unix.CLONE_NEWNS; 0 for none) and returns fn's
// error. The thread is never handed back to the Go scheduler (no
// UnlockOSThread): it ends with the goroutine, and with it everything fn
// changed about it, even after a panic, which Run returns as an error.
//
// Never the process's main thread: a locked goroutine that ends there
// cannot end the thread (the runtime parks it for good), so what fn
// changed would outlive it, and /proc/self (the main thread's view)
// would show it. On the main thread Run hands over to a new goroutine,
// which the runtime cannot place there while it is locked.
func Run(flags int, fn func() error) error {
	errc := make(chan error, 1)
	var run func()
	run = func() {
		runtime.LockOSThread()
		if unix.Gettid() == unix.Getpid() {
			go run()
			runtime.UnlockOSThread()
			return
		}
		defer func() {
			if r := recover(); r != nil {
				errc <- fmt.Errorf("panic: %v", r)
			}
		}()
		if flags != 0 {
			if err := unix.Unshare(flags); err != nil {
				errc <- fmt.Errorf("unshare: %w", err)
				return
			}
		}
		errc <- fn()
	}
	go run()
	return <-errc
}

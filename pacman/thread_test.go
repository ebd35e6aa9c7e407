//go:build linux

package pacman

import (
	"runtime"
	"testing"

	"github.com/stretchr/testify/assert"
	"golang.org/x/sys/unix"
)

// The install thread must never be the main thread, whose namespace
// would outlive the install. Pin the main goroutine elsewhere first so
// the runtime is free to offer the main thread to others.
func TestOnOwnThreadIsNeverTheMainThread(t *testing.T) {
	if unix.Geteuid() != 0 {
		t.Skip("unshare(CLONE_NEWNS) needs root; the lab tests run this as root")
	}
	runtime.GOMAXPROCS(4)
	for i := 0; i < 200; i++ {
		var tid int
		err := onOwnThread(func() error { tid = unix.Gettid(); return nil })
		assert.NoError(t, err)
		assert.NotEqual(t, unix.Getpid(), tid, "run %d ran on the main thread", i)
	}
}

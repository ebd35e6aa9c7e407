//go:build linux

package pacman

import (
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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

// What a transaction starts in the target dies with it, daemons included
// (the gpg-agent pacman-key --populate leaves): the install thread's
// children are in a PID namespace whose first process ends with the
// transaction.
func TestDaemonsDieWithTheTransaction(t *testing.T) {
	if unix.Geteuid() != 0 {
		t.Skip("unshare(CLONE_NEWPID) needs root; make unit and the lab run as root")
	}
	tag := "paczfs-daemon-test-" + strconv.Itoa(os.Getpid())
	running := func() bool {
		out, _ := exec.Command("pgrep", "-f", tag).Output()
		return len(strings.TrimSpace(string(out))) > 0
	}
	err := onInstallThread(slog.New(slog.DiscardHandler), func() error {
		// A detached daemon, as gpg-agent --daemon is (its own session,
		// reparented when the command that started it exits).
		d := exec.Command("setsid", "sh", "-c", "sleep 1000; : "+tag)
		if err := d.Start(); err != nil {
			return err
		}
		go func() { _ = d.Wait() }()
		self, _ := os.Readlink("/proc/self/ns/pid")
		child, err := os.Readlink("/proc/" + strconv.Itoa(d.Process.Pid) + "/ns/pid")
		if err != nil {
			return err
		}
		assert.NotEqual(t, self, child, "the transaction's children are in a PID namespace of their own")
		assert.Eventually(t, running, 5*time.Second, 20*time.Millisecond, "the daemon runs during the transaction")
		return nil
	})
	require.NoError(t, err)
	assert.Eventually(t, func() bool { return !running() }, 10*time.Second, 20*time.Millisecond, "the daemon outlived the transaction")
}

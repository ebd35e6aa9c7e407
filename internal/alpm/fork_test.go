//go:build cgo && linux

package alpm

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// exitOnChildLog is a Callbacks whose Log ends the process with status 3
// when it sees the forked child's line: if the guard let the call through
// to Go in the child, the child would exit 3 (or hang, reported as 124).
type exitOnChildLog struct{ nopCallbacks }

func (exitOnChildLog) Log(level int, msg string) {
	if strings.Contains(msg, "forked child") {
		os.Exit(3)
	}
}

type nopCallbacks struct{}

func (nopCallbacks) Log(int, string)                     {}
func (nopCallbacks) Event(Event)                         {}
func (nopCallbacks) Progress(int, string, int, int, int) {}
func (nopCallbacks) Download(string, int, int64, int64)  {}
func (nopCallbacks) Fetch(string, string, bool) int      { return -1 }
func (nopCallbacks) Question(int, string)                {}

// libalpm 15's forked children log before exec; Go code must never run in
// a forked child (it can wait forever on runtime locks). The callbacks
// return at once there.
func TestCallbacksNeverRunGoInAForkedChild(t *testing.T) {
	root := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(root, "db"), 0o755))
	h, err := Open(Options{Root: root, DBPath: filepath.Join(root, "db")}, exitOnChildLog{})
	require.NoError(t, err)
	defer h.Close()
	for i := 0; i < 20; i++ {
		assert.Equal(t, 0, h.forkAndLog(), "run %d: the child must return from the log callback without Go", i)
	}
}

// libalpm's children (scriptlets, hooks, gpg) get ChildEnv, not the
// process's environment, when forked from the thread that opened the
// handle; other threads' forks are untouched, and Close restores them.
func TestChildrenGetTheHandlesEnvironment(t *testing.T) {
	t.Setenv("LANG", "de_DE.UTF-8")
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	root := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(root, "db"), 0o755))
	assert.True(t, forkGetenv("LANG", "de_DE.UTF-8", false), "before Open: the process's")
	h, err := Open(Options{Root: root, DBPath: filepath.Join(root, "db"), ChildEnv: []string{"LANG=C", "PATH=/usr/bin"}}, nopCallbacks{})
	require.NoError(t, err)
	assert.True(t, forkGetenv("LANG", "C", false), "a forked child sees ChildEnv")
	assert.True(t, forkGetenv("PATH", "/usr/bin", false))
	assert.True(t, forkGetenv("HOME", "", true), "and nothing else")
	other := make(chan bool)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		other <- forkGetenv("LANG", "de_DE.UTF-8", false)
	}()
	assert.True(t, <-other, "another thread's fork keeps the process's environment")
	require.NoError(t, h.Close())
	assert.True(t, forkGetenv("LANG", "de_DE.UTF-8", false), "after Close: the process's again")
}

//go:build cgo && linux

package alpm

import (
	"os"
	"path/filepath"
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

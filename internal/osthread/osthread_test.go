package osthread

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func TestUmaskStaysOnTheThread(t *testing.T) {
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	dir := t.TempDir()
	err := Run(unix.CLONE_FS, func() error {
		assert.NotEqual(t, unix.Getpid(), unix.Gettid(), "never the main thread")
		syscall.Umask(0o077)
		return os.Mkdir(filepath.Join(dir, "private"), 0o777)
	})
	require.NoError(t, err)
	fi, err := os.Stat(filepath.Join(dir, "private"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o700), fi.Mode().Perm(), "the thread's umask applied there")
	// The process's umask is untouched.
	m := syscall.Umask(0o022)
	assert.Equal(t, 0o022, m)
}

func TestErrorsAndPanicsComeBack(t *testing.T) {
	boom := errors.New("boom")
	assert.ErrorIs(t, Run(0, func() error { return boom }), boom)
	assert.ErrorContains(t, Run(0, func() error { panic("oops") }), "panic: oops")
}

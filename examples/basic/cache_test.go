package main

import (
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/paczfs/paczfs/cleanup"
	"github.com/paczfs/paczfs/hooks/hookstest"
)

// The mount itself needs sshfs and a host; this checks the bookkeeping
// around it: the cache directories, and that a failed mount still leaves
// nothing behind.
func TestSSHFSCacheCleansUpAfterAFailedMount(t *testing.T) {
	var stack cleanup.Stack
	c, err := newSSHFSCache("cachehost:/var/cache/pacman/pkg", stack.Push)
	require.NoError(t, err)
	assert.Equal(t, []string{c.Download, c.Mount}, c.CacheDirs(), "downloads go to the first, writable, directory")

	r := (&hookstest.FakeRunner{}).On("sshfs", hookstest.Response{ExitCode: 1, Stderr: "connection refused"})
	err = c.mount(t.Context(), r, stack.Push)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "CACHE_PATH: mount cachehost:/var/cache/pacman/pkg with sshfs")
	assert.Equal(t, []string{"sshfs -o ro cachehost:/var/cache/pacman/pkg " + c.Mount}, r.Calls())

	require.NoError(t, stack.Unwind(t.Context()))
	assert.Len(t, r.Calls(), 1, "nothing mounted, nothing to unmount")
	_, err = os.Stat(c.dir)
	assert.ErrorIs(t, err, os.ErrNotExist)
}

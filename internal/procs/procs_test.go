package procs

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestHoldersNamesAProcessWorkingInTheTree(t *testing.T) {
	dir := t.TempDir()
	assert.Empty(t, Holders(dir))
	cmd := exec.Command("sleep", "30")
	cmd.Dir = dir
	require.NoError(t, cmd.Start())
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	h := Holders(dir)
	require.Len(t, h, 1)
	assert.True(t, strings.Contains(h[0], "(sleep 30): cwd"), h[0])
	assert.Empty(t, Holders(""))
}

// A tree is the directory and what is below it, never a directory whose
// name only begins the same: /x/build is not /x/build2.
func TestFindStopsAtTheDirectoryBoundary(t *testing.T) {
	base := t.TempDir()
	dir, beside := base+"/build", base+"/build2"
	for _, d := range []string{dir, beside} {
		require.NoError(t, exec.Command("mkdir", "-p", d).Run())
	}
	cmd := exec.Command("sleep", "30")
	cmd.Dir = beside
	require.NoError(t, cmd.Start())
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	assert.Empty(t, Find(dir), "a process working in %s", beside)
	assert.Len(t, Find(beside), 1)
	assert.Len(t, Find(beside+"/"), 1, "the prefix is cleaned")
}

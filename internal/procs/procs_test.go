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

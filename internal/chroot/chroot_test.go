package chroot

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCommandShape(t *testing.T) {
	args := CommandEnv("/mnt/root", []string{"A=1"}, "locale-gen")
	require.Equal(t, []string{"unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c"}, args[:7])
	assert.Equal(t, []string{"paczfs-chroot", "/mnt/root", "A=1", "locale-gen"}, args[8:])
	assert.Contains(t, args[7], `exec chroot "$r" /usr/bin/env -i PATH=`)
}

// The script must be valid sh and stop at its first failure, before it
// mounts or chroots anything: a root that is a regular file fails at the
// first mkdir. (Safe as root too: nothing is mounted.)
func TestScriptStopsAtFirstFailure(t *testing.T) {
	root := filepath.Join(t.TempDir(), "file")
	require.NoError(t, os.WriteFile(root, nil, 0o644))
	args := Command(root, "/bin/true")
	out, err := exec.Command(args[5], args[6:]...).CombinedOutput()
	require.Error(t, err, "%s", out)
	assert.Contains(t, string(out), "mkdir")
	assert.NotContains(t, string(out), "mount")
	assert.NotContains(t, string(out), "chroot:")
}

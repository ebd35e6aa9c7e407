package chroot

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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

// The script must be valid sh and stop at the first failing mount: run it
// unprivileged against a root that cannot be mounted on and check that it
// fails before exec.
func TestScriptStopsAtFirstFailure(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("as root the mounts would succeed; the lab tests cover the real run")
	}
	root := t.TempDir()
	args := Command(root, "/bin/true")
	out, err := exec.Command(args[5], args[6:]...).CombinedOutput()
	require.Error(t, err, "%s", out)
	assert.False(t, strings.Contains(string(out), "chroot:"), "must not reach chroot: %s", out)
	_, statErr := os.Stat(filepath.Join(root, "proc"))
	assert.NoError(t, statErr, "directories are created first")
}

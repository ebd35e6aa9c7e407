package labtest

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// pacstrap.sh mounts what pacstrap mounts under the root, runs the
// command as the first process of its own PID namespace, and leaves no
// mount behind.
func TestPacstrapScript(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting needs root; make unit and the lab run as root")
	}
	root := t.TempDir()
	out, err := exec.Command("sh", PacstrapScript(t), root, "sh", "-c", `echo pid $$; cut -d" " -f2,3 /proc/self/mounts | grep "^`+root+`"`).CombinedOutput()
	require.NoError(t, err, "%s", out)
	for _, want := range []string{"pid 1", root + "/proc proc", root + "/sys sysfs", root + "/dev devtmpfs", root + "/dev/pts devpts",
		root + "/dev/shm tmpfs", root + "/run tmpfs", root + "/tmp tmpfs"} {
		assert.Contains(t, string(out), want+"\n")
	}
	mounts, err := os.ReadFile("/proc/self/mounts")
	require.NoError(t, err)
	assert.NotContains(t, string(mounts), root, "the mounts vanish with the command")
	assert.True(t, strings.HasPrefix(string(out), "pid 1\n"), "%s", out)
}

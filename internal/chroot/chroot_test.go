package chroot

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCommandShape(t *testing.T) {
	args := CommandEnv("/mnt/root", []string{"A=1"}, "locale-gen")
	require.Equal(t, []string{"unshare", "--mount", "--propagation", "private", "--pid", "--fork", "--kill-child", "--", "/bin/sh", "-c"}, args[:10])
	assert.Equal(t, []string{"paczfs-chroot", "/mnt/root", "A=1", "locale-gen"}, args[11:])
	assert.Contains(t, args[10], `exec chroot "$r" /usr/bin/env -i PATH=`)
}

// The script must be valid sh and stop at its first failure, before it
// mounts or chroots anything: a root that is a regular file fails at the
// first mkdir. (Safe as root too: nothing is mounted.)
func TestScriptStopsAtFirstFailure(t *testing.T) {
	root := filepath.Join(t.TempDir(), "file")
	require.NoError(t, os.WriteFile(root, nil, 0o644))
	args := Command(root, "/bin/true")
	out, err := exec.Command(args[8], args[9:]...).CombinedOutput()
	require.Error(t, err, "%s", out)
	assert.Contains(t, string(out), "mkdir")
	assert.NotContains(t, string(out), "mount")
	assert.NotContains(t, string(out), "chroot:")
}

// A daemon the chrooted command starts (as pacman-key's gpg-agent is)
// dies with the command: the command is the first process of a PID
// namespace of its own. Run for real where unshare may (root).
func TestDaemonsDieWithTheCommand(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("unshare --pid needs root; make unit and the lab run as root")
	}
	tag := "paczfs-chroot-test-" + strconv.Itoa(os.Getpid())
	// The command forks a detached daemon (setsid: its own session,
	// reparented when its parent exits), sees it run, says its own pid
	// and exits.
	script := `echo $$; setsid sh -c "sleep 1000; : $0" > /dev/null 2>&1 < /dev/null &
for i in 1 2 3 4 5 6 7 8 9 10; do pgrep -f "$0" > /dev/null && { echo running; exit 0; }; sleep 0.1; done; echo "never started"`
	args := append(unshare(), "/bin/sh", "-c", script, tag)
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Equal(t, "1\nrunning\n", string(out), "the command is the first process of its PID namespace, and its daemon ran")
	require.Eventually(t, func() bool {
		pids, _ := exec.Command("pgrep", "-f", tag).Output()
		return len(strings.TrimSpace(string(pids))) == 0
	}, 10*time.Second, 50*time.Millisecond, "the daemon outlived the command")
}

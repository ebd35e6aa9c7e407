package hooks_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/paczfs/paczfs/hooks"
)

func TestExecRunnerCapturesStdout(t *testing.T) {
	var r hooks.ExecRunner
	out, err := r.Run(t.Context(), hooks.Cmd{Args: []string{"sh", "-c", "echo hello; echo noise >&2"}})
	require.NoError(t, err)
	assert.Equal(t, "hello\n", string(out))
}

func TestExecRunnerErrorCarriesArgvExitCodeAndStderrTail(t *testing.T) {
	var r hooks.ExecRunner
	// 10000 bytes of 'x' then a final line: only the tail is kept.
	_, err := r.Run(t.Context(), hooks.Cmd{Args: []string{"sh", "-c", "head -c 10000 /dev/zero | tr '\\0' x >&2; echo; echo 'the last words' >&2; exit 3"}})
	var ce *hooks.CmdError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, 3, ce.ExitCode)
	assert.Equal(t, "sh", ce.Args[0])
	assert.LessOrEqual(t, len(ce.Stderr), hooks.StderrTail)
	assert.True(t, strings.HasSuffix(ce.Stderr, "the last words\n"), "stderr tail %q", ce.Stderr[len(ce.Stderr)-40:])
	assert.Contains(t, err.Error(), "exit status 3")
}

func TestExecRunnerCancelStopsProgram(t *testing.T) {
	r := hooks.ExecRunner{Grace: time.Second}
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := r.Run(ctx, hooks.Cmd{Args: []string{"sleep", "30"}})
	require.Error(t, err)
	assert.True(t, errors.Is(err, context.DeadlineExceeded), "got %v", err)
	assert.Less(t, time.Since(start), 5*time.Second)
	var ce *hooks.CmdError
	require.ErrorAs(t, err, &ce, "the command's error stays reachable")
	assert.Equal(t, "sleep", ce.Args[0])
}

func TestExecRunnerFeedsStdinAndStreamsStdout(t *testing.T) {
	var r hooks.ExecRunner
	var sb strings.Builder
	out, err := r.Run(t.Context(), hooks.Cmd{Args: []string{"tr", "a-z", "A-Z"}, Stdin: strings.NewReader("zfs send"), Stdout: &sb})
	require.NoError(t, err)
	assert.Nil(t, out)
	assert.Equal(t, "ZFS SEND", sb.String())
}

func TestQuoteArgs(t *testing.T) {
	assert.Equal(t, `zfs create -o 'com.example:note=a b' 'it'\''s'`,
		hooks.QuoteArgs([]string{"zfs", "create", "-o", "com.example:note=a b", "it's"}))
	assert.Equal(t, "zpool set bootfs=rpool/system/default rpool ''",
		hooks.QuoteArgs([]string{"zpool", "set", "bootfs=rpool/system/default", "rpool", ""}))
}

func TestExecRunnerCancelReturnsAlthoughTheConsumerStoppedReading(t *testing.T) {
	r := hooks.ExecRunner{Grace: time.Second}
	pr, pw := io.Pipe()
	defer pr.Close() // never read: yes blocks on a full pipe
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := r.Run(ctx, hooks.Cmd{Args: []string{"yes"}, Stdout: pw})
	require.Error(t, err)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, time.Since(start), 5*time.Second)
}

func TestExecRunnerCancelReturnsAlthoughTheProducerStoppedWriting(t *testing.T) {
	r := hooks.ExecRunner{Grace: time.Second}
	pr, pw := io.Pipe()
	defer pw.Close() // never written: cat waits for input
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := r.Run(ctx, hooks.Cmd{Args: []string{"cat"}, Stdin: pr})
	require.Error(t, err)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, time.Since(start), 5*time.Second)
}

func TestExecRunnerStreamsLargeOutputCompletely(t *testing.T) {
	var r hooks.ExecRunner
	var n countWriter
	_, err := r.Run(t.Context(), hooks.Cmd{Args: []string{"head", "-c", "10000000", "/dev/zero"}, Stdout: &n})
	require.NoError(t, err)
	assert.Equal(t, 10000000, int(n))
}

type countWriter int

func (c *countWriter) Write(p []byte) (int, error) { *c += countWriter(len(p)); return len(p), nil }

// A cancelled command's children go too: a shell that started a
// background sleeper must not leave it running.
func TestExecRunnerCancelStopsTheWholeProcessGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	r := &hooks.ExecRunner{Grace: time.Second}
	_, err := r.Run(ctx, hooks.Cmd{Args: []string{"sh", "-c", "sleep 300 & echo $! > " + pidFile + "; wait"}})
	require.ErrorIs(t, err, context.DeadlineExceeded)
	data, err := os.ReadFile(pidFile)
	require.NoError(t, err)
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		// Gone, or a zombie waiting for init.
		return err != nil || strings.Contains(string(stat), ") Z ")
	}, 5*time.Second, 50*time.Millisecond, "the background child %d still runs", pid)
}

// The build runner's commands start with its umask and environment
// whatever the caller's, and the caller's umask is left as it was.
func TestBuildRunnerFixesUmaskAndEnvironment(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	t.Setenv("LANG", "de_DE.UTF-8")
	t.Setenv("TZ", "America/New_York")
	t.Setenv("HOME", "/home/someone")
	t.Setenv("PAczFS_SECRET", "host value")
	t.Setenv("PATH", "/opt/mine/bin:/usr/bin:/bin:relative")
	r := hooks.BuildRunner(nil)
	dir := t.TempDir()
	out, err := r.Run(t.Context(), hooks.Cmd{Args: []string{"sh", "-c", `umask; mkdir "$1/d"; touch "$1/f"; env | sort`, "sh", dir}, Env: []string{"EXTRA=1"}})
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	assert.Equal(t, "0022", lines[0])
	env := lines[1:]
	for _, want := range []string{"LANG=C", "LC_ALL=C", "TZ=UTC", "HOME=/root", "EXTRA=1",
		"PATH=" + hooks.SystemPath + ":/opt/mine/bin"} {
		assert.Contains(t, env, want)
	}
	for _, e := range env {
		assert.NotContains(t, e, "PAczFS_SECRET")
		assert.NotContains(t, e, "de_DE")
	}
	for name, want := range map[string]os.FileMode{"d": 0o755, "f": 0o644} {
		fi, err := os.Stat(filepath.Join(dir, name))
		require.NoError(t, err)
		assert.Equal(t, want, fi.Mode().Perm(), name)
	}
	assert.Equal(t, 0o077, syscall.Umask(0o077), "the caller's umask is unchanged")
	_, err = r.Run(t.Context(), hooks.Cmd{Args: []string{"no-such-program-paczfs"}})
	assert.ErrorIs(t, err, exec.ErrNotFound)
}

func TestBuildEnvironPathOrder(t *testing.T) {
	env := hooks.BuildEnviron("/usr/bin:/home/me/bin:/bin:/home/me/bin:", "/scratch")
	assert.Equal(t, []string{"PATH=" + hooks.SystemPath + ":/home/me/bin", "LANG=C", "LC_ALL=C", "TZ=UTC", "HOME=/root", "TMPDIR=/scratch"}, env)
	// Another order of the same directories gives the same PATH.
	assert.Equal(t, env[0], hooks.BuildEnviron("/home/me/bin:/bin:/usr/bin", "")[0])
}

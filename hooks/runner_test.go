package hooks_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
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

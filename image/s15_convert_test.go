package image

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/paczfs/paczfs/hooks"
)

// convertGate is a runner whose qemu-img convert reports progress, then
// waits until the test opens the gate (or the build cancels it). Outputs
// named in fail fail at once instead.
type convertGate struct {
	started chan string
	gate    chan struct{}
	fail    string
}

func (r *convertGate) Run(ctx context.Context, c hooks.Cmd) ([]byte, error) {
	dst := c.Args[len(c.Args)-1]
	if c.Args[0] != "qemu-img" {
		return nil, fmt.Errorf("unexpected command %v", c.Args)
	}
	if err := os.WriteFile(dst, []byte("partial"), 0o600); err != nil {
		return nil, err
	}
	if filepath.Base(dst) == r.fail {
		return nil, &hooks.CmdError{Args: c.Args, ExitCode: 1, Stderr: "qemu-img: out of space"}
	}
	_, _ = c.Stdout.Write([]byte("    (0.00/100%)\r    (10.00/100%)\r"))
	r.started <- filepath.Base(dst)
	select {
	case <-r.gate:
	case <-ctx.Done():
		return nil, &hooks.CmdError{Args: c.Args, ExitCode: -1, Err: ctx.Err()}
	}
	_, _ = c.Stdout.Write([]byte("    (100.00/100%)\r"))
	return nil, os.WriteFile(dst, []byte("converted"), 0o600)
}

func convertBuild(t *testing.T, r hooks.Runner, progress func(Progress), formats ...Format) (*build, string) {
	t.Helper()
	cfg := testConfig(t)
	dir := t.TempDir()
	for _, f := range formats {
		cfg.Outputs = append(cfg.Outputs, Output{Format: f, Path: filepath.Join(dir, "out."+string(f))})
	}
	b, err := New(cfg, hostOK, WithRunner(r), WithProgress(progress))
	require.NoError(t, err)
	st := b.newBuild()
	st.target = &targetInfo{path: cfg.ImageFile}
	return st, dir
}

// Two outputs are written at the same time: each qemu-img waits for the
// test, and the test opens the gate only once both have started, so a
// stage converting one at a time never finishes. Progress from both
// reaches the caller's function, which is never called concurrently (the
// race detector watches its unguarded slice).
func TestOutputsAreWrittenTogether(t *testing.T) {
	r := &convertGate{started: make(chan string), gate: make(chan struct{})}
	var msgs []string
	st, dir := convertBuild(t, r, func(p Progress) { msgs = append(msgs, p.Message) }, QCOW2, VDI)
	done := make(chan error, 1)
	go func() { done <- stageConvert(context.Background(), st) }()
	var started []string
	for len(started) < 2 {
		select {
		case s := <-r.started:
			started = append(started, s)
		case err := <-done:
			t.Fatalf("the stage ended (%v) before both outputs were being written", err)
		case <-time.After(20 * time.Second):
			t.Fatalf("only %v started: the outputs are converted one after the other", started)
		}
	}
	assert.ElementsMatch(t, []string{"out.qcow2", "out.vdi"}, started)
	close(r.gate)
	require.NoError(t, <-done)
	for _, f := range []string{"out.qcow2", "out.vdi"} {
		data, err := os.ReadFile(filepath.Join(dir, f))
		require.NoError(t, err)
		assert.Equal(t, "converted", string(data), f)
	}
	assert.Len(t, st.res.Outputs, 2)
	assert.Contains(t, msgs, "out.qcow2 (qcow2): 100%")
	assert.Contains(t, msgs, "out.vdi (vdi): 10%")
}

// When one output fails, the others are stopped rather than left to run
// to the end, the error names the one that failed, and every output is
// the build's to remove.
func TestAFailedOutputStopsTheOthers(t *testing.T) {
	r := &convertGate{started: make(chan string, 2), gate: make(chan struct{}), fail: "out.vdi"}
	st, dir := convertBuild(t, r, nil, QCOW2, VDI)
	err := stageConvert(context.Background(), st)
	require.Error(t, err)
	var ce *hooks.CmdError
	require.True(t, errors.As(err, &ce), "%v", err)
	assert.Contains(t, err.Error(), "out.vdi")
	assert.Equal(t, 1, ce.ExitCode, "the first failure is the one reported, not the cancellation it caused")
	require.NoError(t, st.removePartial())
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Empty(t, ents, "the partial outputs are removed")
}

// A bad output is refused before any qemu-img runs.
func TestOutputsAreCheckedBeforeAnyIsWritten(t *testing.T) {
	r := &convertGate{started: make(chan string, 2), gate: make(chan struct{})}
	st, _ := convertBuild(t, r, nil, QCOW2)
	st.cfg.Outputs = append(st.cfg.Outputs, Output{Format: VDI, Path: st.cfg.Outputs[0].Path + ".vdi", Compression: CompressZstd})
	err := stageConvert(context.Background(), st)
	require.ErrorContains(t, err, "zstd compression is for qcow2 only")
	assert.NoFileExists(t, st.cfg.Outputs[0].Path)
}

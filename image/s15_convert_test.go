package image

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/paczfs/paczfs/hooks"
	"github.com/paczfs/paczfs/internal/fsx"
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
	if outputName(dst) == r.fail {
		return nil, &hooks.CmdError{Args: c.Args, ExitCode: 1, Stderr: "qemu-img: out of space"}
	}
	_, _ = c.Stdout.Write([]byte("    (0.00/100%)\r    (10.00/100%)\r"))
	r.started <- outputName(dst)
	select {
	case <-r.gate:
	case <-ctx.Done():
		return nil, &hooks.CmdError{Args: c.Args, ExitCode: -1, Err: ctx.Err()}
	}
	_, _ = c.Stdout.Write([]byte("    (100.00/100%)\r"))
	return nil, os.WriteFile(dst, []byte("converted"), 0o600)
}

// outputName is the name of the output whose partial file is path.
func outputName(path string) string {
	name := strings.TrimPrefix(filepath.Base(path), ".")
	if i := strings.Index(name, ".paczfs-"); i >= 0 && strings.HasSuffix(name, ".partial") {
		return name[:i]
	}
	return name
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
	st, dir := convertBuild(t, r, func(p Progress) { msgs = append(msgs, p.Message) }, VMDK, VDI)
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
	assert.ElementsMatch(t, []string{"out.vmdk", "out.vdi"}, started)
	close(r.gate)
	require.NoError(t, <-done)
	for _, f := range []string{"out.vmdk", "out.vdi"} {
		data, err := os.ReadFile(filepath.Join(dir, f))
		require.NoError(t, err)
		assert.Equal(t, "converted", string(data), f)
	}
	assert.Len(t, st.res.Outputs, 2)
	assert.Contains(t, msgs, "out.vmdk (vmdk): 100%")
	assert.Contains(t, msgs, "out.vdi (vdi): 10%")
}

// When one output fails, the others are stopped rather than left to run
// to the end, the error names the one that failed, and every output is
// the build's to remove.
func TestAFailedOutputStopsTheOthers(t *testing.T) {
	r := &convertGate{started: make(chan string, 2), gate: make(chan struct{}), fail: "out.vdi"}
	st, dir := convertBuild(t, r, nil, VMDK, VDI)
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
	st, _ := convertBuild(t, r, nil, VMDK)
	st.cfg.Outputs = append(st.cfg.Outputs, Output{Format: VDI, Path: st.cfg.Outputs[0].Path + ".vdi", Compression: CompressZstd})
	err := stageConvert(context.Background(), st)
	require.ErrorContains(t, err, "zstd compression is for qcow2 only")
	assert.NoFileExists(t, st.cfg.Outputs[0].Path)
}

// A zlib QCOW2 is written in this process, from the image file itself,
// while qemu-img writes the other output: no qemu-img runs for it, its
// progress reaches the caller, and it gets the caller's umask.
func TestQCOW2IsWrittenInProcess(t *testing.T) {
	r := &convertGate{started: make(chan string, 1), gate: make(chan struct{})}
	var msgs []string
	st, dir := convertBuild(t, r, func(p Progress) { msgs = append(msgs, p.Message) }, QCOW2, VDI)
	f, err := os.Create(st.target.path)
	require.NoError(t, err)
	require.NoError(t, f.Truncate(64<<20))
	_, err = f.WriteAt([]byte(strings.Repeat("paczfs ", 50000)), 3<<20)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	done := make(chan error, 1)
	go func() { done <- stageConvert(context.Background(), st) }()
	assert.Equal(t, "out.vdi", <-r.started, "qemu-img runs for the VDI only")
	// The QCOW2 is finished while the VDI still waits, under its
	// partial name: no output has its own name before all are whole.
	require.Eventually(t, func() bool {
		p, _ := filepath.Glob(filepath.Join(dir, ".out.qcow2.paczfs-*.partial"))
		if len(p) != 1 {
			return false
		}
		data, err := os.ReadFile(p[0])
		return err == nil && len(data) > 4 && string(data[:4]) == "QFI\xfb"
	}, 20*time.Second, 10*time.Millisecond)
	assert.NoFileExists(t, filepath.Join(dir, "out.qcow2"))
	close(r.gate)
	require.NoError(t, <-done)
	assert.Contains(t, msgs, "out.qcow2 (qcow2): 0%")
	assert.Contains(t, msgs, "out.qcow2 (qcow2): 100%")
	fi, err := os.Stat(filepath.Join(dir, "out.qcow2"))
	require.NoError(t, err)
	mask, err := fsx.Umask()
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o644)&^mask, fi.Mode().Perm())
}

// A QCOW2 that cannot be written leaves no file behind.
func TestQCOW2FailureLeavesNoFile(t *testing.T) {
	dir := t.TempDir()
	dst := filepath.Join(dir, "x.qcow2")
	err := WriteOutput(context.Background(), &convertGate{}, filepath.Join(dir, "missing.raw"), Output{Format: QCOW2, Path: dst})
	require.ErrorIs(t, err, os.ErrNotExist)
	assert.NoFileExists(t, dst)

	src := filepath.Join(dir, "dir.raw")
	require.NoError(t, os.Mkdir(src, 0o755))
	err = WriteOutput(context.Background(), &convertGate{}, src, Output{Format: QCOW2, Path: dst})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "neither a regular file nor a block device")
	assert.NoFileExists(t, dst)
}

// With Overwrite, the previous outputs stay until every new one is whole:
// a failed conversion leaves them as they were and removes the build's
// partial files; a finished one replaces them.
func TestPreviousOutputsStayUntilTheNewOnesAreWhole(t *testing.T) {
	r := &convertGate{started: make(chan string, 2), gate: make(chan struct{}), fail: "out.vdi"}
	st, dir := convertBuild(t, r, nil, VMDK, VDI)
	st.cfg.Overwrite = true
	for _, o := range st.cfg.Outputs {
		require.NoError(t, os.WriteFile(o.Path, []byte("previous"), 0o644))
	}
	require.Error(t, stageConvert(context.Background(), st))
	require.NoError(t, st.removePartial())
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	assert.ElementsMatch(t, []string{"out.vmdk", "out.vdi"}, names, "only the previous outputs are left")
	for _, o := range st.cfg.Outputs {
		data, err := os.ReadFile(o.Path)
		require.NoError(t, err)
		assert.Equal(t, "previous", string(data), o.Path)
	}

	r = &convertGate{started: make(chan string, 2), gate: make(chan struct{})}
	close(r.gate)
	st.b.runner, st.partials, st.res.Outputs = r, nil, nil
	require.NoError(t, stageConvert(context.Background(), st))
	for _, o := range st.cfg.Outputs {
		data, err := os.ReadFile(o.Path)
		require.NoError(t, err)
		assert.Equal(t, "converted", string(data), o.Path)
	}
	left, err := filepath.Glob(filepath.Join(dir, ".*.partial"))
	require.NoError(t, err)
	assert.Empty(t, left)
}

// Without Overwrite, a file that appears at an output's path while the
// build converts is not replaced: the stage fails naming it, and the
// build's cleanup removes only what the build wrote.
func TestAnOutputThatAppearedDuringTheBuildIsNotReplaced(t *testing.T) {
	r := &convertGate{started: make(chan string, 2), gate: make(chan struct{})}
	st, dir := convertBuild(t, r, nil, VMDK, VDI)
	done := make(chan error, 1)
	go func() { done <- stageConvert(context.Background(), st) }()
	<-r.started
	<-r.started
	theirs := filepath.Join(dir, "out.vdi")
	require.NoError(t, os.WriteFile(theirs, []byte("someone else's"), 0o644))
	close(r.gate)
	err := <-done
	require.ErrorIs(t, err, ErrOutputExists)
	assert.Contains(t, err.Error(), "outputs[1].path: "+theirs)
	require.NoError(t, st.removePartial())
	data, err := os.ReadFile(theirs)
	require.NoError(t, err)
	assert.Equal(t, "someone else's", string(data))
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, ents, 1, "the build's own output and partial files are removed")
}

// An output given relative to the working directory is written to an
// absolute partial path: Recover, run from anywhere, finds the file and
// the qemu-img whose argument names it.
func TestPartialFilesAreRecordedAbsolute(t *testing.T) {
	r := &convertGate{started: make(chan string, 1), gate: make(chan struct{})}
	close(r.gate)
	st, dir := convertBuild(t, r, nil, VDI)
	t.Chdir(dir)
	st.cfg.Outputs[0].Path = "rel.vdi"
	require.NoError(t, stageConvert(context.Background(), st))
	require.Len(t, st.partials, 1)
	real, err := filepath.EvalSymlinks(dir)
	require.NoError(t, err)
	assert.True(t, filepath.IsAbs(st.partials[0]), st.partials[0])
	assert.Equal(t, real, filepath.Dir(st.partials[0]))
	assert.FileExists(t, filepath.Join(dir, "rel.vdi"))
}

// A rename that would fail (here a directory that appeared at the second
// output's path) fails the stage before any whole output is renamed into
// place: the first output's previous file is not replaced either, so the
// outputs are never a mix of this build's and the previous one's.
func TestNoOutputIsReplacedWhenALaterOneCannotBe(t *testing.T) {
	r := &convertGate{started: make(chan string, 2), gate: make(chan struct{})}
	st, dir := convertBuild(t, r, nil, VMDK, VDI)
	st.cfg.Overwrite = true
	require.NoError(t, os.WriteFile(st.cfg.Outputs[0].Path, []byte("previous"), 0o644))
	done := make(chan error, 1)
	go func() { done <- stageConvert(context.Background(), st) }()
	<-r.started
	<-r.started
	require.NoError(t, os.Mkdir(st.cfg.Outputs[1].Path, 0o755))
	close(r.gate)
	err := <-done
	require.Error(t, err)
	assert.Contains(t, err.Error(), "outputs[1].path: "+st.cfg.Outputs[1].Path+" is a directory")
	require.NoError(t, st.removePartial())
	data, err := os.ReadFile(st.cfg.Outputs[0].Path)
	require.NoError(t, err)
	assert.Equal(t, "previous", string(data), "the first output was not replaced")
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Len(t, ents, 2, "the previous output and the directory; no partial file")

	// Without overwrite, a file that appeared at the second path keeps the
	// first output from being renamed into place at all.
	r = &convertGate{started: make(chan string, 2), gate: make(chan struct{})}
	st, _ = convertBuild(t, r, nil, VMDK, VDI)
	go func() { done <- stageConvert(context.Background(), st) }()
	<-r.started
	<-r.started
	require.NoError(t, os.WriteFile(st.cfg.Outputs[1].Path, []byte("theirs"), 0o644))
	close(r.gate)
	require.ErrorIs(t, <-done, ErrOutputExists)
	assert.Empty(t, st.newOutputs, "nothing was renamed into place")
	assert.NoFileExists(t, st.cfg.Outputs[0].Path)
}

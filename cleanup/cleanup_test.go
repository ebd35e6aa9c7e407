package cleanup_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/paczfs/paczfs/cleanup"
	"github.com/paczfs/paczfs/hooks"
	"github.com/paczfs/paczfs/hooks/hookstest"
	"github.com/paczfs/paczfs/zfs"
)

// buildStorage is the storage part of a build as the image builder runs it:
// every acquisition pushes its release right away. A step failing after
// the pool exists must release the pool before the loop device.
func buildStorage(ctx context.Context, r hooks.Runner, st *cleanup.Stack) error {
	c := zfs.New(zfs.WithRunner(r))
	if _, err := r.Run(ctx, hooks.Cmd{Args: []string{"losetup", "--attach", "/img"}}); err != nil {
		return err
	}
	st.Push("detach /dev/loop7", func(ctx context.Context) error {
		_, err := r.Run(ctx, hooks.Cmd{Args: []string{"losetup", "--detach", "/dev/loop7"}})
		return err
	})
	spec := zfs.PoolSpec{Name: "zroot", TempName: "paczfs-t", AltRoot: "/mnt", Vdevs: []string{"/dev/loop7p2"}, Properties: map[string]string{"compatibility": ""}}
	if err := c.CreatePool(ctx, spec); err != nil {
		return err
	}
	st.Push("export pool paczfs-t", func(ctx context.Context) error { return c.ExportPool(ctx, "paczfs-t", zfs.ExportOptions{}) })
	return c.CreateDatasets(ctx, "paczfs-t", zfs.DefaultDatasets())
}

func TestUnwindReleasesInReverseOrderAfterAFailure(t *testing.T) {
	fake := new(hookstest.FakeRunner)
	fake.On("zfs create -p -o mountpoint=/home", hookstest.Response{ExitCode: 1, Stderr: "cannot create 'paczfs-t/data/home': out of space\n"})
	var st cleanup.Stack
	err := buildStorage(t.Context(), fake, &st)
	require.ErrorContains(t, err, "out of space")
	n := len(fake.Calls())
	require.NoError(t, st.Unwind(t.Context()))
	assert.Equal(t, []string{"zpool export paczfs-t", "losetup --detach /dev/loop7"}, fake.Calls()[n:])
	assert.Equal(t, 0, st.Len())
}

func TestUnwindRunsAfterCancellationAndReportsEveryFailure(t *testing.T) {
	fake := new(hookstest.FakeRunner)
	var st cleanup.Stack
	ctx, cancel := context.WithCancel(t.Context())
	require.NoError(t, buildStorage(ctx, fake, &st))
	cancel() // Ctrl-C after the pool exists
	fake.On("zpool export", hookstest.Response{ExitCode: 1, Stderr: "cannot export 'paczfs-t': pool is busy\n"})
	n := len(fake.Calls())
	err := st.Unwind(ctx)
	require.Error(t, err)
	assert.True(t, errors.Is(err, zfs.ErrBusy))
	assert.Contains(t, err.Error(), "cleanup export pool paczfs-t")
	// The loop device is still released although the export failed.
	assert.Equal(t, []string{"zpool export paczfs-t", "losetup --detach /dev/loop7"}, fake.Calls()[n:])
}

func TestUnwindBoundsEachActionAndSurvivesPanics(t *testing.T) {
	st := cleanup.Stack{Timeout: 50 * time.Millisecond}
	ran := false
	st.Push("first", func(context.Context) error { ran = true; return nil })
	st.Push("hangs", func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() })
	st.Push("panics", func(context.Context) error { panic("boom") })
	start := time.Now()
	err := st.Unwind(t.Context())
	assert.Less(t, time.Since(start), 2*time.Second)
	assert.True(t, ran)
	assert.ErrorContains(t, err, "cleanup hangs: context deadline exceeded")
	assert.ErrorContains(t, err, "cleanup panics: panic: boom")
}

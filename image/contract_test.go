package image

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/paczfs/paczfs/hooks"
)

// Every stage can be replaced by a hook: the build then goes on with what
// the hook provided, or fails with a *StageError naming the State field it
// did not set, and never panics. Here the replacing hook provides nothing
// and the other stages are fakes, so only the adopt step is real.
func TestEveryStageReplacedByAHookThatProvidesNothing(t *testing.T) {
	needs := map[hooks.Stage]string{
		hooks.StageTarget: "State.ImageFile or State.Device",
		// The stages below find no disk: their predecessors are fakes.
		hooks.StagePartition: "State.Device",
		hooks.StageESP:       "State.Device",
		hooks.StagePool:      "State.Pool",
		hooks.StageDatasets:  "State.RootDataset",
	}
	for _, stage := range hooks.Stages() {
		t.Run(string(stage), func(t *testing.T) {
			rec := &recorder{}
			b, err := New(testConfig(t), hostOK, WithHooks(hooks.Func("mine", stage, hooks.Replace,
				func(ctx context.Context, s *hooks.State) error { return nil })))
			require.NoError(t, err)
			fakeStages(b, rec, "")
			var res *Result
			require.NotPanics(t, func() { res, err = b.Build(context.Background()) })
			want, fails := needs[stage]
			if !fails {
				require.NoError(t, err, "a replaced %s hands nothing on that later stages need", stage)
				assert.Equal(t, "mine", res.Stages[slicesIndex(hooks.Stages(), stage)].Replaced)
				return
			}
			var se *StageError
			require.ErrorAs(t, err, &se)
			assert.Equal(t, stage, se.Stage)
			assert.Equal(t, "mine", se.Hook)
			assert.ErrorIs(t, err, ErrNotProvided)
			assert.Contains(t, err.Error(), want)
			// Everything the fakes acquired before it was released.
			assert.Contains(t, strings.Join(rec.steps, ","), "release checks")
		})
	}
}

// A replacing hook that provides what the contract asks is adopted: the
// checks (the plan is the configuration's), the pool (Pool and Root, the
// rest defaulted and the export registered), the datasets, the system's
// hostid and the initramfs's kernel version, read from the target.
func TestReplacingHooksAreAdopted(t *testing.T) {
	root := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(root, "etc"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(root, "etc/hostid"), []byte{0xee, 0xff, 0xc0, 0x00}, 0o644))
	require.NoError(t, os.MkdirAll(filepath.Join(root, "usr/lib/modules/6.12.1"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(root, "usr/lib/modules/6.12.1/vmlinuz"), nil, 0o644))
	replace := func(stage hooks.Stage, fn func(*hooks.State)) hooks.Hook {
		return hooks.Func("mine-"+string(stage), stage, hooks.Replace, func(ctx context.Context, s *hooks.State) error {
			fn(s)
			return nil
		})
	}
	var seen *hooks.State
	b, err := New(testConfig(t), hostOK, WithHooks(
		replace(hooks.StageChecks, func(*hooks.State) {}),
		replace(hooks.StagePool, func(s *hooks.State) { s.Pool, s.Root = "zroot-mine", root }),
		replace(hooks.StageDatasets, func(*hooks.State) {}),
		replace(hooks.StageSystem, func(*hooks.State) {}),
		replace(hooks.StageInitramfs, func(*hooks.State) {}),
		hooks.Func("look", hooks.StageBootloader, hooks.Before, func(ctx context.Context, s *hooks.State) error {
			c := *s
			seen = &c
			return nil
		}),
	), WithRunner(&recordingRunner{}))
	require.NoError(t, err)
	rec := &recorder{}
	fakeStages(b, rec, "")
	for _, s := range []hooks.Stage{hooks.StageChecks, hooks.StagePool, hooks.StageDatasets, hooks.StageSystem, hooks.StageInitramfs} {
		delete(b.stages, s) // never called: replaced
	}
	b.stages[hooks.StageFinalize] = func(ctx context.Context, st *build) error {
		st.res.Kernel, st.res.HostID = st.kver, st.hostID
		return nil
	}
	res, err := b.Build(context.Background())
	require.NoError(t, err)
	require.NotNil(t, seen)
	assert.Equal(t, "zroot", seen.PoolName)
	assert.Equal(t, "zroot-mine/system/default", seen.RootDataset)
	assert.Equal(t, "6.12.1", res.Kernel)
	assert.Equal(t, "00c0ffee", res.HostID)
}

// recordingRunner succeeds at everything (the export the pool's adoption
// registers runs at the end).
type recordingRunner struct{ calls []string }

func (r *recordingRunner) Run(ctx context.Context, c hooks.Cmd) ([]byte, error) {
	r.calls = append(r.calls, c.String())
	if c.Args[0] == "zpool" && len(c.Args) > 1 && c.Args[1] == "list" {
		return nil, errors.New("no such pool")
	}
	return nil, nil
}

// A panic in a hook (or in stage code) fails the stage with ErrPanic and
// the build still releases what it acquired.
func TestAPanicFailsTheStageAndReleases(t *testing.T) {
	rec := &recorder{}
	b, err := New(testConfig(t), hostOK, WithHooks(hooks.Func("boom", hooks.StagePool, hooks.After,
		func(ctx context.Context, s *hooks.State) error { panic("boom") })))
	require.NoError(t, err)
	fakeStages(b, rec, "")
	_, err = b.Build(context.Background())
	var se *StageError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, hooks.StagePool, se.Stage)
	assert.ErrorIs(t, err, ErrPanic)
	assert.Contains(t, strings.Join(rec.steps, ","), "release pool,release esp")
}

// The pipeline table is the stage order of package hooks.
func TestPipelineIsTheStageOrder(t *testing.T) {
	var got []hooks.Stage
	for _, d := range pipeline() {
		got = append(got, d.stage)
		assert.NotNil(t, d.run, d.stage)
	}
	assert.Equal(t, hooks.Stages(), got)
}

package hooks_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/paczfs/paczfs/hooks"
)

func TestEveryOriginalHookHasAStage(t *testing.T) {
	assert.Len(t, hooks.OriginalHooks(), 29)
	covered := map[hooks.Stage]bool{}
	for name, st := range hooks.OriginalHooks() {
		_, err := hooks.ParseStage(string(st))
		assert.NoError(t, err, name)
		covered[st] = true
	}
	for _, st := range hooks.Stages() {
		assert.True(t, covered[st], "stage %s covers no original hook", st)
	}
}

func TestParseStage(t *testing.T) {
	st, err := hooks.ParseStage("bootloader")
	require.NoError(t, err)
	assert.Equal(t, hooks.StageBootloader, st)
	_, err = hooks.ParseStage("install-grub")
	assert.ErrorContains(t, err, `unknown stage "install-grub"`)
}

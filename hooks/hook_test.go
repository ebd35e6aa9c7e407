package hooks

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestWithCacheKey(t *testing.T) {
	h := Func("tweak", StageSystem, After, func(context.Context, *State) error { return nil })
	k := WithCacheKey(h, "v1")
	assert.Equal(t, "v1", k.CacheKey())
	assert.Equal(t, "tweak", k.Name())
	assert.Equal(t, StageSystem, k.Stage())
	assert.Equal(t, After, k.When())
	assert.NoError(t, k.Run(context.Background(), &State{}))

	// The wrapped hook's Check still runs, so New refuses what it would.
	missing := Script{Path: filepath.Join(t.TempDir(), "none.sh"), AtStage: StageSystem, Position: After}
	c, ok := WithCacheKey(missing, "v1").(interface{ Check() error })
	assert.True(t, ok)
	assert.ErrorContains(t, c.Check(), "none.sh")
	assert.NoError(t, k.(interface{ Check() error }).Check(), "a hook without a check passes")
}

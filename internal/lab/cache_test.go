package lab

import (
	"os"
	"path/filepath"
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRecipeHashChangesWithContentNamesAndVersion(t *testing.T) {
	a := fstest.MapFS{"r/x.sh": {Data: []byte("echo 1")}, "r/y.txt": {Data: []byte("zfs")}, "other/z": {Data: []byte("ignored")}}
	h := RecipeHash("v1", a, "r")
	assert.Len(t, h, 16)
	assert.Equal(t, h, RecipeHash("v1", a, "r"))
	assert.NotEqual(t, h, RecipeHash("v2", a, "r"))
	b := fstest.MapFS{"r/x.sh": {Data: []byte("echo 2")}, "r/y.txt": {Data: []byte("zfs")}}
	assert.NotEqual(t, h, RecipeHash("v1", b, "r"))
	c := fstest.MapFS{"r/x.sh": {Data: []byte("echo 1")}, "r/y.txt": {Data: []byte("zfs")}, "other/z": {Data: []byte("changed")}}
	assert.Equal(t, h, RecipeHash("v1", c, "r"), "files outside root do not count")
}

func TestPromoteReplacesAndDropsOldRecipes(t *testing.T) {
	parent := t.TempDir()
	for _, d := range []string{"old1", "new.build", "new", "other.build"} {
		require.NoError(t, os.MkdirAll(filepath.Join(parent, d), 0o755))
	}
	require.NoError(t, os.WriteFile(filepath.Join(parent, "new.build", "ready"), nil, 0o644))
	require.NoError(t, Promote(filepath.Join(parent, "new.build"), filepath.Join(parent, "new")))
	entries, _ := os.ReadDir(parent)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	assert.ElementsMatch(t, []string{"new", "other.build"}, names, "another build in progress is left alone")
	_, err := os.Stat(filepath.Join(parent, "new", "ready"))
	assert.NoError(t, err)
}

package lab

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRecipeIsStableAndShort(t *testing.T) {
	assert.Equal(t, Recipe(), Recipe())
	assert.Len(t, Recipe(), 16)
}

func TestParseMirror(t *testing.T) {
	deb822 := "Types: deb\nURIs: http://archive.example/debian-security\nSuites: bookworm-security\nComponents: main\n\n" +
		"Types: deb\n# comment: x\nURIs: http://archive.example/debian\nSuites: bookworm bookworm-updates\nComponents: main contrib\n"
	assert.Equal(t, "http://archive.example/debian", parseMirror([]string{deb822}, ""))
	list := "deb http://archive.example/debian-security bookworm-security main\ndeb http://mirror.example/debian bookworm main\n"
	assert.Equal(t, "http://mirror.example/debian", parseMirror(nil, list))
	assert.Equal(t, "", parseMirror([]string{"Types: deb\nURIs: http://x/y\nComponents: non-free\n"}, ""))
}

// A run is booted again only when the guest's kernel died before the
// command started: never after it started, never for other failures.
func TestDiedBeforeCommand(t *testing.T) {
	dir := t.TempDir()
	console := filepath.Join(dir, "console.log")
	panicked := "[    3.280623] Kernel panic - not syncing: Fatal exception in interrupt\n"
	require.NoError(t, os.WriteFile(console, []byte(panicked), 0o644))
	assert.True(t, diedBeforeCommand(dir, console), "a panic in early boot")

	require.NoError(t, os.WriteFile(filepath.Join(dir, "started"), nil, 0o644))
	assert.False(t, diedBeforeCommand(dir, console), "the command had started: its failure is reported")

	require.NoError(t, os.Remove(filepath.Join(dir, "started")))
	require.NoError(t, os.WriteFile(console, []byte("lab: modprobe zfs failed\n"), 0o644))
	assert.False(t, diedBeforeCommand(dir, console), "no panic: the VM stopped for another reason")
	assert.False(t, diedBeforeCommand(dir, filepath.Join(dir, "none")), "no console at all")
}

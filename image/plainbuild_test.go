package image

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"mvdan.cc/sh/v3/syntax"
)

// The plain-tools build that make bench-image runs beside paczfs must be
// POSIX shell (the lab runs it with sh) and must name, as a "step", each
// stage paczfs times, so that the two are read side by side.
func TestPlainBuildScriptIsPOSIXShell(t *testing.T) {
	data, err := os.ReadFile("testdata/plain-build.sh")
	require.NoError(t, err)
	_, err = syntax.NewParser(syntax.Variant(syntax.LangPOSIX)).Parse(strings.NewReader(string(data)), "plain-build.sh")
	require.NoError(t, err)
	for _, s := range []string{"target", "partition", "esp", "pool", "datasets", "keyring", "packages", "system", "initramfs", "bootloader", "finalize", "convert"} {
		assert.Contains(t, string(data), "\nstep "+s+"\n", "step %s", s)
	}
}

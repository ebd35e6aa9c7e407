package labtest

import (
	_ "embed"
	"os"
	"path/filepath"
	"testing"
)

//go:embed pacstrap.sh
var pacstrapScript []byte

// PacstrapScript writes pacstrap.sh into a temporary directory of tb and
// returns its path: `sh PATH ROOT COMMAND...` runs COMMAND with ROOT's API
// filesystems mounted as pacstrap mounts them, in mount and PID namespaces
// of its own.
func PacstrapScript(tb testing.TB) string {
	tb.Helper()
	p := filepath.Join(tb.TempDir(), "pacstrap.sh")
	if err := os.WriteFile(p, pacstrapScript, 0o755); err != nil {
		tb.Fatal(err)
	}
	return p
}

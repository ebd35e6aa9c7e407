package testutil

import (
	"os"
	"os/exec"
	"testing"
)

// RequireTool returns the path of an external program a test needs. When
// it is missing the test fails under CI (CI=true: `make test` installs it)
// and is skipped, saying which Debian package brings it, on a developer's
// machine.
func RequireTool(t testing.TB, name, debianPackage string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	msg := name + " not found: `apt-get install " + debianPackage + "` (make test installs it)"
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// Run runs a command and fails the test with its output when it fails.
func Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}

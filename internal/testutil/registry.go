package testutil

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Registry starts Debian's docker-registry (distribution 2.8) on a
// loopback port with its storage in a temporary directory, and returns
// its host:port. The binary is $PACZFS_REGISTRY or on PATH; without it
// the test fails when PACZFS_REQUIRE_TOOLS is set (make unit sets both)
// and is skipped, saying so, otherwise.
func Registry(t testing.TB) string {
	t.Helper()
	bin := os.Getenv("PACZFS_REGISTRY")
	if bin == "" {
		var err error
		if bin, err = exec.LookPath("docker-registry"); err != nil {
			if os.Getenv("PACZFS_REQUIRE_TOOLS") != "" || os.Getenv("PACZFS_REQUIRE_LAB") != "" {
				t.Fatalf("no docker-registry: set PACZFS_REGISTRY to its binary (make unit takes it out of Debian's package): %v", err)
			}
			t.Skip("no docker-registry (PACZFS_REGISTRY or PATH): the OCI tests need a real registry; make unit provides it")
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	l.Close()
	dir := t.TempDir()
	cfg := fmt.Sprintf("version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n", filepath.Join(dir, "data"), addr)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "config.yml"), []byte(cfg), 0o644))
	cmd := exec.Command(bin, "serve", filepath.Join(dir, "config.yml"))
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = &logs, &logs
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("registry log:\n%s", logs.String())
		}
	})
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + addr + "/v2/")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 20*time.Second, 50*time.Millisecond, "the registry answers on %s", addr)
	return addr
}

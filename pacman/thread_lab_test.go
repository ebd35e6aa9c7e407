//go:build lab

package pacman

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"log/slog"

	"github.com/paczfs/paczfs/internal/labtest"
)

func TestLabAPIMountsArePrivateToTheInstallThread(t *testing.T) {
	labtest.Require(t)
	root := t.TempDir()
	var inside string
	err := onOwnThread(func() error {
		unmount, _, err := mountAPI(root, slog.New(slog.DiscardHandler))
		if err != nil {
			return err
		}
		b, _ := os.ReadFile("/proc/thread-self/mountinfo")
		inside = string(b)
		_, err = os.Stat(filepath.Join(root, "proc/self/status"))
		require.NoError(t, err, "proc is mounted for the thread")
		require.NoError(t, os.Chdir(root), "chdir stays on this thread")
		return unmount()
	})
	require.NoError(t, err)
	assert.Contains(t, inside, root+"/proc")
	assert.Contains(t, inside, root+"/dev/pts")
	host, _ := os.ReadFile("/proc/self/mountinfo")
	assert.NotContains(t, string(host), root, "the host never sees the mounts")
	wd, _ := os.Getwd()
	assert.False(t, strings.HasPrefix(wd, root), "the process's directory did not change")
	assert.Empty(t, labtest.Mounts(root))
}

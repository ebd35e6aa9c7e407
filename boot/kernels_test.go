package boot

import (
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCompareVersions(t *testing.T) {
	vs := []string{"6.12.10-1", "6.9.2", "6.12.9-arch1", "6.12.10-2", "10", "2"}
	sort.Slice(vs, func(i, j int) bool { return CompareVersions(vs[i], vs[j]) < 0 })
	assert.Equal(t, []string{"2", "6.9.2", "6.12.9-arch1", "6.12.10-1", "6.12.10-2", "10"}, vs)
}

// Both layouts: Arch's kernel in its modules directory, Debian's in /boot;
// numeric order; other files under the pattern's directory ignored.
func TestKernelVersions(t *testing.T) {
	root := t.TempDir()
	for _, f := range []string{"usr/lib/modules/6.12.10-1-lts/vmlinuz", "usr/lib/modules/6.12.9-1-lts/vmlinuz", "usr/lib/modules/6.1.0-1-lts/pkgbase",
		"boot/vmlinuz-6.12.10-amd64", "boot/vmlinuz-6.1.0-amd64", "boot/initrd.img-6.12.10-amd64"} {
		require.NoError(t, os.MkdirAll(filepath.Dir(filepath.Join(root, f)), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(root, f), []byte("k"), 0o644))
	}
	v, err := KernelVersions(root, "/usr/lib/modules/{kver}/vmlinuz")
	require.NoError(t, err)
	assert.Equal(t, []string{"6.12.9-1-lts", "6.12.10-1-lts"}, v)
	v, err = KernelVersions(root, "/boot/vmlinuz-{kver}")
	require.NoError(t, err)
	assert.Equal(t, []string{"6.1.0-amd64", "6.12.10-amd64"}, v)
	v, err = KernelVersions(t.TempDir(), "/boot/vmlinuz-{kver}")
	require.NoError(t, err)
	assert.Empty(t, v)
}

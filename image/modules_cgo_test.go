//go:build cgo && linux

package image

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/paczfs/paczfs/hooks/hookstest"
	"github.com/paczfs/paczfs/internal/testutil"
	"github.com/paczfs/paczfs/pacman"
)

// syncDB writes a repository database: name -> version, then depends.
func syncDB(t *testing.T, path string, pkgs map[string][]string) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for name, v := range pkgs {
		desc := "%FILENAME%\n" + name + "-" + v[0] + "-x86_64.pkg.tar.zst\n\n%NAME%\n" + name + "\n\n%VERSION%\n" + v[0] +
			"\n\n%CSIZE%\n1\n\n%ISIZE%\n1\n\n%ARCH%\nx86_64\n\n%DEPENDS%\n"
		for _, d := range v[1:] {
			desc += d + "\n"
		}
		require.NoError(t, tw.WriteHeader(&tar.Header{Name: name + "-" + v[0] + "/desc", Mode: 0o644, Size: int64(len(desc)), Typeflag: tar.TypeReg}))
		_, err := tw.Write([]byte(desc))
		require.NoError(t, err)
	}
	require.NoError(t, tw.Close())
	require.NoError(t, os.WriteFile(path, buf.Bytes(), 0o644))
}

// The checks stage reads the pair from the sync databases through libalpm
// and plans the fallback while the module's repository lags the kernel's.
func TestChecksPlanTheFallbackWhileTheModuleLags(t *testing.T) {
	dir := t.TempDir()
	syncDB(t, filepath.Join(dir, "core.db"), map[string][]string{"linux-lts": {"6.12.41-1"}, "linux-lts-headers": {"6.12.41-1"}, "base": {"3-2"}})
	syncDB(t, filepath.Join(dir, "archzfs.db"), map[string][]string{"zfs-linux-lts": {"2.3.3_6.12.40.1-1", "linux-lts=6.12.40-1"},
		"zfs-dkms": {"2.3.3-1"}, "zfs-utils": {"2.3.3-1"}})
	cfg := ArchProfile()
	cfg.ImageFile = filepath.Join(t.TempDir(), "x.img")
	cfg.Pacman = pacman.Config{Architecture: "x86_64", SigLevel: "Never", ParallelDownloads: 1,
		Repos: []pacman.Repo{{Name: "core", Servers: []string{"file://" + dir}}, {Name: "archzfs", Servers: []string{"file://" + dir}}}}
	cfg.Packages.Base = []string{"base"}
	cfg.Packages.Bootable = []string{"linux-lts", "zfs-linux-lts", "zfs-utils"}
	cfg.Packages.Workstation = nil
	cfg.BootEnvironments = []string{LayerBootable}
	cfg.Manage.Tool = testutil.StaticTool(t)
	b, err := New(cfg, hostOK, WithRunner(&hookstest.FakeRunner{}))
	require.NoError(t, err)
	plan, err := b.Plan(context.Background())
	require.NoError(t, err)
	require.Len(t, plan.Modules, 1)
	assert.True(t, plan.Modules[0].Fallback)
	assert.Equal(t, "6.12.41-1", plan.Modules[0].Kernel)
	assert.Equal(t, "6.12.40-1", plan.Modules[0].Needs)
	assert.ElementsMatch(t, []string{"base", "linux-lts", "zfs-dkms", "linux-lts-headers", "zfs-utils"}, plan.Packages.Names())
	assert.Equal(t, []string{"linux-lts", "zfs-linux-lts", "zfs-utils"}, cfg.Packages.Bootable, "the configuration is not changed")
}

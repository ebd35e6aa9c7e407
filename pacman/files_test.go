//go:build cgo && linux

package pacman_test

import (
	"archive/tar"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/paczfs/paczfs/pacman"
)

// writeDB writes a repository database as repo-add lays it out: one
// directory per package with desc (and files, for a .files database).
func writeDB(t *testing.T, path string, pkgs map[string][]string, withFiles bool) {
	t.Helper()
	f, err := os.Create(path)
	require.NoError(t, err)
	tw := tar.NewWriter(f)
	add := func(name, body string) {
		require.NoError(t, tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}))
		_, err := tw.Write([]byte(body))
		require.NoError(t, err)
	}
	for name, files := range pkgs {
		dir := name + "-1.0-1/"
		require.NoError(t, tw.WriteHeader(&tar.Header{Name: dir, Mode: 0o755, Typeflag: tar.TypeDir}))
		add(dir+"desc", "%FILENAME%\n"+name+"-1.0-1-x86_64.pkg.tar.zst\n\n%NAME%\n"+name+"\n\n%VERSION%\n1.0-1\n\n"+
			"%CSIZE%\n100\n\n%ISIZE%\n200\n\n%ARCH%\nx86_64\n\n")
		if withFiles {
			add(dir+"files", "%FILES%\n"+strings.Join(files, "\n")+"\n\n")
		}
	}
	require.NoError(t, tw.Close())
	require.NoError(t, f.Close())
}

func TestFilesReadsTheRepositorysFileLists(t *testing.T) {
	dir := t.TempDir()
	pkgs := map[string][]string{
		"glibc": {"usr/", "usr/share/", "usr/share/i18n/", "usr/share/i18n/locales/de_DE", "usr/share/i18n/charmaps/UTF-8.gz"},
		"bash":  {"usr/bin/bash"},
	}
	writeDB(t, filepath.Join(dir, "t.db"), pkgs, false)
	writeDB(t, filepath.Join(dir, "t.files"), pkgs, true)
	cfg := pacman.Config{Architecture: "x86_64", SigLevel: "Never", ParallelDownloads: 2,
		Repos: []pacman.Repo{{Name: "t", Servers: []string{"file://" + dir}}, {Name: "nolists", Servers: []string{"file://" + dir + "/none"}}}}
	in, err := pacman.New(cfg, pacman.WithScratchDir(t.TempDir()))
	require.NoError(t, err)
	ctx := context.Background()

	got, err := in.Files(ctx, "t", []string{"glibc", "bash", "absent"})
	require.NoError(t, err)
	assert.ElementsMatch(t, pkgs["glibc"], got["glibc"])
	assert.Equal(t, []string{"usr/bin/bash"}, got["bash"])
	_, ok := got["absent"]
	assert.False(t, ok, "a name the repository lacks is left out")

	_, err = in.Files(ctx, "nolists", []string{"glibc"})
	assert.True(t, errors.Is(err, pacman.ErrNoFileLists), "a repository without a files database: %v", err)
	_, err = in.Files(ctx, "other", nil)
	assert.ErrorContains(t, err, `"other" is not a configured repository`)
}

// writeRepo writes a repository database whose packages have versions and
// dependencies (name -> version, then depends).
func writeRepo(t *testing.T, path string, pkgs map[string][]string) {
	t.Helper()
	f, err := os.Create(path)
	require.NoError(t, err)
	tw := tar.NewWriter(f)
	for name, v := range pkgs {
		dir := name + "-" + v[0] + "/"
		require.NoError(t, tw.WriteHeader(&tar.Header{Name: dir, Mode: 0o755, Typeflag: tar.TypeDir}))
		desc := "%FILENAME%\n" + name + "-" + v[0] + "-x86_64.pkg.tar.zst\n\n%NAME%\n" + name + "\n\n%VERSION%\n" + v[0] + "\n\n" +
			"%CSIZE%\n100\n\n%ISIZE%\n200\n\n%ARCH%\nx86_64\n\n"
		if len(v) > 1 {
			desc += "%DEPENDS%\n" + strings.Join(v[1:], "\n") + "\n\n"
		}
		require.NoError(t, tw.WriteHeader(&tar.Header{Name: dir + "desc", Mode: 0o644, Size: int64(len(desc)), Typeflag: tar.TypeReg}))
		_, err := tw.Write([]byte(desc))
		require.NoError(t, err)
	}
	require.NoError(t, tw.Close())
	require.NoError(t, f.Close())
}

// Lookup reads versions and dependencies from the sync databases, the
// first repository that has a name winning, as pacman -S picks.
func TestLookupReadsVersionsAndDependencies(t *testing.T) {
	dir := t.TempDir()
	writeRepo(t, filepath.Join(dir, "core.db"), map[string][]string{"linux-lts": {"6.12.41-1", "coreutils", "kmod"}})
	writeRepo(t, filepath.Join(dir, "archzfs.db"), map[string][]string{
		"zfs-linux-lts": {"2.3.3_6.12.40.1-1", "zfs-utils=2.3.3", "linux-lts=6.12.40-1"},
		"linux-lts":     {"6.1.0-1"},
	})
	cfg := pacman.Config{Architecture: "x86_64", SigLevel: "Never", ParallelDownloads: 2,
		Repos: []pacman.Repo{{Name: "core", Servers: []string{"file://" + dir}}, {Name: "archzfs", Servers: []string{"file://" + dir}}}}
	in, err := pacman.New(cfg, pacman.WithScratchDir(t.TempDir()))
	require.NoError(t, err)
	got, err := in.Lookup(context.Background(), []string{"zfs-linux-lts", "linux-lts", "absent"})
	require.NoError(t, err)
	assert.Equal(t, pacman.SyncPackage{Name: "zfs-linux-lts", Version: "2.3.3_6.12.40.1-1", Repo: "archzfs",
		Depends: []string{"zfs-utils=2.3.3", "linux-lts=6.12.40-1"}}, got["zfs-linux-lts"])
	assert.Equal(t, pacman.SyncPackage{Name: "linux-lts", Version: "6.12.41-1", Repo: "core", Depends: []string{"coreutils", "kmod"}}, got["linux-lts"])
	_, ok := got["absent"]
	assert.False(t, ok)
}

//go:build labhost

package examples_test

import (
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/paczfs/paczfs/image"
	"github.com/paczfs/paczfs/internal/lab"
)

// makepkg builds examples/arch/PKGBUILD in the lab, from a tarball of
// this checkout laid out as the release's (paczfs-<pkgver>/...), with
// the tarball's real sum in sha256sums: the package has the four
// commands, the builder links the lab's libalpm as a PIE, and the
// device tool is static.
func TestMakepkgBuildsThePKGBUILD(t *testing.T) {
	l := &lab.Lab{CacheDir: lab.DefaultCacheDir()}
	if !l.Ready() {
		if os.Getenv("CI") != "" || os.Getenv("PACZFS_REQUIRE_LAB") != "" {
			t.Fatal("the lab is not built: make test builds it first")
		}
		t.Skip("the lab is not built: run make lab")
	}
	ctx := context.Background()
	pkgbuild, err := os.ReadFile("arch/PKGBUILD")
	require.NoError(t, err)
	pkgver := regexp.MustCompile(`(?m)^pkgver=(\S+)$`).FindSubmatch(pkgbuild)
	require.NotNil(t, pkgver)
	assert.Equal(t, image.Version, string(pkgver[1]), "pkgver follows the library's version")

	// The release tarball: the checkout's files (those not committed yet
	// too) under paczfs-<pkgver>/.
	dir := t.TempDir()
	require.NoError(t, os.Chmod(dir, 0o755))
	tarball := filepath.Join(dir, "paczfs-"+string(pkgver[1])+".tar.gz")
	tar := exec.Command("sh", "-c", `cd .. && git ls-files -z --cached --others --exclude-standard | tar --null -T - --transform "s,^,paczfs-$1/," -czf "$2"`, "sh", string(pkgver[1]), tarball)
	out, err := tar.CombinedOutput()
	require.NoError(t, err, "%s", out)
	data, err := os.ReadFile(tarball)
	require.NoError(t, err)
	sum := sha256.Sum256(data)
	withSum := regexp.MustCompile(`(?m)^sha256sums=\(.*\)$`).ReplaceAll(pkgbuild, []byte("sha256sums=('"+hex.EncodeToString(sum[:])+"')"))
	require.NotEqual(t, string(pkgbuild), string(withSum), "sha256sums=(...) in the PKGBUILD")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "PKGBUILD"), withSum, 0o644))
	// The module cache must hold every dependency: the lab is offline.
	dl := exec.Command("go", "mod", "download")
	dl.Dir = ".."
	out, err = dl.CombinedOutput()
	require.NoError(t, err, "%s", out)

	require.NoError(t, l.Makepkg(ctx, dir))

	pkgs, _ := filepath.Glob(filepath.Join(dir, "paczfs-"+string(pkgver[1])+"-1-x86_64.pkg.tar.*"))
	require.Len(t, pkgs, 1, "one package")
	info, err := exec.Command("tar", "-xOf", pkgs[0], ".PKGINFO").Output()
	require.NoError(t, err)
	for _, want := range []string{"pkgname = paczfs\n", "pkgver = " + string(pkgver[1]) + "-1\n", "arch = x86_64\n", "depend = pacman\n", "depend = zfs-utils\n"} {
		assert.Contains(t, string(info), want)
	}
	root := t.TempDir()
	out, err = exec.Command("tar", "-xf", pkgs[0], "-C", root).CombinedOutput()
	require.NoError(t, err, "%s", out)
	for _, cmd := range []string{"paczfs", "paczfs-release", "paczfs-storage", "paczfs-bootenv"} {
		f, err := elf.Open(filepath.Join(root, "usr/bin", cmd))
		require.NoError(t, err, cmd)
		libs, _ := f.ImportedLibraries()
		interp := f.Section(".interp") != nil
		if cmd == "paczfs-bootenv" {
			assert.False(t, interp, "%s: static, for any image", cmd)
			assert.Empty(t, libs, cmd)
		} else {
			assert.Equal(t, elf.ET_DYN, f.Type, "%s: a PIE", cmd)
		}
		if cmd == "paczfs" {
			assert.Contains(t, strings.Join(libs, " "), "libalpm.so.15", "the builder links the distribution's libalpm")
		}
		f.Close()
	}
	// The static tool runs anywhere, this host included.
	out, err = exec.Command(filepath.Join(root, "usr/bin/paczfs-bootenv"), "help").CombinedOutput()
	assert.Contains(t, string(out), "activate", "%v", err)
	_, err = os.Stat(filepath.Join(root, "usr/share/doc/paczfs/README.md"))
	assert.NoError(t, err)
}

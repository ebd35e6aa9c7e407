package fsx

import (
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// withUmask runs fn under mask. The umask is the process's: these tests
// are never parallel.
func withUmask(t *testing.T, mask int, fn func()) {
	old := syscall.Umask(mask)
	defer syscall.Umask(old)
	fn()
}

func mode(t *testing.T, p string) fs.FileMode {
	fi, err := os.Lstat(p)
	require.NoError(t, err)
	return fi.Mode() & (fs.ModePerm | fs.ModeSticky | fs.ModeSetgid)
}

func TestModesIgnoreUmask(t *testing.T) {
	for _, mask := range []int{0o077, 0o000, 0o022} {
		withUmask(t, mask, func() {
			dir := t.TempDir()
			created, err := MkdirAll(filepath.Join(dir, "a/b/c"), 0o755)
			require.NoError(t, err)
			assert.Equal(t, []string{filepath.Join(dir, "a"), filepath.Join(dir, "a/b"), filepath.Join(dir, "a/b/c")}, created)
			for _, p := range created {
				assert.Equal(t, fs.FileMode(0o755), mode(t, p), "umask %03o: %s", mask, p)
			}
			require.NoError(t, Mkdir(filepath.Join(dir, "tmp"), 0o777|fs.ModeSticky))
			assert.Equal(t, 0o777|fs.ModeSticky, mode(t, filepath.Join(dir, "tmp")), "umask %03o", mask)

			f := filepath.Join(dir, "x/y/file")
			require.NoError(t, WriteFile(f, []byte("hi"), 0o644))
			assert.Equal(t, fs.FileMode(0o644), mode(t, f), "umask %03o", mask)
			assert.Equal(t, fs.FileMode(0o755), mode(t, filepath.Dir(f)), "umask %03o", mask)
			require.NoError(t, WriteFile(f, []byte("again"), 0o400))
			assert.Equal(t, fs.FileMode(0o400), mode(t, f))
			data, _ := os.ReadFile(f)
			assert.Equal(t, "again", string(data))
			_, err = os.Stat(f + ".paczfs-new")
			assert.ErrorIs(t, err, fs.ErrNotExist)

			got, err := Umask()
			require.NoError(t, err)
			assert.Equal(t, fs.FileMode(mask), got)
		})
	}
}

func TestExistingDirectoriesKeepTheirMode(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.Chmod(dir, 0o700))
	created, err := MkdirAll(filepath.Join(dir, "sub"), 0o755)
	require.NoError(t, err)
	assert.Len(t, created, 1)
	assert.Equal(t, fs.FileMode(0o700), mode(t, dir))
	created, err = MkdirAll(filepath.Join(dir, "sub"), 0o700)
	require.NoError(t, err)
	assert.Empty(t, created)
	assert.Equal(t, fs.FileMode(0o755), mode(t, filepath.Join(dir, "sub")))
}

func TestMkdirAllOverAFileFails(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "f"), nil, 0o644))
	_, err := MkdirAll(filepath.Join(dir, "f/sub"), 0o755)
	assert.ErrorContains(t, err, "not a directory")
}

func TestParseUmask(t *testing.T) {
	m, err := parseUmask([]byte("Name:\tx\nUmask:\t0027\nState:\tR\n"))
	require.NoError(t, err)
	assert.Equal(t, fs.FileMode(0o027), m)
	_, err = parseUmask([]byte("Name:\tx\n"))
	assert.ErrorContains(t, err, "no Umask line")
}

// WriteFileIn writes inside its root, with exact modes, and never through
// a link that leads out of it: an absolute link in a target would
// otherwise resolve on the build host.
func TestWriteFileInStaysInItsRoot(t *testing.T) {
	dir := t.TempDir()
	host := t.TempDir()
	r, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := WriteFileIn(r, "/etc/a/b/file", []byte("x"), 0o640); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, "etc/a/b/file"))
	if err != nil || fi.Mode().Perm() != 0o640 {
		t.Fatalf("file: %v %v", fi, err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "etc/a")); err != nil || fi.Mode().Perm() != DirMode {
		t.Fatalf("parent: %v %v", fi, err)
	}
	// A directory link out of the root, absolute or relative.
	if err := os.Symlink(host, filepath.Join(dir, "etc/abs")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../"+filepath.Base(host), filepath.Join(dir, "etc/rel")); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"etc/abs/file", "etc/rel/file", "etc/abs/new/file"} {
		if err := WriteFileIn(r, name, []byte("x"), 0o644); err == nil {
			t.Errorf("%s: written through a link out of the root", name)
		}
	}
	if ents, _ := os.ReadDir(host); len(ents) > 0 {
		t.Errorf("the host directory got %v", ents)
	}
	// A link as the file itself is replaced, not followed.
	victim := filepath.Join(host, "victim")
	if err := os.WriteFile(victim, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, filepath.Join(dir, "etc/leaf")); err != nil {
		t.Fatal(err)
	}
	if err := WriteFileIn(r, "etc/leaf", []byte("new"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "keep" {
		t.Errorf("the link's target was written: %q", b)
	}
	if fi, err := os.Lstat(filepath.Join(dir, "etc/leaf")); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("etc/leaf: %v %v", fi, err)
	}
}

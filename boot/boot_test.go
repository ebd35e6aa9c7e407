package boot_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/paczfs/paczfs/boot"
)

func TestEnvironmentEntry(t *testing.T) {
	env := boot.Environment{Name: "bootable", Dataset: "zroot/system/bootable", Kernel: "vmlinuz-linux",
		Initrds: []string{"initramfs-linux.img"}, Version: "6.12.1-arch1", RootOptions: []string{"zfs={dataset}", "rw"}, Extra: []string{"console=ttyS0"}}
	b, err := env.Entry("Arch Linux (bootable)").MarshalText()
	require.NoError(t, err)
	assert.Equal(t, `title   Arch Linux (bootable)
version 6.12.1-arch1
sort-key paczfs
linux   /env/bootable/vmlinuz-linux
initrd  /env/bootable/initramfs-linux.img
options zfs=zroot/system/bootable rw console=ttyS0
`, string(b))
	assert.Equal(t, "/loader/entries/paczfs-bootable.conf", env.Entry("x").Path())
}

func TestEntryRejections(t *testing.T) {
	for _, e := range []boot.Entry{
		{ID: "bad id", Title: "x", Linux: "/k"},
		{ID: "a", Linux: "/k"},
		{ID: "a", Title: "x", Linux: "k"},
		{ID: "a", Title: "x", Linux: "/k", Initrd: []string{"/../x"}},
		{ID: "a", Title: "x", Linux: "/k", Options: []string{"a\nb"}},
	} {
		_, err := e.MarshalText()
		assert.Error(t, err, "%+v", e)
	}
}

func TestLoaderConf(t *testing.T) {
	b, err := boot.Loader{Default: "paczfs-default.conf", Timeout: 3}.MarshalText()
	require.NoError(t, err)
	assert.Equal(t, "default paczfs-default.conf\ntimeout 3\neditor no\n", string(b))
}

func TestExpandPath(t *testing.T) {
	root := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(root, "usr/lib/modules/6.12.41-1-lts"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(root, "usr/lib/modules/6.12.41-1-lts/pkgbase"), []byte("linux-lts\n"), 0o644))
	p, err := boot.ExpandPath(root, "/boot/initramfs-{pkgbase}.img", "6.12.41-1-lts")
	require.NoError(t, err)
	assert.Equal(t, "/boot/initramfs-linux-lts.img", p)
	p, err = boot.ExpandPath(root, "/usr/lib/modules/{kver}/vmlinuz", "6.12.41-1-lts")
	require.NoError(t, err)
	assert.Equal(t, "/usr/lib/modules/6.12.41-1-lts/vmlinuz", p)
	p, err = boot.ExpandPath(t.TempDir(), "/boot/initrd.img-{kver}", "6.12.9-amd64")
	require.NoError(t, err, "no pkgbase file needed without {pkgbase}")
	assert.Equal(t, "/boot/initrd.img-6.12.9-amd64", p)
	_, err = boot.ExpandPath(t.TempDir(), "/boot/initramfs-{pkgbase}.img", "6.12.9-amd64")
	assert.ErrorIs(t, err, boot.ErrNoPkgBase)
}

package boot_test

import (
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

package boot_test

import (
	"os"
	"path/filepath"
	"strings"
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

func TestSyslinuxConfiguration(t *testing.T) {
	_, err := boot.Syslinux{Default: "b", Environments: []string{"a"}}.MarshalText()
	assert.ErrorContains(t, err, `default "b" is not one of the environments`)
	_, err = boot.Syslinux{Default: "a b", Environments: []string{"a b"}}.MarshalText()
	assert.ErrorContains(t, err, "use letters, digits")
	_, err = boot.Syslinux{}.MarshalText()
	assert.ErrorContains(t, err, "no environments")
	_, err = boot.Syslinux{Default: "a", Environments: []string{"a"}, Timeout: -1}.MarshalText()
	assert.ErrorContains(t, err, "timeout -1")

	// Timeout 0 boots at once, as loader.conf's timeout 0 does (SYSLINUX's
	// TIMEOUT 0 would wait for ever at the prompt).
	text, err := boot.Syslinux{Default: "a", Environments: []string{"a"}}.MarshalText()
	require.NoError(t, err)
	assert.Contains(t, string(text), "\nPROMPT 0\nDEFAULT a\nINCLUDE /env/a/syslinux.cfg\n")
	assert.NotContains(t, string(text), "TIMEOUT")
	assert.NotContains(t, string(text), "SERIAL")

	// A device rewrites DEFAULT and INCLUDE and keeps its other lines.
	old := "# Written by paczfs: legacy BIOS\n# /loader/entries. The DEFAULT...\nSERIAL 0 9600\nPROMPT 1\nTIMEOUT 50\nDEFAULT a\nINCLUDE /env/a/syslinux.cfg\ninclude /env/b/syslinux.cfg\n"
	keep := boot.SyslinuxKeep(old)
	assert.Equal(t, []string{"SERIAL 0 9600", "PROMPT 1", "TIMEOUT 50"}, keep)
	text, err = boot.Syslinux{Default: "c", Environments: []string{"c", "a"}, Keep: keep, Serial: true, Timeout: 1}.MarshalText()
	require.NoError(t, err)
	assert.Contains(t, string(text), "SERIAL 0 9600\nPROMPT 1\nTIMEOUT 50\nDEFAULT c\nINCLUDE /env/c/syslinux.cfg\nINCLUDE /env/a/syslinux.cfg\n")
	assert.Equal(t, 1, strings.Count(string(text), "SERIAL"))

	e := boot.Entry{ID: "x", Title: "X", Linux: "/env/x/vmlinuz", Initrd: []string{"/env/x/a.img", "/env/x/b,c.img"}}
	_, err = boot.SyslinuxLabel("x", e)
	assert.ErrorContains(t, err, "commas")
	e.Initrd = []string{"/env/x/ucode.img", "/env/x/initrd.img"}
	e.Options = []string{"root=zfs:p/system/x", "rw", "paczfs.trial"}
	frag, err := boot.SyslinuxLabel("x", e)
	require.NoError(t, err)
	assert.Contains(t, string(frag), "  INITRD /env/x/ucode.img,/env/x/initrd.img\n  APPEND root=zfs:p/system/x rw paczfs.trial\n")
	_, err = boot.SyslinuxLabel("x y", e)
	assert.Error(t, err)
}

// A timeout SYSLINUX cannot count is refused, not written overflowed.
func TestSyslinuxTimeoutBounded(t *testing.T) {
	s := boot.Syslinux{Default: "default", Environments: []string{"default"}, Timeout: boot.MaxSyslinuxTimeout}
	text, err := s.MarshalText()
	if err != nil || !strings.Contains(string(text), "TIMEOUT 35990\n") {
		t.Fatalf("%s %v", text, err)
	}
	for _, bad := range []int{boot.MaxSyslinuxTimeout + 1, 1 << 60, -1} {
		s.Timeout = bad
		if _, err := s.MarshalText(); err == nil {
			t.Errorf("timeout %d accepted", bad)
		}
	}
}

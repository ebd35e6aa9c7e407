package image

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/paczfs/paczfs/boot"
	"github.com/paczfs/paczfs/hooks/hookstest"
	"github.com/paczfs/paczfs/internal/testutil"
)

// mkinitcpioArray reads NAME=(a b c) from a mkinitcpio configuration.
func mkinitcpioArray(t *testing.T, conf, name string) []string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + name + `=\(([^)]*)\)$`).FindStringSubmatch(conf)
	require.NotNil(t, m, "%s=(...) in %q", name, conf)
	return strings.Fields(m[1])
}

// The Arch initramfs: portable, ZFS, the hostid, early microcode, and
// nothing that errs or warns at every boot or build (mkinitcpio v41,
// archzfs's zfs hook).
func TestArchInitramfsConfiguration(t *testing.T) {
	c := ArchProfile()
	conf := c.Boot.InitramfsFiles[ArchInitramfsDropIn]
	require.NotEmpty(t, conf)
	hooks := mkinitcpioArray(t, conf, "HOOKS")
	assert.Equal(t, []string{"base", "udev", "microcode", "modconf", "kms", "keyboard", "keymap", "block", "zfs", "filesystems"}, hooks)
	assert.NotContains(t, hooks, "autodetect", "portable: not only the build host's modules")
	assert.NotContains(t, hooks, "systemd", "archzfs's zfs hook is a busybox-init hook")
	assert.NotContains(t, hooks, "fsck", "no root=: 'device  not found' at every boot")
	assert.NotContains(t, hooks, "consolefont", "no FONT=: a warning at every build")
	assert.Less(t, slices.Index(hooks, "block"), slices.Index(hooks, "zfs"))
	assert.Less(t, slices.Index(hooks, "zfs"), slices.Index(hooks, "filesystems"))
	// The hostid reaches the initramfs, and the build checks that it did.
	assert.Equal(t, []string{"/etc/hostid"}, mkinitcpioArray(t, conf, "FILES"))
	assert.Empty(t, c.Boot.InitramfsList, "paczfs reads mkinitcpio's zstd image itself")
	assert.Equal(t, []string{"etc/hostid"}, c.Boot.InitramfsMust)
	// Firmware and microcode: an image that boots on real hardware.
	for _, p := range []string{"linux-firmware", "intel-ucode", "amd-ucode"} {
		assert.Contains(t, c.Packages.Bootable, p)
	}
	c.ImageFile = "/var/tmp/x.img"
	for _, pr := range c.validate() {
		assert.NotContains(t, pr.Field, "boot.", "%v", pr)
	}
	c.Boot.InitramfsList = []string{"lsinitcpio", "{initrd}"}
	for _, pr := range c.validate() {
		assert.NotContains(t, pr.Field, "boot.", "a listing command for a format paczfs does not read: %v", pr)
	}
}

// The generator's drop-in and /etc/hostid are in the target before the
// bootable layer is installed (Arch's mkinitcpio builds the kernel
// preset's initramfs in that transaction), and the system stage keeps
// that hostid.
func TestDropInAndHostIDComeBeforeTheBootableLayer(t *testing.T) {
	root := fakeTarget(t)
	cfg := ArchProfile()
	cfg.ImageFile = filepath.Join(t.TempDir(), "x.img")
	cfg.Pacman.KeyringDir = t.TempDir()
	cfg.Manage.Tool = testutil.StaticTool(t)
	st := hostBuild(t, cfg, root, &hookstest.FakeRunner{})

	require.NoError(t, st.beforeBootable())
	conf, err := os.ReadFile(filepath.Join(root, strings.TrimPrefix(ArchInitramfsDropIn, "/")))
	require.NoError(t, err)
	assert.Equal(t, ArchInitramfsConf, string(conf))
	id, err := os.ReadFile(filepath.Join(root, "etc/hostid"))
	require.NoError(t, err)
	require.Len(t, id, 4)
	written := st.hostID
	require.NotEmpty(t, written)

	require.NoError(t, stageSystem(context.Background(), st))
	assert.Equal(t, written, st.hostID, "the system stage keeps it")
	again, err := os.ReadFile(filepath.Join(root, "etc/hostid"))
	require.NoError(t, err)
	assert.Equal(t, id, again)

	// Something that replaced it in between is caught.
	require.NoError(t, os.WriteFile(filepath.Join(root, "etc/hostid"), []byte{1, 2, 3, 4}, 0o644))
	assert.ErrorContains(t, stageSystem(context.Background(), st), "/etc/hostid changed since the bootable layer")
}

// The dracut alternative: OpenZFS's dracut module in a portable image,
// the hostid checked with lsinitrd, root=zfs:<dataset> on every entry,
// and no mkinitcpio left to build a second image.
func TestArchDracutProfile(t *testing.T) {
	c, err := Profile(ProfileArchDracut)
	require.NoError(t, err)
	assert.Equal(t, ProfileArchDracut, c.Profile)
	assert.Contains(t, c.Packages.Bootable, "dracut")
	assert.NotContains(t, c.Packages.Bootable, "mkinitcpio")
	assert.Equal(t, ArchProfile().Packages.Base, c.Packages.Base)
	conf := c.Boot.InitramfsFiles[DracutDropIn]
	assert.Contains(t, conf, "\nhostonly=\"no\"\n", "portable: not only the build host's drivers")
	assert.Contains(t, conf, "\nadd_dracutmodules+=\" zfs \"\n", "spaces on both sides, as dracut.conf(5) asks")
	assert.NotContains(t, c.Boot.InitramfsFiles, ArchInitramfsDropIn)
	assert.Equal(t, []string{"dracut", "--force", "--kver", "{kver}", "{initrd}"}, c.Boot.InitramfsCommand)
	assert.Equal(t, []string{"--no-compress"}, c.Boot.InitramfsUncompressed, "the build compresses dracut's image itself")
	assert.Empty(t, c.Boot.InitramfsList, "paczfs reads dracut's image itself, not through lsinitrd (50 s in the lab)")
	assert.Equal(t, []string{"etc/hostid"}, c.Boot.InitramfsMust)
	assert.Empty(t, c.Boot.InitramfsHookTargets, "Arch's dracut has no pacman hook: paczfs-update-esp builds")
	assert.Equal(t, "/boot/initramfs-{pkgbase}.img", c.Boot.Initrd)
	for _, p := range []string{"usr/lib/dracut/*", "etc/dracut.conf.d/*", "usr/bin/zpool", "usr/lib/modules/*", "usr/lib/systemd/systemd*"} {
		assert.Contains(t, c.Boot.InitramfsTriggers, p)
	}
	assert.Equal(t, ArchProfile().Boot.SystemdBootEFI, c.Boot.SystemdBootEFI)

	c.ImageFile = "/var/tmp/x.img"
	c.Manage.Tool = testutil.StaticTool(t)
	assert.Empty(t, c.validate())
	// Every environment's entry names its own root the way 90zfs reads it.
	e := boot.Environment{Name: "default", Dataset: "zroot/system/default", Kernel: "vmlinuz", Initrds: []string{"initramfs-linux-lts.img"},
		RootOptions: c.Boot.RootOptions}
	text, err := e.Entry("Arch").MarshalText()
	require.NoError(t, err)
	assert.Contains(t, string(text), "options root=zfs:zroot/system/default rw\n")

	// The profiles are independent copies.
	c.Boot.InitramfsFiles[DracutDropIn] = "changed"
	assert.Equal(t, DracutConf, ArchDracutProfile().Boot.InitramfsFiles[DracutDropIn])
	_, err = Profile("mkosi")
	assert.ErrorContains(t, err, ProfileArchDracut)
}

// Legacy BIOS boot: both Arch profiles install SYSLINUX from the target's
// own package (with mtools, only optional in Arch's syslinux), mark the ESP
// for gptmbr.bin, and a config says what to fix when it is incomplete.
func TestBIOSBootConfiguration(t *testing.T) {
	for _, name := range []string{ProfileArch, ProfileArchDracut} {
		c, err := Profile(name)
		require.NoError(t, err)
		require.NotNil(t, c.Boot.BIOS, name)
		assert.Subset(t, c.Packages.Bootable, []string{"syslinux", "mtools"}, name)
		assert.Equal(t, "/usr/lib/syslinux/bios/gptmbr.bin", c.Boot.BIOS.MBR, "Arch's syslinux package")
		assert.Equal(t, []string{"syslinux", "--install", "--directory", "/syslinux", "{device}"}, c.Boot.BIOS.Install)
		esp := c.layout().Partitions[0]
		assert.Equal(t, "esp", string(esp.Role))
		assert.True(t, esp.LegacyBIOSBootable, "gptmbr.bin boots the partition with attribute bit 2")
	}
	c := ArchProfile()
	// Clones do not share it.
	d := c.Clone()
	d.Boot.BIOS.Install[0] = "extlinux"
	assert.Equal(t, "syslinux", ArchProfile().Boot.BIOS.Install[0])
	assert.Equal(t, "syslinux", c.Boot.BIOS.Install[0])

	c.ImageFile = "/var/tmp/x.img"
	c.Manage.Tool = testutil.StaticTool(t)
	require.Empty(t, c.validate())
	c.Boot.BIOS = &BIOSBoot{Install: []string{"syslinux", "--install"}, MBR: "gptmbr.bin"}
	problems := fmt.Sprint(c.validate())
	assert.Contains(t, problems, "boot.bios.install")
	assert.Contains(t, problems, "boot.bios.mbr")
	assert.Contains(t, problems, "set boot.bios to null for UEFI only")

	// UEFI only: nothing marked.
	c.Boot.BIOS = nil
	require.Empty(t, c.validate())
	assert.False(t, c.layout().Partitions[0].LegacyBIOSBootable)
}

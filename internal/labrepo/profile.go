package labrepo

import (
	"path/filepath"
	"slices"

	"github.com/paczfs/paczfs/disk"
	"github.com/paczfs/paczfs/image"
)

// ProfileName is the lab profile's name (image.Config.Profile).
const ProfileName = "lab"

// Profile builds from the lab repository (Debian 13 packages converted to
// Arch packages) served at url, with dracut and OpenZFS's dracut module
// (image.DracutBoot): the same pipeline as image.ArchDracutProfile,
// different data, so it runs and boots offline. It lives here, beside the repository, so that
// the library knows nothing of the lab.
func Profile(repo *Repo, url string) image.Config {
	c := image.ArchProfile()
	c.Profile = ProfileName
	c.Size = 4 * disk.GiB
	// Three environments, each with its own kernel and initramfs.
	c.ESPSize = 512 * disk.MiB
	c.SwapSize = 0
	c.Pacman = repo.PacmanConfig(url)
	c.Packages = image.Packages{
		Base:        slices.Clone(Base),
		Bootable:    Bootable(repo.Kernel),
		Workstation: slices.Clone(Workstation),
	}
	c.System.Units = []string{"ssh.service", "zfs.target", "zfs-mount.service"}
	c.System.SerialConsole = true
	c.System.Files = map[string]string{
		// Debian makes host keys in openssh-server's maintainer script,
		// which converted packages do not run; make them at first boot,
		// so every machine and clone has its own (Arch's sshdgenkeys
		// unit does the same).
		// The packaged ExecStartPre (sshd -t) needs the keys: reset the
		// list and make them first.
		"/etc/systemd/system/ssh.service.d/paczfs-host-keys.conf": "[Service]\nExecStartPre=\nExecStartPre=/usr/bin/ssh-keygen -A\nExecStartPre=/usr/sbin/sshd -t\n",
		// The lab's machines are emulated (TCG), two at a time on two
		// CPUs: udev's coldplug has taken over systemd's 90 s for
		// /dev/ttyS0, and the serial getty then never started. Lab
		// images only; a real machine keeps systemd's default.
		"/etc/systemd/system.conf.d/paczfs-lab.conf": "[Manager]\nDefaultDeviceTimeoutSec=300s\n",
	}
	// Dracut with OpenZFS's own module (zfs-dracut), the drop-in and the
	// root=zfs:<dataset> command line of image.ArchDracutProfile: the
	// generator, ZFS module and command line an Arch user can choose are
	// the ones every CI run boots.
	c.Boot = image.DracutBoot("/boot/vmlinuz-{kver}", "/boot/initrd.img-{kver}")
	// Debian's paths of the ZFS tools and libraries dracut copies in.
	c.Boot.InitramfsTriggers = append(c.Boot.InitramfsTriggers, "usr/sbin/zpool", "usr/sbin/zfs", "usr/sbin/mount.zfs",
		"usr/lib/x86_64-linux-gnu/libzfs*", "usr/lib/x86_64-linux-gnu/libzpool*", "usr/lib/x86_64-linux-gnu/libnvpair*")
	c.Boot.SystemdBootEFI = "/usr/lib/systemd/boot/efi/systemd-bootx64.efi"
	c.Boot.Timeout = 1
	// Debian's syslinux package is the same mtools installer as Arch's;
	// gptmbr.bin is in syslinux-common.
	c.Boot.BIOS = &image.BIOSBoot{
		Install: []string{"syslinux", "--install", "--directory", "/syslinux", "{device}"},
		MBR:     "/usr/lib/syslinux/mbr/gptmbr.bin",
	}
	return c
}

// At returns the repository as seen at dir (the directory holding repo/
// and keys/), e.g. where the lab VM mounts it.
func (r *Repo) At(dir string) *Repo {
	c := *r
	c.Dir = filepath.Join(dir, "repo")
	c.KeyringDir = filepath.Join(dir, "keys")
	return &c
}

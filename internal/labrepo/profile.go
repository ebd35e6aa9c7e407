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
// Arch packages) served at url, with Debian's initramfs-tools and its ZFS
// scripts: the same pipeline as image.ArchProfile, different data, so it
// runs and boots offline. It lives here, beside the repository, so that
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
	c.Boot = image.Boot{
		Kernel:           "/boot/vmlinuz-{kver}",
		Initrd:           "/boot/initrd.img-{kver}",
		InitramfsCommand: []string{"mkinitramfs", "-o", "{initrd}", "{kver}"},
		InitramfsFiles: map[string]string{
			// MODULES=most is Debian's default, stated so the image stays
			// portable (not tied to the build host) whatever the package
			// default becomes. (A short list of disk drivers saved only
			// 28 of 175 seconds under emulation: the time goes to
			// copying binaries and their libraries.)
			"/etc/initramfs-tools/conf.d/paczfs.conf": "# Written by paczfs: a portable initramfs.\nMODULES=most\n",
		},
		// Debian's zfs hook copies /etc/hostid; the build checks it.
		InitramfsList: []string{"lsinitramfs", "{initrd}"},
		InitramfsMust: []string{"etc/hostid"},
		// What initramfs-tools copies in: its scripts and hooks (every
		// package's, such as zfs-initramfs's), the kernel's modules and
		// firmware, and the binaries its hooks take (ZFS, udev, busybox).
		InitramfsTriggers: []string{"usr/share/initramfs-tools/*", "etc/initramfs-tools/*", "usr/sbin/mkinitramfs",
			"usr/lib/modules/*", "lib/modules/*", "usr/lib/firmware/*", "lib/firmware/*", "usr/sbin/zpool", "usr/sbin/zfs",
			"usr/lib/x86_64-linux-gnu/libzfs*", "usr/lib/x86_64-linux-gnu/libzpool*", "usr/lib/x86_64-linux-gnu/libnvpair*",
			"usr/lib/udev/*", "lib/udev/*", "usr/bin/busybox", "bin/busybox"},
		RootOptions:    []string{"boot=zfs", "root=ZFS={dataset}", "rw"},
		SystemdBootEFI: "/usr/lib/systemd/boot/efi/systemd-bootx64.efi",
		Timeout:        1,
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

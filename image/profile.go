package image

import (
	"fmt"
	"maps"
	"slices"

	"github.com/paczfs/paczfs/disk"
	"github.com/paczfs/paczfs/pacman"
	"github.com/paczfs/paczfs/zfs"
)

// ProfileArch is ArchProfile's name; ProfileArchDracut is
// ArchDracutProfile's.
const (
	ProfileArch       = "arch"
	ProfileArchDracut = "arch-dracut"
)

// common holds the defaults every profile shares: the disk, the pool, the
// dataset layout and the system settings of the original tool (with its
// fixed values made settings).
func common() Config {
	return Config{
		Size:             20 * disk.GiB,
		ESPSize:          550 * disk.MiB,
		SwapSize:         4 * disk.GiB,
		PoolName:         "zroot",
		Datasets:         zfs.DefaultDatasets(),
		RootDataset:      zfs.RootDataset,
		BootEnvironments: []string{LayerBootable, LayerWorkstation},
		MinirootClone:    "data/machines/miniroot",
		HoldTag:          "paczfs",
		System: System{
			Hostname: "paczfs",
			Timezone: "UTC",
			Locales:  []string{"en_US.UTF-8 UTF-8"},
			Keymap:   "us",
			Network:  true,
		},
	}
}

// ArchProfile is the default: Arch Linux from its mirrors over https with
// the archzfs repository, the zfs-linux-lts kernel module (archzfs builds
// it for the LTS kernel), mkinitcpio with the zfs hook, systemd-boot.
func ArchProfile() Config {
	c := common()
	c.Profile = ProfileArch
	c.Pacman = pacman.ArchConfig(true)
	c.Packages = Packages{
		Base: []string{"base"},
		// linux-firmware (a meta package of the split firmware since
		// 2025) and both vendors' microcode: a portable image boots on
		// real hardware, not only in a VM (the Arch installation guide
		// installs linux-firmware; the kernel only suggests it).
		// syslinux and mtools (its installer's optional dependency) for
		// legacy BIOS boot.
		Bootable: []string{"linux-lts", "zfs-linux-lts", "zfs-utils", "mkinitcpio", "linux-firmware", "intel-ucode", "amd-ucode", "openssh",
			"syslinux", "mtools"},
		Workstation: []string{"rsync", "vim", "htop", "iftop", "tmux", "pv", "sshfs", "gdisk", "pkgfile",
			"arch-install-scripts", "dosfstools", "parted", "bash-completion"},
		// zfs-linux-lts is built for one linux-lts; while archzfs lags
		// core, zfs-dkms builds the module for the kernel core has.
		ModulePairs: []ModulePair{{Kernel: "linux-lts", Module: "zfs-linux-lts", Fallback: []string{"zfs-dkms", "linux-lts-headers"}}},
	}
	c.System.Units = []string{"sshd.service", "zfs.target", "zfs-mount.service"}
	c.Boot = Boot{
		Kernel: "/usr/lib/modules/{kver}/vmlinuz",
		// The kernel preset's own image: the build builds it for {kver}
		// when the system is configured, and mkinitcpio's pacman hook on
		// every upgrade. One initramfs per kernel.
		Initrd:           "/boot/initramfs-{pkgbase}.img",
		InitramfsCommand: []string{"mkinitcpio", "-k", "{kver}", "-g", "{initrd}"},
		// In the bootable layer's transaction, 90-mkinitcpio-install writes
		// the kernel's preset and copies the kernel to /boot, then runs
		// mkinitcpio -p {pkgbase}: a whole build, before the system is
		// configured, that the build's own replaces. It finds a stub that
		// does nothing (libalpm/scripts/mkinitcpio calls mkinitcpio through
		// PATH), so the image's initramfs is built once.
		InitramfsStubs: []string{"mkinitcpio"},
		// 90-mkinitcpio-install's Path targets (mkinitcpio v41).
		InitramfsHookTargets: []string{"usr/lib/initcpio/*", "usr/lib/firmware/*", "usr/lib/modules/*/extramodules/*",
			"usr/src/*/dkms.conf", "usr/lib/systemd/systemd", "usr/bin/cryptsetup", "usr/bin/lvm", "usr/lib/modules/*/vmlinuz"},
		// A drop-in, not an edit of the packaged file (ArchInitramfsDropIn
		// says what is in it and why), written before the bootable layer:
		// mkinitcpio's own pacman hook builds with it on every upgrade on
		// the device, and in that transaction too when mkinitcpio is not
		// in InitramfsStubs.
		InitramfsFiles: map[string]string{ArchInitramfsDropIn: ArchInitramfsConf},
		// archzfs's zfs hook adds no /etc/hostid and mkinitcpio does not
		// either: the drop-in's FILES does, and the build checks it (it
		// reads mkinitcpio's zstd image itself).
		InitramfsMust: []string{"etc/hostid"},
		// mkinitcpio's own pacman hook (90-mkinitcpio-install.hook)
		// rebuilds on these paths and on mkinitcpio itself; the kernel
		// modules (zfs-linux-lts's extramodules) and the configuration
		// files are added.
		InitramfsTriggers: []string{"usr/lib/initcpio/*", "usr/lib/firmware/*", "usr/src/*/dkms.conf",
			"usr/lib/systemd/systemd", "usr/bin/cryptsetup", "usr/bin/lvm", "usr/lib/modules/*", "usr/bin/mkinitcpio",
			"etc/mkinitcpio.conf", "etc/mkinitcpio.d/*", "etc/mkinitcpio.conf.d/*"},
		RootOptions:    []string{"zfs={dataset}", "rw"},
		SystemdBootEFI: "/usr/lib/systemd/boot/efi/systemd-bootx64.efi",
		Timeout:        3,
		// Arch's syslinux package: the mtools installer and its BIOS files.
		BIOS: &BIOSBoot{
			Install: []string{"syslinux", "--install", "--directory", "/syslinux", "{device}"},
			MBR:     "/usr/lib/syslinux/bios/gptmbr.bin",
		},
	}
	return c
}

// ArchInitramfsDropIn is the mkinitcpio drop-in ArchProfile writes
// (mkinitcpio sources /etc/mkinitcpio.conf.d/*.conf after
// mkinitcpio.conf, so it overrides HOOKS without editing a packaged file).
const ArchInitramfsDropIn = "/etc/mkinitcpio.conf.d/paczfs.conf"

// ArchInitramfsConf is its content:
//   - no autodetect: the image must boot on other hardware than the
//     build host's;
//   - udev, not systemd: archzfs's zfs hook is a busybox-init hook;
//   - microcode (mkinitcpio's default since v38): early microcode from
//     intel-ucode and amd-ucode;
//   - no consolefont (it warns at every build without FONT=) and no fsck
//     (with no root= it prints "ERROR: device  not found" at every boot; ZFS
//     has no fsck);
//   - FILES=(/etc/hostid): the pool is imported with the image's hostid,
//     not 0 (archzfs's hook stopped adding it in its d571b3f).
const ArchInitramfsConf = "# Written by paczfs: a portable initramfs (no autodetect) with ZFS and this system's hostid.\n" +
	"HOOKS=(base udev microcode modconf kms keyboard keymap block zfs filesystems)\n" +
	"FILES=(/etc/hostid)\n"

// ArchDracutProfile is ArchProfile with dracut in mkinitcpio's place:
// the initramfs is built by dracut with OpenZFS's own dracut module (90zfs,
// which archzfs's zfs-utils ships as Debian's zfs-dracut does), and the
// entries name their root as root=zfs:<dataset>. It is the generator the
// project's CI boots in every run (the lab profile uses DracutBoot with
// the same drop-in and command line).
//
// mkinitcpio stays ArchProfile's generator: it is Arch's default, the
// kernel packages' preset and pacman hooks are mkinitcpio's, and archzfs
// maintains its initcpio hook for it. Arch's dracut package ships no
// pacman hook, so on the device paczfs-update-esp builds the initramfs
// itself after every upgrade that touches a trigger (no
// InitramfsHookTargets), one build per upgrade as with mkinitcpio.
func ArchDracutProfile() Config {
	c := ArchProfile()
	c.Profile = ProfileArchDracut
	for i, p := range c.Packages.Bootable {
		if p == "mkinitcpio" {
			// linux-lts depends on "initramfs", which dracut provides.
			c.Packages.Bootable[i] = "dracut"
		}
	}
	b := DracutBoot("/usr/lib/modules/{kver}/vmlinuz", "/boot/initramfs-{pkgbase}.img")
	b.InitramfsTriggers = append(b.InitramfsTriggers, "usr/bin/zfs", "usr/bin/zpool", "usr/lib/libzfs*", "usr/lib/libzpool*", "usr/lib/libnvpair*")
	b.SystemdBootEFI = c.Boot.SystemdBootEFI
	b.Timeout = c.Boot.Timeout
	b.BIOS = c.Boot.BIOS
	c.Boot = b
	return c
}

// DracutDropIn is the dracut drop-in DracutBoot writes (dracut reads
// /etc/dracut.conf.d/*.conf after /etc/dracut.conf).
const DracutDropIn = "/etc/dracut.conf.d/paczfs.conf"

// DracutConf is its content:
//   - hostonly="no": the image boots on other hardware than the build
//     host's (Debian's dracut defaults to host-only);
//   - add_dracutmodules+=" zfs ": OpenZFS's 90zfs module, which imports the
//     pool, mounts root=zfs:<dataset> (or the pool's bootfs for
//     root=zfs:AUTO), and installs /etc/hostid (the build checks that it
//     did);
//   - nofsck="yes": ZFS has no fsck, and the tools would only add size.
const DracutConf = "# Written by paczfs: a portable initramfs (not host-only) with ZFS and this system's hostid.\n" +
	"hostonly=\"no\"\n" +
	"add_dracutmodules+=\" zfs \"\n" +
	"nofsck=\"yes\"\n"

// DracutBoot is the Boot of a system whose initramfs dracut builds, for
// the kernel and initramfs paths of its distribution (Debian:
// "/boot/vmlinuz-{kver}", "/boot/initrd.img-{kver}"): the drop-in, dracut's
// command (run with --no-compress by the build, which compresses the
// image itself: Boot.InitramfsUncompressed), the check that /etc/hostid
// is in, the triggers of a rebuild, and root=zfs:{dataset}. Set
// SystemdBootEFI and Timeout, and add the distribution's paths of the ZFS
// tools and libraries to InitramfsTriggers.
func DracutBoot(kernel, initrd string) Boot {
	return Boot{
		Kernel:           kernel,
		Initrd:           initrd,
		InitramfsCommand: []string{"dracut", "--force", "--kver", "{kver}", "{initrd}"},
		// dracut's own zstd -15 is 50 s or more in the lab for no gain in
		// size: the build compresses the image itself.
		InitramfsUncompressed: []string{"--no-compress"},
		InitramfsFiles:        map[string]string{DracutDropIn: DracutConf},
		InitramfsMust:         []string{"etc/hostid"},
		// What dracut copies in: its modules (OpenZFS's 90zfs among them),
		// its configuration, the kernel's modules and firmware, udev, and
		// systemd's own programs (its systemd modules), not the units
		// other packages ship in usr/lib/systemd/system.
		InitramfsTriggers: []string{"usr/lib/dracut/*", "etc/dracut.conf", "etc/dracut.conf.d/*", "usr/bin/dracut",
			"usr/lib/modules/*", "usr/lib/firmware/*", "usr/lib/udev/*", "usr/lib/systemd/systemd*"},
		RootOptions: []string{"root=zfs:{dataset}", "rw"},
	}
}

// Profile returns the named profile: "arch" (or "") is ArchProfile,
// "arch-dracut" ArchDracutProfile.
// Other profiles are Configs of their own (the lab's is built where its
// repository lives); a Config saved as JSON (the /etc/paczfs/config.json
// of a built image) is one too.
func Profile(name string) (Config, error) {
	switch name {
	case ProfileArch, "":
		return ArchProfile(), nil
	case ProfileArchDracut:
		return ArchDracutProfile(), nil
	}
	return Config{}, fmt.Errorf("unknown profile %q: use %s or %s, or start from a Config of your own", name, ProfileArch, ProfileArchDracut)
}

// Clone returns a deep copy, so profiles can be changed without touching
// each other.
func (c Config) Clone() Config {
	c.Outputs = slices.Clone(c.Outputs)
	c.Manage.ReleaseKeys = slices.Clone(c.Manage.ReleaseKeys)
	c.PoolProperties = maps.Clone(c.PoolProperties)
	c.FSProperties = maps.Clone(c.FSProperties)
	ds := make([]zfs.DatasetSpec, len(c.Datasets))
	for i, d := range c.Datasets {
		d.Props = maps.Clone(d.Props)
		ds[i] = d
	}
	c.Datasets = ds
	c.BootEnvironments = slices.Clone(c.BootEnvironments)
	c.Packages.Base = slices.Clone(c.Packages.Base)
	c.Packages.Bootable = slices.Clone(c.Packages.Bootable)
	c.Packages.Workstation = slices.Clone(c.Packages.Workstation)
	c.Packages.ModulePairs = slices.Clone(c.Packages.ModulePairs)
	for i := range c.Packages.ModulePairs {
		c.Packages.ModulePairs[i].Fallback = slices.Clone(c.Packages.ModulePairs[i].Fallback)
	}
	c.System.Locales = slices.Clone(c.System.Locales)
	c.System.Files = maps.Clone(c.System.Files)
	c.System.AuthorizedKeys = slices.Clone(c.System.AuthorizedKeys)
	c.System.Units = slices.Clone(c.System.Units)
	c.Encryption.Datasets = slices.Clone(c.Encryption.Datasets)
	c.Pacman = c.Pacman.Clone()
	c.Boot.InitramfsCommand = slices.Clone(c.Boot.InitramfsCommand)
	c.Boot.InitramfsUncompressed = slices.Clone(c.Boot.InitramfsUncompressed)
	c.Boot.InitramfsFiles = maps.Clone(c.Boot.InitramfsFiles)
	c.Boot.InitramfsTriggers = slices.Clone(c.Boot.InitramfsTriggers)
	c.Boot.InitramfsList = slices.Clone(c.Boot.InitramfsList)
	c.Boot.InitramfsMust = slices.Clone(c.Boot.InitramfsMust)
	c.Boot.InitramfsHookTargets = slices.Clone(c.Boot.InitramfsHookTargets)
	c.Boot.InitramfsStubs = slices.Clone(c.Boot.InitramfsStubs)
	c.Boot.RootOptions = slices.Clone(c.Boot.RootOptions)
	c.Boot.ExtraOptions = slices.Clone(c.Boot.ExtraOptions)
	if c.Boot.BIOS != nil {
		bios := *c.Boot.BIOS
		bios.Install = slices.Clone(bios.Install)
		c.Boot.BIOS = &bios
	}
	if c.Layout != nil {
		l := *c.Layout
		l.Partitions = slices.Clone(l.Partitions)
		c.Layout = &l
	}
	return c
}

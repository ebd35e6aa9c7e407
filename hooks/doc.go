// Package hooks holds paczfs's extension points: the things a caller plugs
// into a build.
//
// The lowest one is [Runner]: every external program paczfs starts (zpool,
// zfs, mount, chroot, qemu-img...) goes through a Runner, which takes a
// [context.Context], logs the command line with log/slog and returns a
// [*CmdError] carrying argv, exit code and the tail of stderr. [ExecRunner]
// runs commands on the host; package hookstest has a scriptable fake that
// records what was run, for unit tests of ordering, errors and rollback.
//
// Runner lives here, not in the packages that use it (disk, zfs, pacman,
// boot, image), because callers must be able to name it and this package
// imports nothing else from paczfs, so every other package can import it.
//
// # Stages
//
// An image build runs these stages in order ([Stages]). The right column
// lists the original paczfs hook points ([OriginalHooks]) each one covers.
//
//	stage        does                                                    original hooks
//	checks       validate the configuration and host tools               init-system, prepare-env
//	target       create the sparse image or check the block device,     prepare-loop-dev
//	             attach it
//	partition    write the GPT (ESP, optional swap, ZFS)                 prepare-partitions, prepare-swap
//	esp          format the ESP (FAT32) without mounting                 prepare-efi-volume
//	pool         create the pool (temporary name, altroot)               prepare-zfs-pool
//	datasets     create the dataset layout, mount the root               prepare-directories
//	pacman       pacman configuration, target keyring, mirrorlist,       prepare-cache, prepare-pacman,
//	             package cache                                           prepare-pacman-keys, populate-mirrorlist
//	base         install the base set, snapshot                          install-miniroot, snapshot-miniroot
//	bootable     install kernel, ZFS and boot tools, snapshot, clone     install-bootable, snapshot-bootable
//	workstation  install the workstation set, snapshot, clone            install-workstation, snapshot-workstation
//	system       hostname, timezone, locales, network, users, ssh keys,  set-locale, copy-ssh-keys, prepare-users
//	             fstab, hostid, /etc/paczfs
//	initramfs    build a portable initramfs with ZFS and the hostid      prepare-initramfs
//	bootloader   systemd-boot, loader.conf, one entry per environment    install-grub
//	finalize     bootfs, final snapshot, export, detach                  finalize-image, clean-up
//	convert      raw image to VDI, QCOW, QCOW2, VMDK, VHDX               save-image-file, save-vdi-file,
//	                                                                     save-qcow-file, save-qcow2-file
//
// The stages and their hooks are run by image.Builder (in progress).
package hooks

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
// An image build (image.Builder) runs these stages in order ([Stages]).
// The right column lists the original paczfs hook points
// ([OriginalHooks]) each one covers. A [Hook] runs before or after a
// stage, or replaces it (the original's handled=true); [Script] runs a
// shell script as a hook, on the host or chrooted in the target.
//
//	stage        does                                                    original hooks
//	checks       validate the host, the block device, resolve packages   init-system, prepare-env
//	             (nothing is written before this stage passes)
//	target       create the sparse image or open the block device,      prepare-loop-dev
//	             attach it as a loop device
//	partition    write the GPT (ESP, optional swap, ZFS), mkswap          prepare-partitions, prepare-swap
//	esp          format the ESP (FAT32) without mounting it              prepare-efi-volume
//	pool         create the pool (temporary name, altroot)               prepare-zfs-pool
//	datasets     create the dataset layout, mount the root               prepare-directories
//	pacman       the target's own keyring (fresh master key)            prepare-cache, prepare-pacman,
//	                                                                     prepare-pacman-keys, populate-mirrorlist
//	base         install the base set; snapshot @base (held), the        install-miniroot, snapshot-miniroot
//	             read-only miniroot clone for systemd-nspawn
//	bootable     the initramfs drop-ins and the hostid first, then       install-bootable
//	             install kernel, ZFS and boot tools, with the generators
//	             of boot.initramfs_stubs stubbed in the layer's package
//	             hooks (the initramfs stage builds the image once)
//	system       pacman.conf+mirrorlists, hostname, timezone, locales,   set-locale, copy-ssh-keys, prepare-users
//	             keymap, skel, networkd+resolved, root login, ssh keys,
//	             machine-id, hostid (kept), fstab, units, /etc/paczfs
//	initramfs    a portable initramfs with ZFS and the hostid, from      prepare-initramfs
//	             drop-in configuration (no package file is edited),
//	             its files checked (boot.initramfs_must); meanwhile the
//	             workstation set downloads (into the host's package
//	             cache, or a temporary dataset over the target's)
//	bootloader   systemd-boot (also EFI/BOOT/BOOTX64.EFI), loader.conf,  install-grub, snapshot-bootable
//	             kernel+initramfs+entry per boot environment, the
//	             ESP-refresh pacman hook; snapshot @bootable (held),
//	             clone system/bootable
//	workstation  install the workstation set; snapshot @workstation     install-workstation, snapshot-workstation
//	             (held), clone system/workstation
//	finalize     bootfs, snapshot @installed (held), trim (an image     finalize-image, clean-up
//	             file's freed blocks become holes), export, detach
//	convert      raw disk to VDI, QCOW, QCOW2, VMDK, VHDX, raw           save-image-file, save-vdi-file,
//	                                                                     save-qcow-file, save-qcow2-file
//
// The order follows the original tool where it matters: the system is
// configured and made bootable before the bootable layer is snapshotted,
// so every boot environment cloned from it boots; the base layer stays
// the bare package set.
//
// # What each stage hands on
//
// Everything a stage hands to the next is in [State] (the builder also
// keeps records of its own, such as the disk's partition plan, and takes
// them from State when a hook replaced the stage). A hook that replaces a
// stage must provide what the left column says; the builder then does the
// rest in the right column. If the hook did not, the build stops at that
// stage with an image.StageError wrapping image.ErrNotProvided and naming
// the field: never later, never a panic.
//
//	stage       a replacing hook provides                 the builder then
//	checks      (nothing: the host is the hook's call)    plans the disk and pool from the configuration
//	target      ImageFile (a file) or Device (a disk)     attaches its loop device, sets Device; never
//	                                                      removes the hook's file on failure
//	partition   a GPT on the disk, with ESP and ZFS        reads it back, sets Partitions
//	esp         a FAT ESP                                 sets ESP (its own accessor) if the hook did not
//	pool        Pool (imported name), Root (altroot)      defaults PoolName and RootDataset, exports the
//	                                                      pool when the build ends
//	datasets    the root dataset mounted at Root          checks RootDataset and Root
//	system      the configured root                       reads the hostid for the result
//	initramfs   the initramfs in the root                 reads the kernel version from the root
//	others      their work                                nothing more
//
// In a build derived from a previous release (image.Release.From) the
// same stages run with the same contract, but datasets receives the
// release's full stream as the root instead of creating it, pacman keeps
// the received keyring, base brings the packages of every layer to the
// new sets in one transaction, bootable and workstation have nothing
// left to do, initramfs keeps the received one when nothing it is made
// from changed, and finalize also writes the release.
//
// A build with a cache (image.Config.CacheDir) reuses a layer only when
// no hook it cannot name runs at or before the layer's stage (base,
// bootable), and an initramfs only when none ran at or before the
// initramfs stage: a hook
// that is [Keyed] (or wrapped with [WithCacheKey]) puts its key in the
// cache's key instead of turning the cache off.
package hooks

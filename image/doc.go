// Package image turns a configuration into a bootable Arch Linux disk
// image with a ZFS root.
//
// A [Config] holds a whole build as data; [ArchProfile] is the starting
// point, and any Config (saved as JSON, as every image records its own in
// /etc/paczfs/config.json) can be another: profiles differ in data only
// (packages, repositories, how the initramfs is made, how the kernel
// command line names the root). The project's lab builds from a profile of
// Debian packages converted to Arch ones, kept beside its repository. [New] checks the configuration, the hooks and the host
// and writes nothing; every problem comes back in a [*ConfigError] naming
// the field and the fix. [Builder.Plan] resolves the partition table, the
// pool and dataset commands and the packages without building (a dry
// run). [Builder.Build] runs the stages listed in package hooks, with the
// hooks given to [WithHooks] before, after or instead of them; on failure
// or cancellation it releases everything it acquired (chroot mounts,
// gpg-agent, the imported pool, the loop device) and removes the partial
// output unless [WithKeepOnFailure]. [Convert] writes VDI, QCOW, QCOW2,
// VMDK, VHDX or raw copies: a zlib QCOW2 in-process (internal/qcow2,
// several times faster than qemu-img), the others through qemu-img; a
// build's convert stage writes all of its outputs at once, each to a
// partial file beside it, and renames them into place only when all are
// whole ([Recover] removes what a killed build left).
//
// With [Config].CacheDir, a build keeps what a later one can reuse: the
// base and bootable layers as the root's send streams (with archives of
// the other datasets; never the pacman keyring) and each initramfs, each
// under the SHA-256 of what it is made from. A rebuild whose inputs are
// unchanged receives the streams and copies the initramfs instead of
// installing and generating ([Result].LayersReused, InitramfsReused).
// The cache is bounded by [Config].CacheMax (least recently used entries
// go first; [PruneCache] does it without a build).
//
// With [Release] set, a build also writes a signed release of its root
// environment (package release): its full ZFS stream and manifest. A
// build whose Release.From names the previous release starts from it
// instead of from scratch: its full stream, verified, is received as the
// root; one libalpm transaction brings the packages to the new sets
// (pacman.Installer.Sync: installs, upgrades, removals); the system is
// configured again; the initramfs is kept unless a kernel was added or
// removed, a package changed one of [Boot].InitramfsTriggers (the
// distribution's own rule for rebuilding it) or its drop-ins changed;
// and the incremental stream from the previous release is written beside
// the full one. The disk gets the previous release's GPT GUIDs and the
// root keeps its /etc/hostid, so the fstab and the pools on the devices
// of the earlier release agree with the new root.
//
// The initramfs generator is data too: [ArchProfile] uses mkinitcpio with
// archzfs's zfs hook, [ArchDracutProfile] dracut with OpenZFS's own module
// ([DracutBoot]), which is what the lab's images boot in CI. [Encryption]
// encrypts data datasets (a key file in the root, or a passphrase asked
// at boot) and optionally the boot environments themselves. With
// [Boot].BIOS (both Arch profiles) the image also boots under legacy
// BIOS: SYSLINUX's gptmbr.bin in the protective MBR, the ESP marked
// legacy BIOS bootable, SYSLINUX on the ESP with a label per environment
// made from its loader entry ([BIOSBoot] says why SYSLINUX).
//
// Building needs root, OpenZFS (zpool, zfs), util-linux (unshare, mount,
// mkswap for swap), cgo with libalpm (pacman-key, gpg, gpgconf for the
// keyring) and qemu-img for outputs other than a zlib QCOW2. The checks
// that need them report what is missing before anything is written.
package image

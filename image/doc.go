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
// VMDK, VHDX or raw copies through qemu-img.
//
// Building needs root, OpenZFS (zpool, zfs), util-linux (unshare, mount,
// mkswap for swap), cgo with libalpm (pacman-key, gpg, gpgconf for the
// keyring) and qemu-img for outputs. The checks that need them report
// what is missing before anything is written.
package image

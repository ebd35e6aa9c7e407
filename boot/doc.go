// Package boot renders systemd-boot's configuration for paczfs images:
// Boot Loader Specification entries (one per boot environment, each with
// its own kernel and initramfs on the ESP and its own root dataset on the
// kernel command line) and loader.conf; and, for legacy BIOS boot of the
// same ESP, SYSLINUX's configuration made from those entries (Syslinux,
// SyslinuxLabel). Rendering is pure; writing the files and the EFI binary
// onto the ESP goes through disk.ESP.
//
// InitramfsMissing reads an initramfs as the kernel does (newc cpio
// archives, the last one compressed) to check that it holds the files a
// ZFS root needs, such as /etc/hostid, without the generator's listing
// tool. CompressInitramfs compresses an uncompressed one as the kernel
// expects it (early archives left uncompressed, the rest zstd or gzip),
// in-process: the build uses it for dracut, whose own zstd -15 is slow
// in an emulated VM. Both need no root and no tool.
//
// See https://uapi-group.org/specifications/specs/boot_loader_specification/.
package boot

// Package bootenv manages the boot environments of a paczfs system once it
// runs: list them, create one from the booted root (or any environment or
// snapshot, or empty for a received stream), activate one for good, for
// the next boot only, or as a trial with N tries, rename, destroy, mount
// and run one in systemd-nspawn; and, on every boot, decide whether the
// boot was good, bless it, snapshot it, and record a failed trial as bad.
//
// It is a package of its own, not part of boot: boot renders systemd-boot
// files and is pure; bootenv acts on a live pool, an ESP and EFI variables
// through a hooks.Runner, and is what the device-side tool
// (examples/bootenv, installed in every image as /usr/local/sbin/paczfs-bootenv)
// is a thin layer over.
//
// # State model
//
// The truth lives on the pool, so every environment sees the same:
//
//   - An environment is a filesystem <pool>/system/<name> with
//     canmount=noauto and mountpoint=/.
//   - The pool's bootfs property names the default environment.
//   - The user property org.paczfs:state on each environment is new,
//     trying, good or bad (absent reads as new: a clone made by hand);
//     org.paczfs:lastgood is the Unix time of its last good boot.
//
// On the ESP each environment has /env/<name>/ (its own kernel and
// initramfs, copied from its own root: new ones beside those its entry
// names, as <file>.b when the entry names <file>, synced, then the entry,
// then what it no longer names removed, so a power cut never leaves an
// entry without its files) and one entry,
// loader/entries/paczfs-<name>.conf, or paczfs-<name>+N.conf while it is a
// trial (systemd-boot's boot counting). loader.conf's default is the glob
// "paczfs-*", never one entry: systemd-boot picks the first matching
// entry in its sort order, and it sorts entries with no tries left last.
// The entries' sort keys give that order: the trial ("paczfs-0-trial"),
// then the default ("paczfs-1-default"), then the others ("paczfs-2").
// So a trial boots first while it has tries, and once they are spent the
// default boots again with nobody at the console; a pinned default would
// keep booting the bad entry (systemd issue 31215).
//
// # Legacy BIOS
//
// An image built with boot.bios boots legacy BIOS machines from the same
// ESP with SYSLINUX (/syslinux/syslinux.cfg: DEFAULT and one INCLUDE per
// environment, each environment's label in /env/<name>/syslinux.cfg,
// made from its entry). Every change of the entries rewrites them, so
// both boot loaders boot the same default. SYSLINUX has no boot counting;
// on a system booted by a legacy BIOS (no EFI variables) a trial is its
// boot-once (extlinux --once, which ldlinux clears at the next boot
// before it loads the kernel) with one try: the entry is written as
// spent (+0-1) when the trial is armed, a good boot promotes it as on
// UEFI, and a failed one is followed by the default, whose good boot
// marks the trial bad. A one-shot activation is the same boot-once.
//
// # A boot
//
// Three units in the image drive the assessment. paczfs-boot-check.service
// (RequiredBy and Before boot-complete.target) runs `paczfs-bootenv check`:
// the image's health script (root is the dataset the entry names, pools
// ONLINE, no failed, activating or restarted unit, the image's units
// active) and every executable in /etc/paczfs/health.d; on a trial boot a
// failure reboots. paczfs-boot-good.service (after boot-complete.target
// and systemd-bless-boot.service) runs `paczfs-bootenv good`: it removes
// the counter if systemd-bless-boot did not (the trial becomes the
// default, bootfs follows), marks the environment good, snapshots it
// (@good-<UTC time>, keeping the last few), and marks every entry with no
// tries left bad. paczfs-trial-watchdog.service, on trial boots only,
// reboots when boot-complete.target is not reached in time; trial entries
// also carry panic=10, rd.shell=0 and rd.emergency=reboot, so a kernel or
// initramfs panic, or a dracut initramfs that cannot mount the root,
// reboots too.
// paczfs-bootfs-sync.service runs `paczfs-bootenv sync` at shutdown: when
// bootfs names another environment than the default (zpool set bootfs=...,
// as the original README documents), that environment gets its kernel,
// initramfs and entry and becomes the default, so the reboot boots it.
//
// # Needs
//
// Root; OpenZFS's zfs and zpool, mount and umount (util-linux); the ESP
// mounted (/efi by default, or WithESP); efivarfs for one-shot activation
// and for reading what the firmware booted (under legacy BIOS, extlinux
// instead); systemd-nspawn for Nspawn.
// The boot-time units need systemd in the image.
package bootenv

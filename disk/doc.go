// Package disk plans and writes the disk of a paczfs image: a GPT with an
// EFI System Partition, optional swap and a ZFS partition.
//
//   - Layout.Plan is pure: it places partitions on 1 MiB boundaries, the
//     last one taking the rest of the disk, and rejects overlaps, disks
//     that are too small, and sizes that are not whole MiB.
//   - WriteGPT writes the table with a protective MBR (go-diskfs); disk and
//     partition GUIDs are random, or derived from a seed for reproducible images.
//   - FormatESP creates the ESP's FAT32 filesystem and writes files into it
//     without mounting it, then repairs the ".." entries go-diskfs v1.9.4
//     writes wrong, so fsck.fat reports nothing.
//   - CreateImage makes a sparse image file and never overwrites one unless
//     told; OpenBlockDevice refuses a device that is mounted, swap, held,
//     part of an imported pool, or (unless told to wipe) not empty.
//   - Attach binds a file to a loop device with LOOP_CONFIGURE (partition
//     scanning, autoclear), safely under concurrency; Detach is verified
//     and can only ever release the caller's own device.
//
// Planning and writing image files need no privileges. Loop devices and
// block devices need root; partition nodes on loop devices need a kernel
// with GPT support (CONFIG_EFI_PARTITION). Tools: wipefs and zpool for
// OpenBlockDevice.
package disk

// Package paczfs builds bootable Arch Linux disk images whose root
// filesystem is ZFS.
//
// It is a set of packages that compose through image.Builder:
//
//	disk    GPT layout planning (pure), GPT and FAT32 ESP writing without
//	        mounting (go-diskfs), image files, block device checks, loop devices
//	zfs     pools and datasets through zpool/zfs: create, import, export,
//	        properties, snapshots, holds, clones, rollback, send and receive
//	pacman  installing Arch packages into the new root through libalpm
//	boot    systemd-boot on the ESP, one entry per boot environment
//	image   the Builder: configuration, validation, stages, cleanup, conversion
//	hooks   extension points: the command Runner, stage hooks
//
// Every external command goes through a hooks.Runner, every acquisition
// (loop device, imported pool, mount) is released in reverse order on
// success, failure or cancellation, and nothing is written before the whole
// configuration has been validated.
//
// Building an image needs root on a Linux host with OpenZFS and loop
// devices. The tests that need such a kernel run in the project's lab VM
// (internal/lab); see README.md.
package paczfs

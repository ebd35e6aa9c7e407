// Package ovmf boots disk images under OVMF (UEFI firmware for qemu) and
// returns their serial console, for paczfs's boot tests and `make demo`.
// The firmware's variable store is copied per boot, and the image is
// attached in snapshot mode, so a boot never changes either.
//
// It needs qemu-system-x86_64 and the ovmf package's firmware
// (/usr/share/OVMF); no root. It uses TCG unless PACZFS_LAB_ACCEL names
// another accelerator.
package ovmf

#!/bin/sh
# An example paczfs shell hook. Its file name places it: after the system
# stage ("after-system"), run chrooted in the target (".target."), so "/"
# here is the new system. Use it with
#
#	HOOKS_DIR=./examples/hooks go run ./examples/basic
#
# paczfs sets PACZFS_STAGE, PACZFS_WHEN, PACZFS_ROOT ("/" in the target,
# the mount point for host hooks), PACZFS_IMAGE, PACZFS_DEVICE,
# PACZFS_ESP_DEV, PACZFS_ZFS_DEV, PACZFS_SWAP_DEV, PACZFS_POOL (the name
# while the build has it imported), PACZFS_POOL_NAME (the name on disk)
# and PACZFS_ROOT_DATASET. A non-zero exit fails the build, which then
# releases everything it acquired.
set -eu
cat > /etc/motd <<MOTD

  Arch Linux on ZFS, built by paczfs.
  Root: ${PACZFS_POOL_NAME}/system/default; boot environments: zfs list ${PACZFS_POOL_NAME}/system
  Roll back: zfs rollback, or boot another entry from the systemd-boot menu.

MOTD
echo "example hook: wrote /etc/motd in the $PACZFS_STAGE stage"

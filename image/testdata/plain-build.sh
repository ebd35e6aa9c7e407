#!/bin/sh
# plain-build.sh: the lab image built by hand, with the plain tools, the way
# a careful admin would build it without paczfs. BenchmarkLabBuildImage
# (make bench-image) runs it beside a paczfs build of the same image in the
# same lab VM run and prints their ratio.
#
# The same image: a sparse file, GPT with an EFI System Partition (legacy
# BIOS bootable) and ZFS, a pool with the boot-environment layout and the
# data datasets, the packages installed as pacstrap installs them (one
# transaction, the API filesystems mounted, a keyring with the repository's
# key signed locally), the system configured, a portable dracut initramfs
# with ZFS and the hostid, systemd-boot and SYSLINUX on the ESP with the
# kernel and initramfs, the pool snapshotted and exported, and a compressed
# QCOW2 copy. What it leaves out is what paczfs adds beyond a hand build
# (its checks, hooks, boot assessment, extra environments).
#
# Run as root. Input, from the environment:
#   IMG, QCOW2       the raw image to create and its QCOW2 copy
#   WORK             an empty directory for the mount point and pacman.conf
#   CACHE            the package cache directory
#   REPO_NAME, REPO_URL, KEYRING, FINGERPRINT
#                    the repository, its key (an OpenPGP key file) and the
#                    key's fingerprint
#   KVER             the kernel version the packages install
#   PACKAGES         every package, space separated
#   EFI_BINARY       systemd-boot's EFI binary inside the root
#   GPTMBR           SYSLINUX's GPT MBR boot code inside the root
#   PACSTRAP         internal/labtest/pacstrap.sh: runs a command with the
#                    root's API filesystems mounted as pacstrap mounts them
#   POOL             the pool's name (default plainpool)
#   SIZE, ESP_SIZE   the image's and the ESP's size (default 4G, 512M)
# Each step's seconds go to stdout as "step NAME SECONDS".
set -eu
: "${IMG:?}" "${QCOW2:?}" "${WORK:?}" "${CACHE:?}" "${REPO_NAME:?}" "${REPO_URL:?}" "${KEYRING:?}"
: "${FINGERPRINT:?}" "${KVER:?}" "${PACKAGES:?}" "${EFI_BINARY:?}" "${GPTMBR:?}" "${PACSTRAP:?}"
POOL=${POOL:-plainpool}
SIZE=${SIZE:-4G}
ESP_SIZE=${ESP_SIZE:-512M}
ROOT=$WORK/root
LOOP=

last=$(date +%s.%N)
step() {
	now=$(date +%s.%N)
	echo "step $1 $(echo "$now $last" | awk '{printf "%.1f", $1 - $2}')"
	last=$now
}

# On any exit, leave the machine as it was: nothing mounted, the pool
# exported, the loop device detached.
cleanup() {
	set +e
	umount -R "$ROOT/efi" 2>/dev/null
	zpool list "$POOL" >/dev/null 2>&1 && zpool export -f "$POOL"
	[ -n "$LOOP" ] && losetup -d "$LOOP"
}
trap cleanup EXIT

# In the root with the API filesystems mounted, in mount and PID
# namespaces of its own, as arch-chroot and pacstrap run commands.
in_root() {
	sh "$PACSTRAP" "$ROOT" "$@"
}

# A command chrooted in the root, with a clean environment (the caller's
# TMPDIR, say, names a directory the root does not have).
chrooted() {
	in_root chroot "$ROOT" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
		HOME=/root LANG=C.UTF-8 "$@"
}

# Runs a command with its output in $WORK/NAME.log, shown if it fails.
logged() {
	name=$1
	shift
	"$@" >"$WORK/$name.log" 2>&1 || { tail -n 40 "$WORK/$name.log" >&2; exit 1; }
}

truncate -s "$SIZE" "$IMG"
LOOP=$(losetup --find --show --partscan "$IMG")
step target

sgdisk --zap-all \
	--new=1:1MiB:+"$ESP_SIZE" --typecode=1:ef00 --change-name=1:ESP --attributes=1:set:2 \
	--new=2:0:0 --typecode=2:bf00 --change-name=2:zfs "$LOOP" >/dev/null
udevadm settle
partx --update "$LOOP" 2>/dev/null || true
step partition

mkfs.fat -F 32 -n ESP "${LOOP}p1" >/dev/null
step esp

zpool create -f -R "$ROOT" -o ashift=12 -o autoexpand=on -o autotrim=on -o cachefile=none \
	-O acltype=posixacl -O canmount=off -O compression=lz4 -O dnodesize=auto -O mountpoint=none \
	-O normalization=formD -O relatime=on -O xattr=sa "$POOL" "${LOOP}p2"
step pool

zfs create -o canmount=off -o mountpoint=none "$POOL/system"
zfs create -o canmount=noauto -o mountpoint=/ "$POOL/system/default"
zfs mount "$POOL/system/default"
zfs create -o canmount=off -o mountpoint=none "$POOL/data"
zfs create -o mountpoint=/root "$POOL/data/root"
zfs create -o mountpoint=/home "$POOL/data/home"
zfs create -o mountpoint=/srv "$POOL/data/srv"
zfs create -o mountpoint=/var/lib/machines "$POOL/data/machines"
zpool set bootfs="$POOL/system/default" "$POOL"
mkdir -p "$ROOT/efi" "$ROOT/proc" "$ROOT/sys" "$ROOT/dev" "$ROOT/run" "$ROOT/tmp" \
	"$ROOT/var/lib/pacman" "$ROOT/etc/pacman.d"
mount "${LOOP}p1" "$ROOT/efi"
step datasets

cat >"$WORK/pacman.conf" <<EOF
[options]
Architecture = x86_64
SigLevel = Required
LocalFileSigLevel = Optional TrustedOnly
ParallelDownloads = 5

[$REPO_NAME]
Server = $REPO_URL
EOF
gpgdir=$ROOT/etc/pacman.d/gnupg
pacman-key --gpgdir "$gpgdir" --config "$WORK/pacman.conf" --init >/dev/null 2>&1
pacman-key --gpgdir "$gpgdir" --config "$WORK/pacman.conf" --add "$KEYRING" >/dev/null 2>&1
pacman-key --gpgdir "$gpgdir" --config "$WORK/pacman.conf" --lsign-key "$FINGERPRINT" >/dev/null 2>&1
# pacman-key leaves its gpg-agent running; the pool could not be exported.
gpgconf --homedir "$gpgdir" --kill all 2>/dev/null || true
step keyring

# shellcheck disable=SC2086 # PACKAGES is a list
logged pacman in_root pacman --root "$ROOT" --config "$WORK/pacman.conf" --gpgdir "$gpgdir" \
	--cachedir "$CACHE" --noconfirm --noprogressbar -Sy $PACKAGES
gpgconf --homedir "$gpgdir" --kill all 2>/dev/null || true
step packages

echo plain >"$ROOT/etc/hostname"
echo "en_US.UTF-8 UTF-8" >"$ROOT/etc/locale.gen"
echo "LANG=en_US.UTF-8" >"$ROOT/etc/locale.conf"
ln -sf /usr/share/zoneinfo/UTC "$ROOT/etc/localtime"
logged locale-gen chrooted locale-gen
esp_uuid=$(blkid -s UUID -o value "${LOOP}p1")
echo "UUID=$esp_uuid /efi vfat umask=0077,noauto,x-systemd.automount 0 2" >"$ROOT/etc/fstab"
mkdir -p "$ROOT/etc/systemd/system/ssh.service.d" "$ROOT/etc/systemd/system.conf.d"
printf '[Service]\nExecStartPre=\nExecStartPre=/usr/bin/ssh-keygen -A\nExecStartPre=/usr/sbin/sshd -t\n' \
	>"$ROOT/etc/systemd/system/ssh.service.d/paczfs-host-keys.conf"
printf '[Manager]\nDefaultDeviceTimeoutSec=300s\n' >"$ROOT/etc/systemd/system.conf.d/paczfs-lab.conf"
logged systemctl chrooted systemctl enable ssh.service zfs.target zfs-mount.service
zgenhostid -f -o "$ROOT/etc/hostid"
: >"$ROOT/etc/machine-id"
step system

mkdir -p "$ROOT/etc/dracut.conf.d"
printf 'hostonly="no"\nadd_dracutmodules+=" zfs "\nnofsck="yes"\n' >"$ROOT/etc/dracut.conf.d/local.conf"
logged dracut chrooted dracut --force --kver "$KVER" "/boot/initrd.img-$KVER"
step initramfs

options="root=zfs:$POOL/system/default rw console=tty0 console=ttyS0,115200"
install -D -m 0644 "$ROOT$EFI_BINARY" "$ROOT/efi/EFI/BOOT/BOOTX64.EFI"
install -D -m 0644 "$ROOT$EFI_BINARY" "$ROOT/efi/EFI/systemd/systemd-bootx64.efi"
mkdir -p "$ROOT/efi/env/default" "$ROOT/efi/loader/entries" "$ROOT/efi/syslinux"
cp "$ROOT/boot/vmlinuz-$KVER" "$ROOT/boot/initrd.img-$KVER" "$ROOT/efi/env/default/"
printf 'default default.conf\ntimeout 1\n' >"$ROOT/efi/loader/loader.conf"
printf 'title default\nlinux /env/default/vmlinuz-%s\ninitrd /env/default/initrd.img-%s\noptions %s\n' \
	"$KVER" "$KVER" "$options" >"$ROOT/efi/loader/entries/default.conf"
printf 'SERIAL 0 115200\nDEFAULT default\nTIMEOUT 10\nLABEL default\n  LINUX /env/default/vmlinuz-%s\n  INITRD /env/default/initrd.img-%s\n  APPEND %s\n' \
	"$KVER" "$KVER" "$options" >"$ROOT/efi/syslinux/syslinux.cfg"
umount "$ROOT/efi"
logged syslinux chrooted syslinux --install --directory /syslinux "${LOOP}p1"
dd if="$ROOT$GPTMBR" of="$LOOP" bs=440 count=1 conv=notrunc status=none
step bootloader

zfs snapshot "$POOL/system/default@installed"
zpool export "$POOL"
losetup -d "$LOOP"
LOOP=
step finalize

qemu-img convert -f raw -c -O qcow2 "$IMG" "$QCOW2"
step convert

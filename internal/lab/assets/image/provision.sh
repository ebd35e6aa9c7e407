#!/bin/sh
# provision.sh runs inside a chroot of a fresh Debian 13 (trixie) minbase tree
# and turns it into the paczfs lab: a kernel with OpenZFS (built by DKMS),
# libalpm 15 and pacman 7, and the tools the tests call.
# Arguments: $1 = Debian mirror URL. Everything it needs comes from that mirror.
set -eu
mirror=$1
export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 PATH=/usr/sbin:/usr/bin:/sbin:/bin

cat > /etc/apt/sources.list <<SRC
deb $mirror trixie main contrib
deb $mirror trixie-updates main contrib
SRC
rm -f /etc/apt/sources.list.d/*

# No daemons may start inside the chroot.
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
chmod 755 /usr/sbin/policy-rc.d

apt-get update -q
# The kernel and its headers first, so that DKMS finds them when zfs-dkms is configured.
apt-get install -y -q --no-install-recommends linux-image-amd64 linux-headers-amd64 initramfs-tools
apt-get install -y -q --no-install-recommends $(cat /tmp/lab-packages.txt)

kver=$(ls /lib/modules | sort -V | tail -n 1)
# Fail the build here, not in the first test, when DKMS did not produce the module.
find /lib/modules/$kver -name 'zfs.ko*' | grep -q . || { echo "provision: zfs module missing for $kver" >&2; exit 1; }

# Under TCG the kernel's own decompression of the big DKMS modules costs
# seconds at every boot: store zfs and spl uncompressed.
find /lib/modules/$kver/updates -name '*.ko.xz' -exec unxz {} +
depmod "$kver"
# The lab boots with its own small initramfs (no udev): see lab-initramfs.sh.
sh /tmp/lab-initramfs.sh "$kver" /boot/lab-initrd.img

echo lab > /etc/hostname
rm -f /usr/sbin/policy-rc.d
apt-get clean
rm -rf /var/lib/apt/lists/* /var/lib/dkms/zfs/*/build /usr/share/doc /usr/share/man /usr/share/info

#!/bin/sh
# refroot.sh MIRROR PACKAGE... runs in a chroot of a fresh Debian 13
# minbase tree and installs the lab package set with dpkg, maintainer
# scripts and all: the reference from which labrepo takes the .debs and
# the files no package owns (users, alternatives, enabled units).
set -eu
mirror=$1; shift
export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 PATH=/usr/sbin:/usr/bin:/sbin:/bin
cat > /etc/apt/sources.list <<SRC
deb $mirror trixie main contrib
deb $mirror trixie-updates main contrib
SRC
rm -f /etc/apt/sources.list.d/*
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
chmod 755 /usr/sbin/policy-rc.d
# Keep every downloaded .deb: they become the repository.
echo 'Binary::apt::APT::Keep-Downloaded-Packages "true";' > /etc/apt/apt.conf.d/99keep
apt-get update -q
# zfs-initramfs depends on "zfs-modules | zfs-dkms". In the repository the
# lab kernel's module is zfs-modules-lab, which provides zfs-modules; a
# placeholder providing it here keeps zfs-dkms, dkms, the compiler and the
# kernel headers out of the reference root, and so out of the repository.
placeholder=paczfs-zfs-modules-placeholder
mkdir -p /tmp/$placeholder/DEBIAN
cat > /tmp/$placeholder/DEBIAN/control <<CTL
Package: $placeholder
Version: 1
Architecture: all
Provides: zfs-modules
Maintainer: paczfs <paczfs@localhost>
Description: stands for zfs-modules-lab, the lab kernel's ZFS module
CTL
dpkg-deb --build /tmp/$placeholder /tmp/$placeholder.deb >/dev/null
dpkg -i /tmp/$placeholder.deb
# The reference root never boots: its initramfs would only cost time, and
# dracut fails there (the placeholder has no ZFS module for its zfs
# module to install). A stand-in answers for dracut while apt runs; the
# diversion goes with it, so nothing of it reaches the repository.
dpkg-divert --quiet --local --divert /usr/bin/dracut.paczfs-real --add /usr/bin/dracut
printf '#!/bin/sh\nexit 0\n' > /usr/bin/dracut && chmod 755 /usr/bin/dracut
apt-get install -y -q --no-install-recommends "$@"
rm -f /usr/bin/dracut
dpkg-divert --quiet --local --rename --remove /usr/bin/dracut
rm -f /usr/sbin/policy-rc.d
# The packages debootstrap installed have no .deb left: fetch them.
cd /var/cache/apt/archives
for p in $(dpkg-query -W -f '${Package}\n' | grep -vx "$placeholder"); do
	v=$(dpkg-query -W -f '${Version}' "$p")
	a=$(dpkg-query -W -f '${Architecture}' "$p")
	ls "${p}_"*.deb >/dev/null 2>&1 || apt-get download -q "$p=$v" >/dev/null 2>&1 || apt-get download -q "$p"
done
chown -R root:root /var/cache/apt/archives
dpkg-query -W -f '${Package}\n' | grep -vx "$placeholder" | sort > /tmp/installed.txt
# Files and links no package owns, with /bin, /sbin, /lib in /usr as the
# converted packages have them.
cat /var/lib/dpkg/info/*.list | sed -e 's#^/bin/#/usr/bin/#' -e 's#^/sbin/#/usr/sbin/#' -e 's#^/lib/#/usr/lib/#' -e 's#^/lib64/#/usr/lib64/#' | sort -u > /tmp/owned.txt
find / -xdev \( -path /proc -o -path /sys -o -path /dev -o -path /run -o -path /tmp -o -path /boot \
	-o -path /var/cache -o -path /var/lib -o -path /var/log -o -path /var/tmp -o -path /var/backups \
	-o -path /root -o -path /home -o -path /debootstrap \) -prune -o -print | sort > /tmp/all.txt
comm -23 /tmp/all.txt /tmp/owned.txt | grep -v -e '^/$' \
	-e '^/etc/ssh/ssh_host_' -e '^/etc/machine-id$' -e '^/etc/hostname$' -e '^/etc/ld.so.cache$' \
	-e '^/etc/apt/apt.conf.d/99keep$' -e '^/usr/lib/modules/[^/]*/modules\.' -e '^/etc/resolv.conf$' \
	-e '^/etc/initramfs-tools/conf.d/resume$' -e '^/etc/\(passwd\|group\|shadow\|gshadow\)-$' -e '^/etc/\.pwd\.lock$' \
	> /tmp/unowned.txt || true

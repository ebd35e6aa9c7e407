#!/bin/sh
# init.sh is PID 1 of a lab VM run (exec'd by lab-boot with /proc, /sys,
# /dev and /lab mounted): it mounts what tests need, loads ZFS, runs
# /lab/cmd.sh with its output on the second serial port (the host's
# stdout), records the exit status in /lab/exit-status and powers off.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root LANG=C.UTF-8 PACZFS_LAB=1
# Loading zfs takes seconds under TCG (it benchmarks its checksum code):
# do it while the rest is set up.
( for m in zfs loop vfat nls_cp437 nls_iso8859_1 nls_ascii; do modprobe "$m" || echo "lab: modprobe $m failed"; done ) >/dev/ttyS0 2>&1 &
modules=$!
mkdir -p /dev/pts /dev/shm /src /scratch
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
ln -sf /proc/self/mounts /etc/mtab
hostname lab
ip link set lo up 2>/dev/null
mount -t 9p -o trans=virtio,version=9p2000.L,msize=1048576,cache=loose src /src
while read -r tag mode; do
	[ -n "$tag" ] || continue
	# Writable shares carry results to the host: no client caching.
	opts=cache=loose,ro
	[ "$mode" = rw ] && opts=cache=none
	mkdir -p "/shares/$tag" && mount -t 9p -o trans=virtio,version=9p2000.L,msize=1048576,$opts "$tag" "/shares/$tag"
done < /lab/shares
# The scratch disk comes formatted (a copy-on-write overlay of a template
# made on the host); noinit_itable keeps ext4 from zeroing it in the background.
[ -b /dev/vdb ] && mount -o noinit_itable /dev/vdb /scratch
mkdir -p /scratch/tmp && export TMPDIR=/scratch/tmp
[ -f /lab/env ] && . /lab/env
out=/dev/ttyS1
[ -c "$out" ] || out=/dev/console
stty -F "$out" raw -echo 2>/dev/null
wait $modules
# The host boots the VM again when the guest's kernel died before this
# point (a TCG fault while it patches its own code), never after.
: > /lab/started
( cd /src && exec /bin/sh /lab/cmd.sh ) >"$out" 2>&1 </dev/null
echo $? > /lab/exit-status
sync
umount /scratch 2>/dev/null
umount /lab 2>/dev/null
echo o > /proc/sysrq-trigger
sleep 10

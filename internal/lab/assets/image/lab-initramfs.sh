#!/bin/sh
# lab-initramfs.sh KVER OUT builds the lab's own initramfs: busybox and
# just the modules needed to mount the root disk (virtio-blk, ext4). It
# replaces initramfs-tools' generic one, whose udev-driven scripts cost
# several seconds per boot under TCG.
set -eu
kver=$1 out=$2
d=$(mktemp -d)
mkdir -p "$d/bin" "$d/dev" "$d/proc" "$d/sys" "$d/newroot" "$d/lib/modules"
cp /bin/busybox "$d/bin/busybox"
: > "$d/modules.order"
for m in virtio_pci virtio_blk ext4; do
	modprobe -S "$kver" --show-depends "$m" | while read -r kind path _; do
		[ "$kind" = insmod ] || continue
		name=$(basename "$path" | sed 's/\.ko\..*$/.ko/')
		grep -qx "$name" "$d/modules.order" && continue
		case "$path" in
		*.xz) xz -dc "$path" > "$d/lib/modules/$name" ;;
		*.zst) zstd -qdc "$path" > "$d/lib/modules/$name" ;;
		*) cp "$path" "$d/lib/modules/$name" ;;
		esac
		echo "$name" >> "$d/modules.order"
	done
done
cat > "$d/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t devtmpfs dev /dev
for m in $(/bin/busybox cat /modules.order); do /bin/busybox insmod /lib/modules/$m; done
i=0
while [ ! -b /dev/vda ] && [ $i -lt 200 ]; do /bin/busybox usleep 50000; i=$((i+1)); done
/bin/busybox mount -t ext4 -o rw /dev/vda /newroot || { echo "lab initramfs: cannot mount /dev/vda"; /bin/busybox poweroff -f; }
/bin/busybox umount /proc
/bin/busybox umount /dev
exec /bin/busybox switch_root /newroot /usr/local/sbin/lab-boot
INIT
chmod 755 "$d/init"
(cd "$d" && find . | busybox cpio -o -H newc 2>/dev/null) > "$out"
rm -rf "$d"

#!/bin/sh
# pacstrap.sh ROOT COMMAND [ARG...]: runs COMMAND (a program of the
# running system, pacman say) with the API filesystems mounted under ROOT
# as pacstrap mounts them, in mount and PID namespaces of its own, so the
# mounts vanish with it. The lab's benchmarks run pacman this way, as a
# careful admin would (image/testdata/plain-build.sh, make bench-pacman).
set -eu
if [ "${1:-}" != --unshared ]; then
	exec unshare --fork --pid --mount --propagation private sh "$0" --unshared "$@"
fi
shift
r=$1
shift
mkdir -p "$r/proc" "$r/sys" "$r/dev" "$r/run" "$r/tmp"
mount -t proc proc "$r/proc" -o nosuid,noexec,nodev
mount -t sysfs sys "$r/sys" -o nosuid,noexec,nodev,ro
mount -t devtmpfs udev "$r/dev" -o mode=0755,nosuid
mkdir -p "$r/dev/pts" "$r/dev/shm"
mount -t devpts devpts "$r/dev/pts" -o mode=0620,gid=5,nosuid,noexec
mount -t tmpfs shm "$r/dev/shm" -o mode=1777,nosuid,nodev
mount -t tmpfs run "$r/run" -o nosuid,nodev,mode=0755
mount -t tmpfs tmp "$r/tmp" -o mode=1777,strictatime,nodev,nosuid
exec "$@"

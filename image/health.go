package image

import (
	"strings"
)

// HealthScript is where every image has its boot health check: the one
// verdict the boot tests, `make demo` and boot assessment use to tell a
// good boot from a bad one. HealthUnits lists the units it requires
// active: the profile's System.Units and the network units paczfs enables.
const (
	HealthScript = "/usr/local/sbin/paczfs-health"
	HealthUnits  = "/etc/paczfs/units"
)

// healthScript waits for the boot to settle (bounded), then finds a boot
// bad when the system is not "running", any unit failed, any unit is
// still activating or deactivating (a unit in a restart loop waits in
// "activating (auto-restart)"), any service was restarted (NRestarts), or
// a unit paczfs enabled is not active. A snapshot of failed units alone
// passes a unit that flaps between restarts. The unit running the check
// (its own cgroup) is not counted. It prints "problem: ..." lines and a
// last line "healthy" or "unhealthy (N problems)"; exit 0 when healthy,
// 1 when not.
const healthScript = `#!/bin/sh
# Written by paczfs: is this boot good? See ` + HealthScript + ` --help.
in_boot=
case ${1:-} in -h|--help)
	echo "usage: paczfs-health [--in-boot]: wait for the boot to settle (at most \$PACZFS_HEALTH_TIMEOUT s, 300)"
	echo "then exit 0 if it is healthy: / is the dataset the kernel command line names, every pool"
	echo "ONLINE, state running, no failed, activating or restarted unit, and every unit in"
	echo "` + HealthUnits + ` active; else print the problems and exit 1."
	echo "--in-boot: run from a unit ordered before boot-complete.target, which the boot waits"
	echo "for: wait until no other job is running instead of for the state running."
	exit 0;;
--in-boot) in_boot=1;;
esac
PATH=${PATH:-/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin}
units_file=${PACZFS_HEALTH_UNITS:-` + HealthUnits + `}
limit=${PACZFS_HEALTH_TIMEOUT:-300}
self=$(sed -n 's|^0::.*/||p' /proc/self/cgroup 2>/dev/null)
n=0
problem() { echo "problem: $*"; n=$((n + 1)); }
if [ -n "$in_boot" ]; then
	# The boot cannot be "running" while it waits for this check: wait
	# until no job but this one runs (the waiting ones wait for it).
	end=$(( $(date +%s) + limit ))
	while :; do
		busy=$(systemctl list-jobs --no-legend --plain 2>/dev/null | awk -v self="$self" '$4 == "running" && $2 != self {print $2}')
		[ -z "$busy" ] && break
		if [ "$(date +%s)" -ge "$end" ]; then problem "still starting after ${limit}s:" $busy; break; fi
		sleep 1
	done
	sleep "${PACZFS_HEALTH_SETTLE:-5}"
else
	state=$(timeout "$limit" systemctl is-system-running --wait 2>/dev/null)
	[ "$state" = running ] || problem "system is ${state:-not settled after ${limit}s}"
fi
# The root the entry names: root=ZFS=<dataset> (initramfs-tools),
# root=zfs:<dataset> (dracut), zfs=<dataset> (archzfs's mkinitcpio hook);
# AUTO, bootfs or auto: the pool's bootfs.
want=$(tr ' ' '\n' < "${PACZFS_HEALTH_CMDLINE:-/proc/cmdline}" | sed -n 's/^root=ZFS=//p; s/^root=zfs://p; s/^zfs=//p' | tail -n 1)
got=$(findmnt -n -o SOURCE /)
case $want in
'') ;;
AUTO|bootfs|auto)
	bootfs=$(zpool get -H -o value bootfs "${got%%/*}" 2>/dev/null)
	[ "$bootfs" = "$got" ] || problem "/ is $got, the pool's bootfs (root=$want) is ${bootfs:-unset}";;
*) [ "$want" = "$got" ] || problem "/ is $got, the boot entry names $want";;
esac
pools=$(zpool list -H -o name,health 2>&1) || problem "zpool list: $pools"
for p in $(echo "$pools" | awk -F'\t' 'NF == 2 && $2 != "ONLINE" {print $1 ":" $2}'); do
	problem "pool ${p%%:*} is ${p#*:}"
done
for u in $(systemctl list-units --all --state=failed --no-legend --plain | awk '{print $1}'); do
	[ "$u" = "$self" ] || problem "$u failed"
done
for u in $(systemctl list-units --all --state=activating,deactivating --no-legend --plain | awk '{print $1}'); do
	[ "$u" = "$self" ] || problem "$u is still $(systemctl show -p ActiveState,SubState --value "$u" | tr '\n' ' ')"
done
services=$(systemctl list-units --all --type=service --no-legend --plain | awk '{print $1}')
if [ -n "$services" ]; then
	# systemctl show prints the properties in its own order (NRestarts
	# before Id), one blank line between units: pair them per block.
	# After a systemd initramfs (dracut, mkinitcpio's systemd hook) the
	# switch to the root restarts journald once, by design: not a problem.
	initrd=$(systemctl show -p InitRDTimestampMonotonic --value 2>/dev/null)
	case ${initrd:-0} in 0) allow=0 ;; *) allow=1 ;; esac
	systemctl show -p Id -p NRestarts $services | awk -F= -v self="$self" -v allow="$allow" '
		function flush() { if (id == "systemd-journald.service") n -= allow; if (n + 0 > 0 && id != self) print id " " n; id = ""; n = 0 }
		$1 == "Id" { id = $2 }
		$1 == "NRestarts" { n = $2 }
		/^$/ { flush() }
		END { flush() }' > /tmp/paczfs-health.$$
	while read -r u count; do problem "$u restarted $count times"; done < /tmp/paczfs-health.$$
	rm -f /tmp/paczfs-health.$$
fi
if [ -r "$units_file" ]; then
	while read -r u; do
		case $u in ''|'#'*) continue;; esac
		s=$(systemctl show -p ActiveState --value "$u")
		[ "$s" = active ] || problem "$u is ${s:-unknown}, want active (enabled by paczfs)"
	done < "$units_file"
fi
if [ "$n" -eq 0 ]; then
	echo healthy
	exit 0
fi
echo "unhealthy ($n problems)"
exit 1
`

// healthUnits is the content of HealthUnits: the units the build enabled.
func healthUnits(units []string) []byte {
	var b strings.Builder
	b.WriteString("# Written by paczfs: the units this image enables; paczfs-health requires them active.\n")
	for _, u := range units {
		b.WriteString(u + "\n")
	}
	return []byte(b.String())
}

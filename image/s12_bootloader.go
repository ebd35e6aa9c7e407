package image

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/paczfs/paczfs/boot"
	"github.com/paczfs/paczfs/bootenv"
	"github.com/paczfs/paczfs/disk"
	"github.com/paczfs/paczfs/hooks"
	"github.com/paczfs/paczfs/internal/fsx"
	"github.com/paczfs/paczfs/release"
)

// environment is the boot package's view of one boot environment.
func (st *build) environment(e bootEnv, kernel, initrd string) boot.Environment {
	b := st.cfg.Boot
	extra := slices.Clone(b.ExtraOptions)
	if st.cfg.System.SerialConsole {
		extra = append(extra, "console=tty0", "console=ttyS0,115200")
	}
	return boot.Environment{
		Name:        e.Name,
		Dataset:     e.Dataset,
		Kernel:      path.Base(kernel),
		Initrds:     []string{path.Base(initrd)},
		Version:     st.kver,
		RootOptions: b.RootOptions,
		Extra:       extra,
	}
}

func stageBootloader(ctx context.Context, st *build) error {
	root := st.state.Root
	b := st.cfg.Boot
	esp := st.state.ESP
	if esp == nil {
		return fmt.Errorf("no ESP: the esp stage did not run")
	}
	if st.kver == "" {
		kvers, err := boot.KernelVersions(root, b.Kernel)
		if err != nil || len(kvers) == 0 {
			return fmt.Errorf("no kernel at %s in the target", b.Kernel)
		}
		st.kver = kvers[len(kvers)-1]
	}
	efi, err := os.ReadFile(filepath.Join(root, b.SystemdBootEFI))
	if err != nil {
		return fmt.Errorf("boot.systemd_boot_efi: %w (is systemd-boot in packages.bootable?)", err)
	}
	for _, p := range []string{boot.SystemdBootPath, boot.RemovablePath} {
		if err := esp.WriteFile(p, efi); err != nil {
			return fmt.Errorf("ESP %s: %w", p, err)
		}
	}
	kernelPath, err := expand(root, b.Kernel, st.kver, "")
	if err != nil {
		return fmt.Errorf("boot.kernel: %w", err)
	}
	initrdPath, err := expand(root, b.Initrd, st.kver, "")
	if err != nil {
		return fmt.Errorf("boot.initrd: %w", err)
	}
	kernel, err := os.ReadFile(filepath.Join(root, kernelPath))
	if err != nil {
		return err
	}
	initrd, err := os.ReadFile(filepath.Join(root, initrdPath))
	if err != nil {
		return err
	}
	envs := st.cfg.environments()
	var names []string
	if part, ok := st.espPartition(); ok {
		if err := espRoom(part.Size(), int64(len(efi)), int64(len(kernel)), int64(len(initrd)), len(envs)); err != nil {
			return err
		}
	}
	for _, e := range envs {
		env := st.environment(e, kernelPath, initrdPath)
		if err := esp.WriteFile(path.Join(env.ESPDir(), env.Kernel), kernel); err != nil {
			return err
		}
		if err := esp.WriteFile(path.Join(env.ESPDir(), env.Initrds[0]), initrd); err != nil {
			return err
		}
		entry := env.Entry(entryTitle(e))
		entry.SortKey = bootenv.SortOther
		if e.Layer == "" {
			entry.SortKey = bootenv.SortDefault
		}
		text, err := entry.MarshalText()
		if err != nil {
			return err
		}
		if err := esp.WriteFile(entry.Path(), text); err != nil {
			return err
		}
		if b.BIOS != nil {
			frag, err := boot.SyslinuxLabel(e.Name, entry)
			if err != nil {
				return err
			}
			if err := esp.WriteFile(boot.SyslinuxFragmentPath(e.Name), frag); err != nil {
				return err
			}
		}
		names = append(names, e.Name)
	}
	// A glob, not one entry: systemd-boot boots the first entry in its
	// order with tries left (package bootenv).
	loader, err := boot.Loader{Default: bootenv.LoaderDefault, Timeout: b.Timeout}.MarshalText()
	if err != nil {
		return err
	}
	if err := esp.WriteFile("/loader/loader.conf", loader); err != nil {
		return err
	}
	if b.BIOS != nil {
		// The root environment is the default, as its entry's sort key
		// makes it for systemd-boot.
		cfg, err := boot.Syslinux{Default: names[0], Timeout: b.Timeout, Serial: st.cfg.System.SerialConsole, Environments: names}.MarshalText()
		if err != nil {
			return err
		}
		if err := esp.WriteFile(boot.SyslinuxConfig, cfg); err != nil {
			return err
		}
		if err := st.installSyslinux(ctx); err != nil {
			return err
		}
	}
	if err := st.installESPHook(); err != nil {
		return err
	}
	if err := st.installManagement(ctx); err != nil {
		return err
	}
	return st.layerSnapshot(ctx, LayerBootable)
}

// installManagement writes, in the target, how its environments boot
// (bootenv.BootConfig, read when an environment is created on the
// device) and, unless Manage.Off, the device-side tool, its configuration
// and the boot-assessment units, enabled.
func (st *build) installManagement(ctx context.Context) error {
	root := st.state.Root
	b := st.cfg.Boot
	opts := slices.Clone(b.ExtraOptions)
	if st.cfg.System.SerialConsole {
		opts = append(opts, "console=tty0", "console=ttyS0,115200")
	}
	bf, err := json.MarshalIndent(bootenv.BootFiles{Kernel: b.Kernel, Initrd: b.Initrd, RootOptions: b.RootOptions,
		ExtraOptions: opts, Title: "Arch Linux on ZFS ({name})"}, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFile(root, strings.TrimPrefix(bootenv.BootConfig, "/"), append(bf, '\n'), 0o644); err != nil {
		return err
	}
	m := st.cfg.Manage
	if m.Off {
		return nil
	}
	tool, err := os.ReadFile(m.Tool)
	if err != nil {
		return fmt.Errorf("manage.tool: %w", err)
	}
	if err := writeFile(root, strings.TrimPrefix(bootenv.ToolPath, "/"), tool, 0o755); err != nil {
		return err
	}
	dev, err := m.device().Marshal()
	if err != nil {
		return err
	}
	if err := writeFile(root, strings.TrimPrefix(bootenv.DeviceConfig, "/"), dev, 0o644); err != nil {
		return err
	}
	if _, err := fsx.MkdirAll(filepath.Join(root, strings.TrimPrefix(bootenv.ChecksDir, "/")), 0o755); err != nil {
		return err
	}
	for i, k := range m.ReleaseKeys {
		data, err := os.ReadFile(k)
		if err != nil {
			return fmt.Errorf("manage.release_keys[%d]: %w", i, err)
		}
		name := fmt.Sprintf("%s/%02d-%s", strings.TrimPrefix(release.KeysDir, "/"), i, strings.TrimSuffix(filepath.Base(k), filepath.Ext(k))+".asc")
		if err := writeFile(root, name, data, 0o644); err != nil {
			return err
		}
	}
	if _, err := os.Stat(filepath.Join(root, "usr/bin/systemctl")); err != nil {
		return fmt.Errorf("manage: the target has no systemctl: boot assessment needs systemd in the packages (or set manage.off)")
	}
	units := bootenv.Units()
	for _, name := range slices.Sorted(maps.Keys(units)) {
		if err := writeFile(root, strings.TrimPrefix(name, "/"), []byte(units[name]), 0o644); err != nil {
			return err
		}
	}
	return st.chroot(ctx, append([]string{"systemctl", "enable"}, bootenv.EnableUnits()...)...)
}

// installSyslinux makes the image boot under legacy BIOS: the target's
// SYSLINUX installer writes its boot sector, ldlinux.sys and ldlinux.c32
// on the unmounted ESP (through the loop device's partition, whose cached
// blocks are dropped first: the ESP was written through the image file),
// and its gptmbr.bin goes into the protective MBR. The configuration is
// on the ESP already; the installer only adds files.
func (st *build) installSyslinux(ctx context.Context) error {
	bios := st.cfg.Boot.BIOS
	dev := st.state.Partitions[string(disk.RoleESP)]
	if dev == "" || st.target == nil {
		return fmt.Errorf("boot.bios: no ESP partition device (a hook replaced the target stage?): set boot.bios to null, or install the BIOS boot loader in a hook")
	}
	mbr, err := os.ReadFile(filepath.Join(st.state.Root, bios.MBR))
	if err != nil {
		return fmt.Errorf("boot.bios.mbr: %w (is syslinux in packages.bootable?)", err)
	}
	if len(mbr) != disk.MBRBootCodeSize {
		return fmt.Errorf("boot.bios.mbr: %s has %d bytes, not the %d of a GPT MBR's boot code", bios.MBR, len(mbr), disk.MBRBootCodeSize)
	}
	flush := func() error {
		_, err := st.b.runner.Run(ctx, hooks.Cmd{Args: []string{"blockdev", "--flushbufs", dev}})
		return err
	}
	if err := flush(); err != nil {
		return err
	}
	argv := make([]string, len(bios.Install))
	for i, a := range bios.Install {
		argv[i] = strings.ReplaceAll(a, "{device}", dev)
	}
	if err := st.chroot(ctx, argv...); err != nil {
		return fmt.Errorf("boot.bios.install: %w", err)
	}
	// What the installer wrote through the partition device reaches the
	// image file before the ESP is opened through it again.
	if err := flush(); err != nil {
		return err
	}
	return disk.WriteMBRBootCode(st.target.path, mbr)
}

func entryTitle(e bootEnv) string {
	return "Arch Linux on ZFS (" + e.Name + ")"
}

// installESPHook installs, in the target, the pacman hook and script that
// refresh the booted environment's kernel and initramfs on the ESP after
// a kernel or ZFS upgrade, and touch no other environment's files.
func (st *build) installESPHook() error {
	root := st.state.Root
	b := st.cfg.Boot
	var env strings.Builder
	fmt.Fprintf(&env, "# Written by paczfs: how this system's boot files are made (read by paczfs-update-esp).\n")
	fmt.Fprintf(&env, "ESP=%s\nKERNEL=%s\nINITRD=%s\n", shellQuote(espMountPoint), shellQuote(b.Kernel), shellQuote(b.Initrd))
	fmt.Fprintf(&env, "INITRAMFS_COMMAND=%s\n", shellQuote(strings.Join(b.InitramfsCommand, " ")))
	opts := slices.Clone(b.ExtraOptions)
	if st.cfg.System.SerialConsole {
		opts = append(opts, "console=tty0", "console=ttyS0,115200")
	}
	fmt.Fprintf(&env, "ROOT_OPTIONS=%s\nEXTRA_OPTIONS=%s\n", shellQuote(strings.Join(b.RootOptions, " ")), shellQuote(strings.Join(opts, " ")))
	fmt.Fprintf(&env, "SYSTEMD_BOOT_EFI=%s\n", shellQuote(b.SystemdBootEFI))
	fmt.Fprintf(&env, "INITRAMFS_HOOK_TARGETS=%s\n", shellQuote(strings.Join(b.InitramfsHookTargets, " ")))
	if err := writeFile(root, "etc/paczfs/boot.env", []byte(env.String()), 0o644); err != nil {
		return err
	}
	return writeFiles(root, map[string]string{
		"usr/local/sbin/paczfs-update-esp":                    updateESP(),
		"usr/local/sbin/paczfs-update-bootloader":             updateBootloaderScript,
		"etc/pacman.d/hooks/95-paczfs-update-esp.hook":        espHook(b.Kernel),
		"etc/pacman.d/hooks/95-paczfs-update-bootloader.hook": bootloaderHook(b.SystemdBootEFI),
	})
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// espHook triggers on the kernel, on ZFS modules and on the initramfs
// generators' files.
func espHook(kernelPattern string) string {
	targets := []string{
		strings.TrimPrefix(strings.ReplaceAll(kernelPattern, "{kver}", "*"), "/"),
		"usr/lib/modules/*/extra/zfs*",
		"usr/lib/modules/*/updates/dkms/zfs*",
		"usr/lib/initcpio/*",
		"usr/share/initramfs-tools/*",
	}
	var b strings.Builder
	b.WriteString("# Written by paczfs: keep this boot environment's files on the ESP current.\n[Trigger]\nType = Path\nOperation = Install\nOperation = Upgrade\n")
	for _, t := range targets {
		b.WriteString("Target = " + t + "\n")
	}
	b.WriteString("\n[Action]\nDescription = Updating this boot environment's kernel and initramfs on the ESP...\nWhen = PostTransaction\nExec = /usr/local/sbin/paczfs-update-esp\nNeedsTargets\n")
	return b.String()
}

// ErrESPFull: the ESP cannot hold every environment's boot files.
var ErrESPFull = errors.New("the ESP is too small")

// espRoom checks, before any boot file is written, that an ESP of size
// holds systemd-boot twice (its own path and the removable one) and each
// environment's kernel and initramfs: FAT32 with 4 KiB clusters, its two
// FATs, and 1 MiB for directories, entries and loader.conf. With
// firmware in the initramfs and every environment carrying its own copy,
// an ESP can fill; a full one would fail halfway through writing it.
func espRoom(size disk.Size, loader, kernel, initrd int64, envs int) error {
	const cluster = 4096
	round := func(n int64) int64 { return (n + cluster - 1) / cluster * cluster }
	need := 2*round(loader) + int64(envs)*(round(kernel)+round(initrd)) + 1<<20
	usable := int64(size) - 2*(int64(size)/cluster*4) - 32*disk.SectorSize
	if need > usable {
		mib := func(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
		return fmt.Errorf("%w: the boot files need %s (%d environments, each a %s kernel and a %s initramfs, and systemd-boot twice), the %s ESP holds about %s: raise esp_size or make fewer boot_environments",
			ErrESPFull, mib(need), envs, mib(kernel), mib(initrd), size, mib(usable))
	}
	return nil
}

// bootloaderHook triggers on the systemd-boot binary (the package that
// ships it was installed or upgraded).
func bootloaderHook(efi string) string {
	return "# Written by paczfs: keep systemd-boot on the ESP at this system's version.\n[Trigger]\nType = Path\nOperation = Install\nOperation = Upgrade\n" +
		"Target = " + strings.TrimPrefix(efi, "/") + "\n\n[Action]\nDescription = Updating systemd-boot on the ESP...\nWhen = PostTransaction\nExec = /usr/local/sbin/paczfs-update-bootloader\n"
}

// updateBootloaderScript runs in the booted system after the package
// that ships systemd-boot changed: bootctl update puts the new binary at
// both places the build put it (EFI/systemd/systemd-bootx64.efi and the
// removable path EFI/BOOT/BOOTX64.EFI), and only when it is newer, so an
// older environment's transaction never takes the shared loader back.
// Without bootctl (it is a separate package on some distributions), the
// two files are replaced when they differ.
const updateBootloaderScript = `#!/bin/sh
# Written by paczfs. Brings systemd-boot on the ESP to the version this
# environment's package installed.
set -eu
. "${PACZFS_BOOT_ENV:-/etc/paczfs/boot.env}"
mountpoint -q "$ESP" || mount "$ESP"
if command -v bootctl > /dev/null 2>&1; then
	bootctl --esp-path="$ESP" --no-variables --graceful update
else
	for f in EFI/systemd/systemd-bootx64.efi EFI/BOOT/BOOTX64.EFI; do
		if ! cmp -s "$SYSTEMD_BOOT_EFI" "$ESP/$f"; then
			cp "$SYSTEMD_BOOT_EFI" "$ESP/$f.new"
			mv "$ESP/$f.new" "$ESP/$f"
			echo "paczfs-update-bootloader: $f updated"
		fi
	done
fi
sync -f "$ESP" 2>/dev/null || sync
`

// updateESP is updateESPScript with a trial's options (bootenv).
func updateESP() string {
	return strings.ReplaceAll(updateESPScript, "{trial}", strings.Join(bootenv.TrialOptions(), " "))
}

// updateESPScript runs in the booted system. It finds its own boot
// environment from the dataset mounted at /, rebuilds the initramfs of the
// newest kernel (unless every changed path, given on standard input as a
// pacman hook's NeedsTargets, is one the distribution's own hook already
// rebuilt it for: INITRAMFS_HOOK_TARGETS), and replaces that
// environment's directory and entry on the ESP, never another's.
const updateESPScript = `#!/bin/sh
# Written by paczfs. Refreshes this boot environment's kernel, initramfs
# and loader entry on the ESP; other environments' files are not touched.
set -eu
. "${PACZFS_BOOT_ENV:-/etc/paczfs/boot.env}"
ds=$(findmnt -n -o SOURCE /)
case "$ds" in */*) ;; *) echo "paczfs-update-esp: / is $ds, not a ZFS boot environment; nothing done" >&2; exit 0 ;; esac
[ "$(findmnt -n -o FSTYPE /)" = zfs ] || { echo "paczfs-update-esp: / is not ZFS; nothing done" >&2; exit 0; }
be=${ds##*/}
mountpoint -q "$ESP" || mount "$ESP"
pre=${KERNEL%%\{kver\}*}; suf=${KERNEL#*\{kver\}}
kver=$(for k in $pre*$suf; do [ -e "$k" ] || continue; k=${k#"$pre"}; echo "${k%"$suf"}"; done | sort -V | tail -n 1)
[ -n "$kver" ] || { echo "paczfs-update-esp: no kernel matches $KERNEL" >&2; exit 1; }
kernel=$(echo "$KERNEL" | sed "s|{kver}|$kver|g")
pkgbase=
case "$INITRD$INITRAMFS_COMMAND" in *"{pkgbase}"*)
	pkgbase=$(cat "${MODULES:-/usr/lib/modules}/$kver/pkgbase" 2>/dev/null || true)
	[ -n "$pkgbase" ] || { echo "paczfs-update-esp: kernel $kver records no package base (${MODULES:-/usr/lib/modules}/$kver/pkgbase)" >&2; exit 1; } ;;
esac
initrd=$(echo "$INITRD" | sed "s|{kver}|$kver|g; s|{pkgbase}|$pkgbase|g")
# Build, unless the distribution's own hook (it sorts before this one)
# rebuilt the initramfs for every path this transaction changed.
build=yes
if [ -n "${INITRAMFS_HOOK_TARGETS:-}" ] && [ ! -t 0 ]; then
	build=no
	set -f
	while IFS= read -r t; do
		covered=no
		for p in $INITRAMFS_HOOK_TARGETS; do
			case "$t" in $p) covered=yes; break ;; esac
		done
		[ "$covered" = yes ] || { build=yes; break; }
	done
	set +f
	[ -s "$initrd" ] || build=yes
fi
if [ "$build" = yes ]; then
	eval "set -- $(echo "$INITRAMFS_COMMAND" | sed "s|{kver}|$kver|g; s|{initrd}|$initrd|g; s|{pkgbase}|$pkgbase|g")"
	"$@"
else
	echo "paczfs-update-esp: $initrd was rebuilt by the distribution's hook; copying it"
fi
opts=$(echo "$ROOT_OPTIONS" | sed "s|{dataset}|$ds|g")
# The entry keeps its file name (boot counters: paczfs-$be+N-M.conf), its
# rank (sort-key) and a trial's options: only the kernel changes.
entry=
for e in "$ESP/loader/entries/paczfs-$be.conf" "$ESP"/loader/entries/paczfs-"$be"+*.conf; do
	[ -e "$e" ] && { entry=$e; break; }
done
[ -n "$entry" ] || entry="$ESP/loader/entries/paczfs-$be.conf"
title=$(sed -n 's/^title *//p' "$entry" 2>/dev/null || true)
title=${title:-Arch Linux on ZFS ($be)}
sortkey=$(sed -n 's/^sort-key *//p' "$entry" 2>/dev/null || true)
trial=
if grep -q '^options .* paczfs\.trial' "$entry" 2>/dev/null; then trial=" {trial}"; fi
cmdline="$opts${EXTRA_OPTIONS:+ $EXTRA_OPTIONS}$trial"
# The new files go beside those the entry names (each under its own name,
# or name.b when the entry names that: never over a file the entry
# names), on the disk before the entry names them; the files it no longer
# names are removed after. A power cut anywhere leaves an entry whose
# files are all there.
dir="$ESP/env/$be"
mkdir -p "$dir"
named=$(sed -n 's/^\(linux\|initrd\)[[:space:]]*//p' "$entry" 2>/dev/null || true)
place() {
	n=${1##*/}
	case "
$named
" in *"
/env/$be/$n
"*) n="$n.b" ;; esac
	cp "$1" "$dir/.$n.tmp"
	echo "$n"
}
kname=$(place "$kernel")
iname=$(place "$initrd")
sync -f "$ESP" 2>/dev/null || sync
mv "$dir/.$kname.tmp" "$dir/$kname"
mv "$dir/.$iname.tmp" "$dir/$iname"
# Legacy BIOS boot (SYSLINUX, boot.SyslinuxLabel): this environment's
# label, in its own directory, naming the new files.
if [ -d "$ESP/syslinux" ]; then
	printf 'LABEL %s\n  MENU LABEL %s\n  LINUX %s\n  INITRD %s\n  APPEND %s\n' "$be" "$title" \
		"/env/$be/$kname" "/env/$be/$iname" "$cmdline" > "$dir/.syslinux.cfg.tmp"
	mv "$dir/.syslinux.cfg.tmp" "$dir/syslinux.cfg"
fi
sync -f "$ESP" 2>/dev/null || sync
{
	echo "title   $title"
	echo "version $kver"
	echo "sort-key ${sortkey:-paczfs-2}"
	echo "linux   /env/$be/$kname"
	echo "initrd  /env/$be/$iname"
	echo "options $cmdline"
} > "$entry.new"
mv "$entry.new" "$entry"
sync -f "$ESP" 2>/dev/null || sync
for f in "$dir"/* "$dir"/.[!.]*; do
	case "${f##*/}" in "$kname"|"$iname"|syslinux.cfg|'*'|'.[!.]*') ;; *) rm -rf "$f" ;; esac
done
sync -f "$ESP" 2>/dev/null || sync
echo "paczfs-update-esp: $be now boots $kver"
`

// espPartition is the ESP of the target's plan (none when a hook replaced
// the target stage without a plan).
func (st *build) espPartition() (disk.Partition, bool) {
	if st.target == nil {
		return disk.Partition{}, false
	}
	return st.target.plan.Find(disk.RoleESP)
}

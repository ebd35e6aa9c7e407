package image

import (
	"bytes"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"
	_ "time/tzdata" // time zones are checked against Go's database, not the host's
	"unicode"

	"golang.org/x/crypto/ssh"

	"github.com/paczfs/paczfs/boot"
	"github.com/paczfs/paczfs/bootenv"
	"github.com/paczfs/paczfs/disk"
	"github.com/paczfs/paczfs/pacman"
	"github.com/paczfs/paczfs/zfs"
)

// Config is everything one build needs, as data. Start from a profile
// (ArchProfile, or a Config saved as JSON), change what differs, and pass
// it to New, which validates all of it before anything is written.
type Config struct {
	// Target: exactly one of ImageFile (a sparse file created for the
	// build) and BlockDevice (a whole disk, written in place).
	ImageFile   string `json:"image_file,omitempty"`
	BlockDevice string `json:"block_device,omitempty"`
	// Size of the image file; unused for a block device.
	Size disk.Size `json:"size,omitempty"`
	// Overwrite allows replacing an existing ImageFile, or writing over a
	// block device that holds a partition table or filesystem signature.
	// Without it such targets are refused: paczfs never destroys data it
	// was not told to.
	Overwrite bool `json:"overwrite,omitempty"`
	// ESPSize and SwapSize shape the default layout (swap 0 = none).
	ESPSize  disk.Size `json:"esp_size"`
	SwapSize disk.Size `json:"swap_size"`
	// Layout, when set, replaces the default ESP/swap/ZFS layout.
	Layout *disk.Layout `json:"layout,omitempty"`
	// GUIDSeed, when set, derives the disk and partition GUIDs from it
	// (disk.Plan.SeededGUIDs): the same seed and layout give the same
	// table, and the same PARTUUIDs in /etc/fstab. Empty: random per build.
	// Two disks with the same GUIDs must never be attached to one machine.
	GUIDSeed string `json:"guid_seed,omitempty"`

	// Outputs are written from the finished raw disk (the original's
	// VDI_FILE, QCOW_FILE, QCOW2_FILE, and IMAGE_FILE with BLOCK_DEV).
	Outputs []Output `json:"outputs,omitempty"`

	// PoolName is the pool's name on disk (what the booted system imports).
	// During the build it is imported under a temporary name, so the build
	// host may have a pool of the same name.
	PoolName       string            `json:"pool_name"`
	PoolProperties map[string]string `json:"pool_properties,omitempty"`
	FSProperties   map[string]string `json:"fs_properties,omitempty"`
	// Datasets is the layout, relative to the pool; the root boot
	// environment is RootDataset among them.
	Datasets    []zfs.DatasetSpec `json:"datasets"`
	RootDataset string            `json:"root_dataset"`
	// BootEnvironments are the layers cloned into boot environments of
	// their own beside the root (system/<name>), each with its own kernel,
	// initramfs and loader entry: any of "bootable" and "workstation".
	BootEnvironments []string `json:"boot_environments"`
	// MinirootClone, when set, receives a read-only clone of the base
	// layer for systemd-nspawn (the original's data/machines/miniroot).
	// The base layer holds no pacman keyring (it is the build's, random):
	// a container made from it runs pacman-key --init and --populate.
	MinirootClone string `json:"miniroot_clone,omitempty"`
	// Encryption encrypts datasets outside the boot environments
	// (data/home...) with OpenZFS native encryption.
	Encryption Encryption `json:"encryption,omitzero"`
	// HoldTag is the user hold put on each layer snapshot.
	HoldTag string `json:"hold_tag"`

	// WorkDir holds the build's mount point and scratch files; it must not
	// be shared with another build. Empty = a fresh directory under /tmp.
	WorkDir string `json:"work_dir,omitempty"`
	// CacheDir keeps work a later build can reuse: the base and bootable
	// layers (the root's send streams and archives of the other datasets,
	// under the SHA-256 of their resolved packages, pacman's settings and
	// the layout; the bootable's also of the hostid and
	// boot.initramfs_files; no layer holds the keyring), and each
	// kernel's initramfs, under the SHA-256 of what it is made from (the kernel
	// version, every installed package, its version and build date, the
	// generator's command, /etc and /root as the build left them, the
	// files under /usr no package owns, system.files and
	// boot.initramfs_files). A build whose initramfs would be made
	// from the same takes the cached image instead of running the
	// generator. Hooks at or before a layer's or the initramfs stage turn
	// that cache off (what they change may not be in the key) unless they
	// are hooks.Keyed.
	// Empty = no cache. It must be a
	// directory of the building user's, writable by no one else: what it
	// holds goes into images. A random /etc/hostid (system.hostid empty)
	// makes every build's initramfs new; set system.hostid to reuse it.
	CacheDir string `json:"cache_dir,omitempty"`
	// CacheMax bounds what CacheDir holds: after a build succeeds, the
	// least recently used entries (by when a build stored or last took
	// them) are removed until the rest fits, never one this build used.
	// 0 = DefaultCacheMax (10 GiB). See PruneCache.
	CacheMax disk.Size `json:"cache_max,omitempty"`

	Pacman   pacman.Config `json:"pacman"`
	Packages Packages      `json:"packages"`
	System   System        `json:"system"`
	Boot     Boot          `json:"boot"`
	// Manage is how the image manages its boot environments once it runs.
	Manage Manage `json:"manage"`
	// Release, when its Dir is set, makes the build write a signed
	// release of its root environment; From starts the build from a
	// previous release instead of an empty root.
	Release Release `json:"release,omitempty"`
	// Profile names the profile the configuration started from.
	Profile string `json:"profile"`
}

// Output is one converted copy of the finished disk.
type Output struct {
	Format Format `json:"format"`
	Path   string `json:"path"`
	// Compression is for QCOW2: zlib (the default, as the original: every
	// qcow2 reader has it), zstd (QEMU 5.1 and later; ZFS data is
	// lz4-compressed already, so the sizes barely differ: in the lab a
	// 491 MiB image gave 431.6 MB with zlib in 111-131 s on 2 CPUs and
	// 432.5 MB with zstd in 12.6 s) or none.
	Compression string `json:"compression,omitempty"`
}

// Packages are the three layers of the original tool: each is installed
// by its stage and snapshotted (@base, @bootable, @workstation).
type Packages struct {
	Base        []string `json:"base"`
	Bootable    []string `json:"bootable"`
	Workstation []string `json:"workstation,omitempty"`
	// ModulePairs are kernels with a module package built for one exact
	// version of each (archzfs's zfs-linux-lts depends on
	// linux-lts=<version>). When the repositories' kernel is not the
	// version the module needs, because the module's repository has not
	// rebuilt it yet (archzfs issues #504, #570), the plan installs the
	// pair's Fallback in the module's place: packages that build it for
	// whatever kernel is installed (zfs-dkms and the kernel's headers),
	// and says so (BuildPlan.Modules, --dry-run). A pair whose module is
	// not in Bootable does nothing.
	ModulePairs []ModulePair `json:"module_pairs,omitempty"`
}

// ModulePair is a kernel package, a module package built for one exact
// version of it, and what builds the module for any version instead.
type ModulePair struct {
	Kernel   string   `json:"kernel"`
	Module   string   `json:"module"`
	Fallback []string `json:"fallback"`
}

// System is the target's own configuration; nothing is taken from the
// build host.
type System struct {
	Hostname string `json:"hostname"`
	Timezone string `json:"timezone"`
	// Locales are locale.gen lines; the first one's name becomes LANG.
	Locales []string `json:"locales"`
	Keymap  string   `json:"keymap,omitempty"`
	// RootPasswordHash is a crypt(3) hash for root; empty locks the
	// password (log in with AuthorizedKeys).
	RootPasswordHash string `json:"root_password_hash,omitempty"`
	// AuthorizedKeys are written to /root/.ssh/authorized_keys.
	AuthorizedKeys []string `json:"authorized_keys,omitempty"`
	// HostID is the target's /etc/hostid (8 hex digits); empty = a fresh
	// random one per image.
	HostID string `json:"hostid,omitempty"`
	// Network configures systemd-networkd (DHCP on every ethernet
	// interface) and systemd-resolved.
	Network bool `json:"network"`
	// Units are enabled in the target after the packages are in
	// (sshd.service, zfs.target...); missing unit files are an error.
	Units []string `json:"units,omitempty"`
	// Files are written into the target as they are (path: content), after
	// the packages: drop-ins and small fixes a profile needs.
	Files map[string]string `json:"files,omitempty"`
	// SerialConsole adds console=ttyS0 to the kernel command line and a
	// getty there (VMs, the lab).
	SerialConsole bool `json:"serial_console,omitempty"`
}

// Boot says how the distribution boots: the profile's data, not code.
type Boot struct {
	// Kernel is the kernel's path in the root, with {kver} for the
	// version: Arch "/usr/lib/modules/{kver}/vmlinuz", Debian
	// "/boot/vmlinuz-{kver}".
	Kernel string `json:"kernel"`
	// Initrd is the initramfs path in the root, with {kver}, or
	// {pkgbase} (the kernel's package, boot.VarPkgBase: Arch's
	// "/boot/initramfs-{pkgbase}.img", the file mkinitcpio's preset and
	// pacman hook write).
	Initrd string `json:"initrd"`
	// InitramfsCommand runs in the target chroot and writes Initrd for
	// {kver}, e.g. mkinitcpio -k {kver} -g {initrd}.
	InitramfsCommand []string `json:"initramfs_command"`
	// InitramfsUncompressed are the arguments that make InitramfsCommand
	// write an uncompressed image (dracut: --no-compress). When set, the
	// build inserts them after the command's name and compresses the
	// image itself, in-process and on every CPU (boot.CompressInitramfs:
	// zstd at its default level, gzip for a kernel built without
	// CONFIG_RD_ZSTD; early microcode archives stay uncompressed, as the
	// kernel needs them). The command written for the device
	// (paczfs-update-esp) stays InitramfsCommand, the generator's own
	// compression. In the lab, dracut's zstd -15 took 50 to 100 s of a
	// 200 s build and made the same size (its modules are compressed
	// already); zstd's default level here takes about 5 s. They belong
	// to the command: whoever replaces InitramfsCommand sets them for the
	// new one, or clears them.
	InitramfsUncompressed []string `json:"initramfs_uncompressed,omitempty"`
	// InitramfsFiles are written into the target before the command runs:
	// drop-ins (mkinitcpio.conf.d, initramfs-tools/conf.d, hooks), never
	// package files. Content starting with #! is made executable.
	InitramfsFiles map[string]string `json:"initramfs_files,omitempty"`
	// InitramfsTriggers are the files (pacman hook Path targets, * for
	// any run of characters) whose change by a package means the
	// initramfs is out of date, as the distribution's own package hook
	// decides: a build derived from a release keeps its initramfs when
	// the package sync touched none of them, the kernels are the same
	// and InitramfsFiles are unchanged. Empty: always rebuilt.
	InitramfsTriggers []string `json:"initramfs_triggers,omitempty"`
	// InitramfsHookTargets are the paths (pacman hook Path targets, *
	// for any run of characters) on whose change the distribution's own
	// package hook rebuilds Initrd itself, before paczfs's (mkinitcpio's
	// 90-mkinitcpio-install rebuilds the preset's image). After an
	// upgrade on the device, paczfs-update-esp builds the initramfs only
	// when a changed path is outside them, and otherwise copies the
	// kernel and Initrd to the ESP: one build per upgrade, not two.
	// Empty: paczfs-update-esp always builds (initramfs-tools in the lab,
	// whose converted packages run no triggers).
	InitramfsHookTargets []string `json:"initramfs_hook_targets,omitempty"`
	// InitramfsStubs are commands that the bootable layer's package
	// hooks and scriptlets (and a derived release's package sync's) find
	// as stubs that do nothing: the distribution's own hook would build
	// an initramfs there, before the system is configured, and the
	// initramfs stage builds it again once it is. Each stub is written to
	// /usr/local/sbin, first in their PATH, and removed after the
	// transaction; the hook's other work is done (Arch's
	// 90-mkinitcpio-install still writes the kernel's preset and copies
	// the kernel to /boot; only its mkinitcpio run is skipped). Names,
	// not paths. Empty: nothing is stubbed.
	InitramfsStubs []string `json:"initramfs_stubs,omitempty"`
	// InitramfsMust are paths {initrd} must have (etc/hostid): the
	// initramfs stage fails when one is missing, instead of an image that
	// boots wrong. The stage reads the image itself (boot.InitramfsMissing:
	// newc cpio, uncompressed or gzip, zstd, xz, lzma, bzip2), unless
	// InitramfsList is set: a command run in the target that lists
	// {initrd}'s files (lsinitcpio {initrd}), for a format paczfs does not
	// read (lz4, lzo).
	InitramfsList []string `json:"initramfs_list,omitempty"`
	InitramfsMust []string `json:"initramfs_must,omitempty"`
	// RootOptions name the root on the kernel command line; {dataset} is
	// the environment's root dataset ("zfs={dataset} rw" for Arch's
	// mkinitcpio hook, "root=zfs:{dataset} rw" for dracut). It must name
	// it: every environment's entry boots its own root (root=zfs:AUTO,
	// the pool's bootfs, would boot the same one from every entry).
	RootOptions []string `json:"root_options"`
	// ExtraOptions are appended to every entry's command line.
	ExtraOptions []string `json:"extra_options,omitempty"`
	// SystemdBootEFI is the systemd-boot binary's path in the target.
	SystemdBootEFI string `json:"systemd_boot_efi"`
	// Timeout is the menu timeout in seconds.
	Timeout int `json:"timeout"`
	// BIOS, when set, makes the image boot under legacy BIOS as well as
	// UEFI, from the same ESP, kernels and entries: SYSLINUX's GPT boot
	// code in the protective MBR, the ESP marked legacy BIOS bootable,
	// SYSLINUX installed on the ESP, and its configuration made from the
	// loader entries (boot.Syslinux). nil: UEFI only.
	BIOS *BIOSBoot `json:"bios,omitempty"`
}

// BIOSBoot says how the target's SYSLINUX is installed. SYSLINUX, not
// GRUB: it reads the FAT ESP where every environment's kernel and
// initramfs already are (no BIOS boot partition, no second copy of the
// boot files, no ZFS driver in the boot loader), its configuration maps
// one to one onto the loader entries, and archiso boots BIOS machines
// the same way beside systemd-boot.
type BIOSBoot struct {
	// Install runs in the target chroot and installs SYSLINUX in
	// boot.SyslinuxDir on the unmounted ESP, {device}: the mtools
	// installer of the target's syslinux package, "syslinux --install
	// --directory /syslinux {device}" (the target needs mtools).
	Install []string `json:"install"`
	// MBR is SYSLINUX's GPT-aware boot code in the target (gptmbr.bin),
	// written into the protective MBR: it boots the partition marked
	// legacy BIOS bootable, the ESP.
	MBR string `json:"mbr"`
}

// Manage says how a built image manages its boot environments (package
// bootenv): the device-side tool, the boot-assessment units and their
// settings, installed in every environment.
type Manage struct {
	// Tool is the device-side tool on the build host: a statically linked
	// build of examples/bootenv (CGO_ENABLED=0 go build -o paczfs-bootenv
	// ./examples/bootenv), installed as /usr/local/sbin/paczfs-bootenv.
	Tool string `json:"tool,omitempty"`
	// KeepGood is how many @good- snapshots each environment keeps
	// (default 5); Watchdog bounds a trial boot (default 15m).
	KeepGood int    `json:"keep_good,omitempty"`
	Watchdog string `json:"watchdog,omitempty"`
	// ReleaseKeys are armored OpenPGP public key files on the build host
	// (release.GenerateKey): the image applies releases signed by them
	// and no other (installed in release.KeysDir).
	ReleaseKeys []string `json:"release_keys,omitempty"`
	// Off builds an image without the tool and units: its environments
	// still have their own entries and bootfs, nothing assesses boots.
	Off bool `json:"off,omitempty"`
}

// Encryption encrypts datasets outside the boot environments with
// OpenZFS native encryption: aes-256-gcm, keyformat=passphrase, each named
// dataset an encryption root whose children inherit it. The boot
// environments (system/) stay unencrypted, so their clones, snapshots,
// releases and updates work as they do without it; /home and the other
// data datasets are what it protects.
type Encryption struct {
	// Datasets are the encrypted datasets, relative to the pool
	// (data/home): among Datasets, outside system/.
	Datasets []string `json:"datasets,omitempty"`
	// KeyFile holds the passphrase on the build host: 8 to 512 bytes on
	// one line (a final newline is not part of it).
	KeyFile string `json:"key_file,omitempty"`
	// Prompt keeps the passphrase out of the image: at every boot
	// paczfs-load-keys.service asks for it on the console
	// (systemd-ask-password, three tries) and the datasets stay locked
	// until it is typed. Without Prompt the passphrase is installed as
	// KeyPath in the root (0400) and loaded from there at boot, which
	// protects the data of a disk taken without its root, not of a disk
	// taken whole.
	Prompt bool `json:"prompt,omitempty"`
	// Root also encrypts the boot environments' parent (system, the
	// first component of RootDataset), and so every environment, with
	// the same passphrase, which the initramfs asks for on the console at
	// every boot (keylocation=prompt: the key cannot be in the root it
	// opens). The data datasets' key is then loaded from KeyPath inside
	// the unlocked root (or asked for, with Prompt). Releases and
	// environments received or cloned under it are encrypted with it;
	// the miniroot (a clone of the root outside it) is not possible.
	Root bool `json:"root,omitempty"`
}

// KeyPath is where an image keeps the passphrase of its encrypted
// datasets (Encryption without Prompt).
const KeyPath = "/etc/zfs/keys/paczfs.key"

// Release is a release the build writes (package release): the root
// environment's streams and a signed manifest, for devices to apply.
type Release struct {
	// Dir is where the release goes (created; it must not exist or be
	// empty). Empty: no release is written.
	Dir string `json:"dir,omitempty"`
	// Name is the product (default: the pool name); Version this
	// release's version, newer than From's (compared by numeric runs:
	// 1.10 > 1.9).
	Name    string `json:"name,omitempty"`
	Version string `json:"version,omitempty"`
	// SigningKey is the armored secret key file on the build host that
	// signs the manifest (release.GenerateKey; paczfs-release keygen).
	SigningKey string `json:"signing_key,omitempty"`
	// From is the previous release's directory on the build host. The
	// build then receives its full stream as the root environment
	// instead of installing from scratch, brings the packages to this
	// configuration's set through libalpm (install, upgrade, remove),
	// configures the system again, rebuilds the initramfs only when its
	// inputs changed, and writes the incremental stream From -> Version
	// beside the full one. The disk gets From's GUIDs and the root keeps
	// its /etc/hostid, so the root's files name the same disk on every
	// device of the fleet. Its manifest must be signed by one of
	// manage.release_keys, the keys the image trusts.
	From string `json:"from,omitempty"`
}

// derived reports whether the build starts from a previous release.
func (r Release) derived() bool { return r.From != "" }

// device is the tool's configuration in the image.
func (m Manage) device() bootenv.Device {
	d := bootenv.DefaultDevice()
	if m.KeepGood != 0 {
		d.KeepGood = m.KeepGood
	}
	if m.Watchdog != "" {
		d.Watchdog = m.Watchdog
	}
	d.ESP = espMountPoint
	d.Health = HealthScript
	return d
}

// Layer names: the snapshots taken after each install stage, and the boot
// environments that may be cloned from them.
const (
	LayerBase        = "base"
	LayerBootable    = "bootable"
	LayerWorkstation = "workstation"
)

// FieldError is one problem with a configuration: which field, what is
// wrong, and how to fix it.
type FieldError struct {
	Field   string
	Problem string
	Fix     string
	// Err, when set, is a sentinel the problem matches (ErrStageConflict).
	Err error
}

func (e *FieldError) Unwrap() error { return e.Err }

func (e *FieldError) Error() string {
	s := e.Field + ": " + e.Problem
	if e.Fix != "" {
		s += " (" + e.Fix + ")"
	}
	return s
}

// ConfigError lists every problem New found. errors.As finds it; each
// entry is a *FieldError.
type ConfigError struct{ Problems []*FieldError }

// ErrInvalidConfig is matched by every ConfigError.
var ErrInvalidConfig = errors.New("invalid configuration")

func (e *ConfigError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "invalid configuration, %d problem(s):", len(e.Problems))
	for _, p := range e.Problems {
		b.WriteString("\n  " + p.Error())
	}
	return b.String()
}

func (e *ConfigError) Is(target error) bool { return target == ErrInvalidConfig }

// Unwrap exposes each problem to errors.Is and errors.As.
func (e *ConfigError) Unwrap() []error {
	errs := make([]error, len(e.Problems))
	for i, p := range e.Problems {
		errs[i] = p
	}
	return errs
}

type problems []*FieldError

func (p *problems) add(field, fix, format string, args ...any) {
	*p = append(*p, &FieldError{Field: field, Problem: fmt.Sprintf(format, args...), Fix: fix})
}

var (
	hostnameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	timezoneRE = regexp.MustCompile(`^[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*$`)
	keymapRE   = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)
	localeRE   = regexp.MustCompile(`^([a-z]{2,3}(_[A-Z]{2})?|C)(\.[A-Za-z0-9-]+)?(@[a-z]+)?$`)
	unitRE     = regexp.MustCompile(`^[A-Za-z0-9:_.@-]+\.(service|socket|target|timer|path|mount)$`)
)

// maxBootTimeout is the longest menu timeout, SYSLINUX's.
const maxBootTimeout = boot.MaxSyslinuxTimeout

func isSpaceOrControl(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }

// isTargetFile says whether name is a file path in the target a
// configuration may write: absolute, clean (no .., no trailing / or /.),
// not the root, without control characters.
func isTargetFile(name string) bool {
	return strings.HasPrefix(name, "/") && name != "/" && path.Clean(name) == name &&
		!strings.ContainsFunc(name, unicode.IsControl)
}

// validate checks everything that needs no host access. The Builder adds
// the checks that look at the host (paths, tools, devices, packages).
func (c *Config) validate() problems {
	var p problems
	switch {
	case c.ImageFile == "" && c.BlockDevice == "":
		p.add("image_file", "set image_file (a new sparse file) or block_device (a whole disk)", "no target")
	case c.ImageFile != "" && c.BlockDevice != "":
		p.add("block_device", "set only one of them; to keep a raw copy of a block device, add a raw output", "both image_file and block_device are set")
	}
	if c.BlockDevice != "" && !strings.HasPrefix(c.BlockDevice, "/dev/") {
		p.add("block_device", "name a whole disk such as /dev/sdb", "%q is not under /dev", c.BlockDevice)
	}
	if c.ImageFile != "" && c.Size <= 0 {
		p.add("size", "set size, e.g. 20 GiB", "image size must be positive, got %d", c.Size)
	}
	if c.ImageFile != "" && c.Size > 0 && c.Size%disk.Alignment != 0 {
		p.add("size", "use a multiple of 1 MiB, e.g. 20 GiB", "%d bytes is not a multiple of 1 MiB", c.Size)
	} else if c.ImageFile != "" && c.Size > 0 {
		if _, err := c.layout().Plan(c.Size); errors.Is(err, disk.ErrTooSmall) {
			p.add("size", "make size larger or esp_size/swap_size smaller", "the layout does not fit: %v", err)
		} else if err != nil && c.Layout == nil {
			p.add("pool_name", "use a pool name of at most 36 characters (it names the ZFS partition), and an esp_size and swap_size that fit", "the partition layout: %v", err)
		} else if err != nil {
			p.add("layout", "fix the partitions", "%v", err)
		}
	}
	if c.ESPSize < disk.MinESP && c.Layout == nil {
		p.add("esp_size", fmt.Sprintf("use at least %s", disk.MinESP), "%s is below the FAT32 minimum", c.ESPSize)
	}
	if c.SwapSize < 0 {
		p.add("swap_size", "use 0 for no swap", "negative")
	}
	seen := map[string]string{}
	for i, o := range c.Outputs {
		f := fmt.Sprintf("outputs[%d]", i)
		if _, err := ParseFormat(string(o.Format)); err != nil {
			p.add(f+".format", "", "%v", err)
		} else if _, err := OutputArgs("/dev/null", Output{Format: o.Format, Path: "x", Compression: o.Compression}); err != nil {
			p.add(f+".compression", "use zlib, zstd (qcow2 only) or none", "%v", err)
		}
		if o.Path == "" {
			p.add(f+".path", "give the output file's path", "empty")
			continue
		}
		abs, _ := filepath.Abs(o.Path)
		if prev, ok := seen[abs]; ok {
			p.add(f+".path", "give each output its own file", "%s is also %s", o.Path, prev)
		}
		seen[abs] = f
		if c.ImageFile != "" {
			if img, _ := filepath.Abs(c.ImageFile); img == abs {
				p.add(f+".path", "choose another file name", "%s is the image file itself", o.Path)
			}
		}
	}
	if err := zfs.ValidatePoolName(c.PoolName); err != nil {
		p.add("pool_name", "use letters, digits, _ - . : starting with a letter, e.g. zroot", "%v", err)
	} else if strings.ContainsFunc(c.PoolName, unicode.IsSpace) {
		// ZFS takes it; the kernel command line (zfs=<pool>/...) would
		// split it.
		p.add("pool_name", "use letters, digits, _ - . : starting with a letter, e.g. zroot", "%q has a space, which the kernel command line that names the root cannot carry", c.PoolName)
	} else if err := zfs.ValidateDatasets(c.PoolName, c.Datasets); err != nil {
		p.add("datasets", "fix the dataset names and properties", "%v", err)
	}
	root := c.RootDataset
	if !slices.ContainsFunc(c.Datasets, func(d zfs.DatasetSpec) bool { return d.Name == root }) {
		p.add("root_dataset", "name one of the datasets, normally system/default", "%q is not in the dataset layout", root)
	} else if dir, name := path.Split(root); bootenv.ValidName(name) != nil || strings.ContainsFunc(root, unicode.IsSpace) {
		p.add("root_dataset", "end it in a boot environment's name: letters, digits, . _ -, e.g. system/default", "%q: its last part names the boot environment on the ESP and in its loader entry", root)
	} else if dir == "" && len(c.BootEnvironments) > 0 {
		p.add("root_dataset", "put it in a container dataset, normally system/default: the boot environments are its siblings", "%q is at the top of the pool", root)
	} else if !c.Manage.Off && dir != "system/" {
		p.add("root_dataset", "put it in system/ (e.g. system/default), or set manage.off", "%q: the device-side tool manages the boot environments in <pool>/system", root)
	} else if slices.Contains(c.BootEnvironments, name) {
		p.add("root_dataset", "give the root another name than its boot environments, normally system/default", "%q is also boot environment %q", root, name)
	}
	for i, be := range c.BootEnvironments {
		f := fmt.Sprintf("boot_environments[%d]", i)
		if be != LayerBootable && be != LayerWorkstation {
			p.add(f, "use bootable or workstation", "%q is not a layer that can become a boot environment", be)
		}
		if be == LayerWorkstation && len(c.Packages.Workstation) == 0 {
			p.add(f, "drop it or list workstation packages", "the workstation layer is empty")
		}
		if slices.Index(c.BootEnvironments, be) != i {
			p.add(f, "list each once", "%q is repeated", be)
		}
	}
	if !c.Manage.Off {
		if c.Manage.Tool == "" {
			p.add("manage.tool", "set it to a static build of the device tool (CGO_ENABLED=0 go build -o paczfs-bootenv ./examples/bootenv), or set manage.off", "no device-side tool: the image could not manage its boot environments")
		} else if !filepath.IsAbs(c.Manage.Tool) {
			p.add("manage.tool", "give an absolute path", "%q is relative", c.Manage.Tool)
		}
		if err := c.Manage.device().Validate(); err != nil {
			p.add("manage", "keep_good at least 1, watchdog a duration of a minute or more (15m)", "%v", err)
		}
	}
	if c.MinirootClone != "" && zfs.ValidatePoolName(c.PoolName) == nil {
		if err := zfs.ValidateDatasetName(c.PoolName + "/" + c.MinirootClone); err != nil {
			p.add("miniroot_clone", "use a dataset name relative to the pool, e.g. data/machines/miniroot", "%v", err)
		}
	}
	c.validateEncryption(&p)
	if c.HoldTag == "" {
		p.add("hold_tag", "set a tag, e.g. paczfs", "empty")
	} else if strings.HasPrefix(c.HoldTag, "-") || strings.ContainsFunc(c.HoldTag, isSpaceOrControl) {
		p.add("hold_tag", "use a word not starting with -, e.g. paczfs", "%q", c.HoldTag)
	}
	if err := c.Pacman.Validate(); err != nil {
		p.add("pacman", "fix the pacman section", "%v", err)
	}
	if len(c.Packages.Base) == 0 {
		p.add("packages.base", "list at least the base package set", "empty")
	}
	if len(c.Packages.Bootable) == 0 {
		p.add("packages.bootable", "list the kernel, ZFS and boot packages", "empty: the image could not boot")
	}
	for _, list := range []struct {
		field string
		names []string
	}{{"packages.base", c.Packages.Base}, {"packages.bootable", c.Packages.Bootable}, {"packages.workstation", c.Packages.Workstation}} {
		for _, n := range list.names {
			if n == "" || strings.ContainsAny(n, " \t\n/'\"") {
				p.add(list.field, "one package name per entry", "bad package name %q", n)
			}
		}
	}
	for i, mp := range c.Packages.ModulePairs {
		f := fmt.Sprintf("packages.module_pairs[%d]", i)
		if mp.Kernel == "" || mp.Module == "" || len(mp.Fallback) == 0 {
			p.add(f, "name the kernel, the module package built for one version of it, and the packages that build it for any (e.g. linux-lts, zfs-linux-lts, zfs-dkms linux-lts-headers)", "incomplete")
		}
		for _, n := range append([]string{mp.Kernel, mp.Module}, mp.Fallback...) {
			if strings.ContainsAny(n, " \t\n/'\"") {
				p.add(f, "one package name per entry", "bad package name %q", n)
			}
		}
	}
	s := c.System
	if !hostnameRE.MatchString(s.Hostname) {
		p.add("system.hostname", "use lower-case letters, digits and -, at most 63", "%q is not a valid host name", s.Hostname)
	}
	if !timezoneRE.MatchString(s.Timezone) || strings.Contains(s.Timezone, "..") {
		p.add("system.timezone", "use a zoneinfo name such as UTC or Europe/Berlin", "%q is not a zone name", s.Timezone)
	} else if _, err := time.LoadLocation(s.Timezone); err != nil || s.Timezone == "Local" {
		// Go's embedded tz database (time/tzdata): the same names as the
		// target's tzdata package, whatever the build host has.
		p.add("system.timezone", "use a zoneinfo name such as UTC or Europe/Berlin", "%q is not a known time zone", s.Timezone)
	}
	if len(s.Locales) == 0 {
		p.add("system.locales", "add e.g. \"en_US.UTF-8 UTF-8\"", "empty")
	}
	for i, l := range s.Locales {
		f := strings.Fields(l)
		switch {
		case len(f) != 2 || strings.ContainsFunc(l, unicode.IsControl):
			p.add(fmt.Sprintf("system.locales[%d]", i), "write a locale.gen line: NAME CHARSET, e.g. \"en_US.UTF-8 UTF-8\"", "%q", l)
		case !localeRE.MatchString(f[0]):
			p.add(fmt.Sprintf("system.locales[%d]", i), "name a locale as glibc does: language_TERRITORY[.charset][@modifier], e.g. de_DE.UTF-8", "%q is not a locale name", f[0])
		case strings.Contains(strings.ToUpper(f[0]), ".UTF-8") && f[1] != "UTF-8":
			p.add(fmt.Sprintf("system.locales[%d]", i), "a .UTF-8 locale takes the UTF-8 charset", "%q with charset %q", f[0], f[1])
		}
	}
	if s.Keymap != "" && !keymapRE.MatchString(s.Keymap) {
		p.add("system.keymap", "use a console keymap name such as us or de-latin1", "%q", s.Keymap)
	}
	if h := s.RootPasswordHash; h != "" && (!strings.HasPrefix(h, "$") || strings.ContainsAny(h, ": \n")) {
		p.add("system.root_password_hash", "give a crypt(3) hash, e.g. from openssl passwd -6", "not a password hash")
	}
	for i, k := range s.AuthorizedKeys {
		if !isAuthorizedKeyLine(k) {
			p.add(fmt.Sprintf("system.authorized_keys[%d]", i), "give one public key line, e.g. ssh-ed25519 AAAA... user@host", "not an ssh public key line")
		}
	}
	if s.HostID != "" {
		if b, err := hex.DecodeString(s.HostID); err != nil || len(b) != 4 || s.HostID == "00000000" {
			p.add("system.hostid", "use 8 hex digits, not all zero, or leave empty for a random one", "%q", s.HostID)
		}
	}
	for _, name := range sortedKeys(s.Files) {
		if !isTargetFile(name) {
			p.add("system.files", "use clean absolute file paths in the target, without .. or control characters", "%q", name)
		}
	}
	for i, u := range s.Units {
		if !unitRE.MatchString(u) || strings.HasPrefix(u, "-") {
			p.add(fmt.Sprintf("system.units[%d]", i), "give a unit file name such as sshd.service", "%q", u)
		}
	}
	b := c.Boot
	if !strings.HasPrefix(b.Kernel, "/") || !strings.Contains(b.Kernel, "{kver}") || strings.ContainsFunc(b.Kernel, isSpaceOrControl) {
		p.add("boot.kernel", "an absolute path in the target with {kver}, e.g. /boot/vmlinuz-{kver}", "%q", b.Kernel)
	}
	if !strings.HasPrefix(b.Initrd, "/") || !strings.Contains(b.Initrd, "{kver}") && !strings.Contains(b.Initrd, "{pkgbase}") || strings.ContainsFunc(b.Initrd, isSpaceOrControl) {
		p.add("boot.initrd", "an absolute path in the target with {kver} or {pkgbase}, e.g. /boot/initrd.img-{kver}", "%q", b.Initrd)
	}
	if len(b.InitramfsCommand) == 0 {
		p.add("boot.initramfs_command", "give the command that writes {initrd} for {kver}", "empty")
	}
	for _, name := range sortedKeys(b.InitramfsFiles) {
		if !isTargetFile(name) {
			p.add("boot.initramfs_files", "use clean absolute file paths in the target, without .. or control characters", "%q", name)
		}
	}
	for i, t := range b.InitramfsHookTargets {
		if t == "" || strings.ContainsFunc(t, isSpaceOrControl) {
			p.add(fmt.Sprintf("boot.initramfs_hook_targets[%d]", i), "give a path pattern as a pacman hook's Target, without spaces", "%q", t)
		}
	}
	for i, a := range b.InitramfsUncompressed {
		if a == "" {
			p.add(fmt.Sprintf("boot.initramfs_uncompressed[%d]", i), "give the generator's argument for an uncompressed image, e.g. --no-compress, or drop the empty one", "empty")
		}
	}
	for i, n := range b.InitramfsStubs {
		if !stubName.MatchString(n) {
			p.add(fmt.Sprintf("boot.initramfs_stubs[%d]", i), "give a command's name as hooks run it (e.g. mkinitcpio), not a path", "%q", n)
		} else if slices.Contains(b.InitramfsStubs[:i], n) {
			p.add(fmt.Sprintf("boot.initramfs_stubs[%d]", i), "name each command once", "%q is named twice", n)
		}
	}
	if len(b.InitramfsStubs) > 0 {
		// A derived release's package sync runs stubbed too: where the
		// stubbed hook would have rebuilt, the initramfs stage must.
		for i, target := range b.InitramfsHookTargets {
			if example := strings.ReplaceAll(target, "*", "x/y"); triggered([]string{example}, b.InitramfsTriggers) == "" {
				p.add("boot.initramfs_triggers", fmt.Sprintf("add boot.initramfs_hook_targets[%d] (%s): with boot.initramfs_stubs its hook does not rebuild, so the initramfs stage must", i, target), "%s is not a trigger", target)
			}
		}
	}
	if !slices.ContainsFunc(b.RootOptions, func(o string) bool { return strings.Contains(o, "{dataset}") }) {
		p.add("boot.root_options", "name the root with {dataset}, e.g. zfs={dataset} rw", "no option names the root dataset")
	}
	for _, opts := range []struct {
		field string
		list  []string
	}{{"boot.root_options", b.RootOptions}, {"boot.extra_options", b.ExtraOptions}} {
		for i, o := range opts.list {
			if o == "" || strings.ContainsFunc(o, isSpaceOrControl) {
				p.add(fmt.Sprintf("%s[%d]", opts.field, i), "give one kernel option per entry, e.g. quiet", "%q: an option has no spaces or line breaks", o)
			}
		}
	}
	if !strings.HasPrefix(b.SystemdBootEFI, "/") || strings.ContainsFunc(b.SystemdBootEFI, isSpaceOrControl) {
		p.add("boot.systemd_boot_efi", "give the path of systemd-bootx64.efi in the target", "%q", b.SystemdBootEFI)
	}
	if b.Timeout < 0 || b.Timeout > maxBootTimeout {
		p.add("boot.timeout", fmt.Sprintf("use 0 to %d seconds", maxBootTimeout), "%d", b.Timeout)
	}
	if bios := b.BIOS; bios != nil {
		if !slices.ContainsFunc(bios.Install, func(a string) bool { return strings.Contains(a, "{device}") }) {
			p.add("boot.bios.install", "give the command that installs SYSLINUX on {device}, e.g. syslinux --install --directory /syslinux {device}, or set boot.bios to null for UEFI only", "%q", bios.Install)
		}
		if !strings.HasPrefix(bios.MBR, "/") || strings.ContainsFunc(bios.MBR, isSpaceOrControl) {
			p.add("boot.bios.mbr", "give the path of gptmbr.bin in the target, e.g. /usr/lib/syslinux/bios/gptmbr.bin", "%q", bios.MBR)
		}
	}
	if c.WorkDir != "" && !filepath.IsAbs(c.WorkDir) {
		p.add("work_dir", "give an absolute path", "%q is relative", c.WorkDir)
	}
	if c.CacheMax < 0 {
		p.add("cache_max", "use 0 for the default ("+DefaultCacheMax.String()+")", "%s is negative", c.CacheMax)
	}
	if c.CacheDir != "" && !filepath.IsAbs(c.CacheDir) {
		p.add("cache_dir", "give an absolute path", "%q is relative", c.CacheDir)
	}
	p = append(p, c.validateRelease()...)
	return p
}

func (c *Config) validateRelease() problems {
	var p problems
	r := c.Release
	if r.Dir == "" {
		for _, f := range []struct{ field, val string }{{"release.version", r.Version}, {"release.signing_key", r.SigningKey}, {"release.from", r.From}} {
			if f.val != "" {
				p.add(f.field, "set release.dir, where the release is written", "%s without release.dir", f.field)
			}
		}
		return p
	}
	if !filepath.IsAbs(r.Dir) {
		p.add("release.dir", "give an absolute path", "%q is relative", r.Dir)
	}
	if r.Version == "" || !snapNameRE.MatchString(r.Version) {
		p.add("release.version", "give a version such as 2 or 2026.12.1 (letters, digits, . _ - :)", "%q", r.Version)
	}
	if r.SigningKey == "" {
		p.add("release.signing_key", "name the armored secret key that signs the manifest (paczfs-release keygen)", "empty")
	}
	if r.Name != "" && !snapNameRE.MatchString(r.Name) {
		p.add("release.name", "letters, digits, . _ - :", "%q", r.Name)
	}
	if !r.derived() {
		return p
	}
	if !filepath.IsAbs(r.From) {
		p.add("release.from", "give the previous release's directory as an absolute path", "%q is relative", r.From)
	}
	if len(c.BootEnvironments) > 0 {
		p.add("boot_environments", "leave it empty: a release is the root environment alone, so a derived build has no layer snapshots to clone", "%v with release.from", c.BootEnvironments)
	}
	if c.MinirootClone != "" {
		p.add("miniroot_clone", "leave it empty: a derived build has no base layer snapshot", "set with release.from")
	}
	if c.GUIDSeed != "" {
		p.add("guid_seed", "leave it empty: a derived build takes its disk's GUIDs from release.from", "set with release.from")
	}
	if c.System.HostID != "" {
		p.add("system.hostid", "leave it empty: a derived build keeps the previous release's /etc/hostid, the one its devices' pools carry", "set with release.from")
	}
	if len(c.Manage.ReleaseKeys) == 0 {
		p.add("manage.release_keys", "name the public key that signed release.from: the previous release is verified with the keys the image trusts", "none, with release.from")
	}
	return p
}

// snapNameRE is what a release version or name may hold: it becomes a
// snapshot name (@v<version>) and part of environment names.
var snapNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]*$`)

// layout returns the disk layout the build writes.
//
// With boot.bios the ESP is marked legacy BIOS bootable, the partition
// SYSLINUX's gptmbr.bin boots.
func (c *Config) layout() disk.Layout {
	l := disk.DefaultLayout(c.ESPSize, c.SwapSize, c.PoolName)
	if c.Layout != nil {
		l = *c.Layout
		l.Partitions = slices.Clone(l.Partitions)
	}
	if c.Boot.BIOS != nil {
		for i := range l.Partitions {
			if l.Partitions[i].Role == disk.RoleESP {
				l.Partitions[i].LegacyBIOSBootable = true
			}
		}
	}
	return l
}

// environments returns the boot environments the build makes bootable:
// the root ("default") first, then the configured layer clones.
func (c *Config) environments() []bootEnv {
	envs := []bootEnv{{Name: filepath.Base(c.RootDataset), Dataset: c.PoolName + "/" + c.RootDataset}}
	for _, be := range c.BootEnvironments {
		envs = append(envs, bootEnv{Name: be, Dataset: c.PoolName + "/" + filepath.Dir(c.RootDataset) + "/" + be, Layer: be})
	}
	return envs
}

// bootEnv is one environment: its name on the ESP and in entries, its root
// dataset (with the on-disk pool name), and the layer it is cloned from
// ("" for the root itself).
type bootEnv struct {
	Name, Dataset, Layer string
}

// isAuthorizedKeyLine accepts "[options] type base64 [comment]" with a key
// type sshd knows the shape of.
// isAuthorizedKeyLine reports whether k is one authorized_keys line whose
// key parses (x/crypto/ssh: options, type, base64 key, comment).
func isAuthorizedKeyLine(k string) bool {
	if strings.ContainsAny(k, "\r\n") {
		return false
	}
	_, _, _, rest, err := ssh.ParseAuthorizedKey([]byte(k))
	return err == nil && len(rest) == 0
}

// checkFiles checks the files on the build host the configuration names,
// reading them only: the trusted key files (each must parse as OpenPGP
// public keys), the package cache directories, and with host the keyring
// directory (a profile's default, such as the Arch host's keyring package,
// is not the caller's to fix on another host's dry run).
func (c *Config) checkFiles(host bool) problems {
	var p problems
	pc := c.Pacman
	if pc.KeyringDir != "" && host {
		if fi, err := os.Stat(pc.KeyringDir); err != nil || !fi.IsDir() {
			p.add("pacman.keyring_dir", "name the directory holding the keyring files (NAME.gpg, NAME-trusted)", "%s is not a directory", pc.KeyringDir)
		}
	}
	for i, k := range pc.TrustedKeys {
		if k.File == "" {
			continue
		}
		if _, err := pacman.KeyFileFingerprints(k.File); err != nil {
			p = append(p, &FieldError{Field: fmt.Sprintf("pacman.trusted_keys[%d].file", i), Problem: err.Error(), Err: err,
				Fix: "give an OpenPGP public key file (gpg --export --armor KEYID > key.asc)"})
		}
	}
	if c.CacheDir != "" && filepath.IsAbs(c.CacheDir) && host {
		if err := checkCacheDir(c.CacheDir); err != nil && !errors.Is(err, os.ErrNotExist) {
			p = append(p, &FieldError{Field: "cache_dir", Problem: err.Error(), Err: err,
				Fix: "give a directory of yours that no one else can write (chmod go-w), or a new path"})
		}
	}
	for i, d := range pc.CacheDirs {
		switch fi, err := os.Stat(d); {
		case !filepath.IsAbs(d):
			p.add(fmt.Sprintf("pacman.cache_dirs[%d]", i), "give an absolute directory", "%q is relative", d)
		case err == nil && !fi.IsDir():
			p.add(fmt.Sprintf("pacman.cache_dirs[%d]", i), "give a directory", "%s is not a directory", d)
		case err != nil && !errors.Is(err, os.ErrNotExist):
			p.add(fmt.Sprintf("pacman.cache_dirs[%d]", i), "give a directory the build can read and write", "%v", err)
		}
	}
	for i, k := range c.Manage.ReleaseKeys {
		if _, err := pacman.KeyFileFingerprints(k); err != nil {
			p.add(fmt.Sprintf("manage.release_keys[%d]", i), "name an armored OpenPGP public key file (release.GenerateKey's public half)", "%v", err)
		}
	}
	if host {
		p = append(p, c.checkReleaseFiles()...)
	}
	if !c.Manage.Off && filepath.IsAbs(c.Manage.Tool) {
		if err := checkStaticTool(c.Manage.Tool); err != nil {
			p.add("manage.tool", "build it without cgo: CGO_ENABLED=0 go build -o paczfs-bootenv ./examples/bootenv", "%v", err)
		}
	}
	return p
}

// checkStaticTool checks that path is an x86-64 ELF executable with no
// program interpreter: it must run in any target, whatever its libc.
func checkStaticTool(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("%s: not an ELF executable: %w", path, err)
	}
	defer f.Close()
	if f.Machine != elf.EM_X86_64 || f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return fmt.Errorf("%s: %s %s, want an x86-64 executable", path, f.Machine, f.Type)
	}
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked: it may not run in the target", path)
		}
	}
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if fi.Mode()&0o111 == 0 {
		return fmt.Errorf("%s is not executable", path)
	}
	return nil
}

// validateEncryption checks the encrypted datasets and reads the
// passphrase file, before anything is written.
func (c Config) validateEncryption(p *problems) {
	e := c.Encryption
	if e.Root {
		top := c.encryptedRoot()
		switch {
		case !slices.ContainsFunc(c.Datasets, func(s zfs.DatasetSpec) bool { return s.Name == top }):
			p.add("encryption.root", "list the boot environments' parent ("+top+") in datasets", "%q is not in the layout", top)
		case top == c.RootDataset:
			p.add("encryption.root", "put the root dataset under a parent (system/default)", "the root %q has no parent to encrypt", top)
		}
		if c.MinirootClone != "" {
			p.add("miniroot_clone", "leave it empty with encryption.root", "the miniroot would be a clone of the encrypted root outside it")
		}
	}
	if len(e.Datasets) == 0 && !e.Root {
		if e.KeyFile != "" || e.Prompt {
			p.add("encryption.datasets", "name the datasets to encrypt, e.g. data/home", "a key is given for no dataset")
		}
		return
	}
	for i, d := range e.Datasets {
		f := fmt.Sprintf("encryption.datasets[%d]", i)
		switch {
		case !slices.ContainsFunc(c.Datasets, func(s zfs.DatasetSpec) bool { return s.Name == d }):
			p.add(f, "name a dataset of the layout (datasets), e.g. data/home", "%q is not in the layout", d)
		case d == c.encryptedRoot() || strings.HasPrefix(d, c.encryptedRoot()+"/") || d == c.RootDataset:
			p.add(f, "encrypt data datasets (data/home); for the boot environments set encryption.root", "%q holds boot environments", d)
		case c.MinirootClone != "" && (c.MinirootClone == d || strings.HasPrefix(c.MinirootClone, d+"/")):
			p.add(f, "encrypt another dataset, or leave miniroot_clone empty", "%q would hold the miniroot, a clone of the unencrypted root", d)
		case slices.Index(e.Datasets, d) != i:
			p.add(f, "list each once", "%q is repeated", d)
		}
		for _, o := range e.Datasets {
			if strings.HasPrefix(d, o+"/") {
				p.add(f, "list the outer one alone: its children inherit its encryption", "%q is inside %q", d, o)
			}
		}
	}
	if e.KeyFile == "" {
		p.add("encryption.key_file", "give the file holding the passphrase (8 to 512 bytes on one line)", "empty")
		return
	}
	if _, err := passphrase(e.KeyFile); err != nil {
		p.add("encryption.key_file", "give a file holding the passphrase (8 to 512 bytes on one line)", "%v", err)
	}
}

// passphrase reads a passphrase file as zfs does: one line, without its
// newline, of 8 to 512 bytes.
func passphrase(name string) ([]byte, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	line := bytes.TrimSuffix(data, []byte("\n"))
	switch {
	case bytes.ContainsAny(line, "\n\x00"):
		return nil, fmt.Errorf("%s: more than one line", name)
	case len(line) < 8 || len(line) > 512:
		return nil, fmt.Errorf("%s: %d bytes, want 8 to 512", name, len(line))
	}
	return line, nil
}

// encryptedRoot is the dataset Encryption.Root encrypts: the first
// component of RootDataset (system).
func (c Config) encryptedRoot() string {
	top, _, _ := strings.Cut(c.RootDataset, "/")
	return top
}

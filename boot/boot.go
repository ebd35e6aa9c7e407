package boot

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// Entry is one Boot Loader Specification Type #1 entry
// (loader/entries/<ID>.conf on the ESP).
type Entry struct {
	ID      string   // file name without .conf: [A-Za-z0-9._+-]
	Title   string   // shown in the menu
	Version string   // the kernel version, for sorting
	SortKey string   // entries with the same sort key sort by version
	Linux   string   // path of the kernel on the ESP, from its root
	Initrd  []string // paths of initrds on the ESP, in order
	Options []string // the kernel command line, word by word
}

// Validate checks what systemd-boot needs.
func (e Entry) Validate() error {
	var errs []error
	if e.ID == "" || strings.IndexFunc(e.ID, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._+-", r))
	}) >= 0 {
		errs = append(errs, fmt.Errorf("boot entry id %q: use letters, digits, . _ + -", e.ID))
	}
	if e.Title == "" {
		errs = append(errs, fmt.Errorf("boot entry %q: no title", e.ID))
	}
	for _, p := range append([]string{e.Linux}, e.Initrd...) {
		if !strings.HasPrefix(p, "/") || strings.Contains(p, "..") || strings.ContainsAny(p, " \t\n") {
			errs = append(errs, fmt.Errorf("boot entry %q: path %q must be absolute on the ESP, without spaces or ..", e.ID, p))
		}
	}
	for _, o := range e.Options {
		if strings.ContainsAny(o, "\n") {
			errs = append(errs, fmt.Errorf("boot entry %q: option %q has a newline", e.ID, o))
		}
	}
	return errors.Join(errs...)
}

// MarshalText renders the entry file.
func (e Entry) MarshalText() ([]byte, error) {
	if err := e.Validate(); err != nil {
		return nil, err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "title   %s\n", e.Title)
	if e.Version != "" {
		fmt.Fprintf(&b, "version %s\n", e.Version)
	}
	if e.SortKey != "" {
		fmt.Fprintf(&b, "sort-key %s\n", e.SortKey)
	}
	fmt.Fprintf(&b, "linux   %s\n", e.Linux)
	for _, i := range e.Initrd {
		fmt.Fprintf(&b, "initrd  %s\n", i)
	}
	if len(e.Options) > 0 {
		fmt.Fprintf(&b, "options %s\n", strings.Join(e.Options, " "))
	}
	return []byte(b.String()), nil
}

// Path is the entry's file on the ESP.
func (e Entry) Path() string { return path.Join("/loader/entries", e.ID+".conf") }

// Loader is loader/loader.conf.
type Loader struct {
	Default     string // entry id (with .conf) or a glob; "" = systemd-boot's choice
	Timeout     int    // seconds; 0 = boot at once unless a key is held
	Editor      bool   // allow editing the command line at boot
	ConsoleMode string // e.g. "keep", "max"; "" = default
}

// MarshalText renders loader.conf.
func (l Loader) MarshalText() ([]byte, error) {
	var b strings.Builder
	if l.Default != "" {
		if strings.ContainsAny(l.Default, " \n") {
			return nil, fmt.Errorf("loader default %q: no spaces", l.Default)
		}
		fmt.Fprintf(&b, "default %s\n", l.Default)
	}
	fmt.Fprintf(&b, "timeout %d\n", l.Timeout)
	if l.Editor {
		b.WriteString("editor yes\n")
	} else {
		b.WriteString("editor no\n")
	}
	if l.ConsoleMode != "" {
		fmt.Fprintf(&b, "console-mode %s\n", l.ConsoleMode)
	}
	return []byte(b.String()), nil
}

// Environment describes one boot environment: a root dataset with its own
// kernel and initramfs, kept on the ESP under /env/<Name>/.
type Environment struct {
	Name    string // e.g. "default", "bootable"
	Dataset string // e.g. "zroot/system/default"
	Kernel  string // kernel file name, e.g. "vmlinuz-linux"
	Initrds []string
	Version string
	// RootOptions is the command line that names the root: for Arch's
	// zfs hook "zfs=<dataset> rw", for OpenZFS's dracut module
	// "root=zfs:<dataset> rw", for Debian's initramfs-tools
	// "root=ZFS=<dataset> rw". {dataset} is replaced.
	RootOptions []string
	// Extra options appended (console=, quiet...).
	Extra []string
}

// ESPDir is the environment's directory on the ESP.
func (e Environment) ESPDir() string { return "/env/" + e.Name }

// Entry returns the environment's loader entry.
func (e Environment) Entry(title string) Entry {
	var initrds []string
	for _, i := range e.Initrds {
		initrds = append(initrds, path.Join(e.ESPDir(), i))
	}
	var opts []string
	for _, o := range e.RootOptions {
		opts = append(opts, strings.ReplaceAll(o, "{dataset}", e.Dataset))
	}
	return Entry{
		ID: "paczfs-" + e.Name, Title: title, Version: e.Version, SortKey: "paczfs",
		Linux: path.Join(e.ESPDir(), e.Kernel), Initrd: initrds, Options: append(opts, e.Extra...),
	}
}

// Efi binary locations on the ESP.
const (
	SystemdBootPath = "/EFI/systemd/systemd-bootx64.efi"
	RemovablePath   = "/EFI/BOOT/BOOTX64.EFI" // what firmware boots without NVRAM entries
	SystemdBootSrc  = "usr/lib/systemd/boot/efi/systemd-bootx64.efi"
)

// Template variables of a boot file's path (a profile's kernel and
// initramfs, BootFiles on a device):
//   - {kver}: the kernel's version, its directory under /usr/lib/modules;
//   - {pkgbase}: the package the kernel came from (linux, linux-lts), as
//     Arch records it in /usr/lib/modules/{kver}/pkgbase. mkinitcpio's
//     presets name their image after it (/boot/initramfs-{pkgbase}.img),
//     and mkinitcpio's own pacman hook rebuilds that file on every
//     upgrade: one initramfs per kernel.
const (
	VarKernelVersion = "{kver}"
	VarPkgBase       = "{pkgbase}"
)

// ErrNoPkgBase: a path names {pkgbase} and the kernel records none.
var ErrNoPkgBase = errors.New("the kernel records no package base (usr/lib/modules/<kver>/pkgbase)")

// ExpandPath fills a boot file path's template for kernel kver of the
// root at root (the pkgbase file is read only when tmpl names it).
func ExpandPath(root, tmpl, kver string) (string, error) {
	s := strings.ReplaceAll(tmpl, VarKernelVersion, kver)
	if !strings.Contains(s, VarPkgBase) {
		return s, nil
	}
	b, err := os.ReadFile(filepath.Join(root, "usr/lib/modules", kver, "pkgbase"))
	pkgbase := strings.TrimSpace(string(b))
	if err != nil || pkgbase == "" || strings.ContainsAny(pkgbase, "/ \t") {
		return "", fmt.Errorf("%s for kernel %s: %w", tmpl, kver, ErrNoPkgBase)
	}
	return strings.ReplaceAll(s, VarPkgBase, pkgbase), nil
}

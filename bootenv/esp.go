package bootenv

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/paczfs/paczfs/boot"
	"github.com/paczfs/paczfs/hooks"
)

// Entry naming and ordering on the ESP.
const (
	EntryPrefix = "paczfs-"
	// LoaderDefault is loader.conf's default: a glob, so that systemd-boot
	// takes the first entry in its order that still has tries.
	LoaderDefault = EntryPrefix + "*"
	SortTrial     = EntryPrefix + "0-trial"
	SortDefault   = EntryPrefix + "1-default"
	SortOther     = EntryPrefix + "2"
	// TrialOption marks a trial boot on the kernel command line; TrialPanic
	// makes a kernel (and initramfs-tools) panic reboot; TrialNoShell and
	// TrialEmergency make dracut's initramfs reboot where it would wait in
	// an emergency shell (the trial's root cannot be imported or
	// mounted), so that systemd-boot counts the try and falls back.
	// Other generators ignore the rd. options.
	TrialOption    = "paczfs.trial"
	TrialPanic     = "panic=10"
	TrialNoShell   = "rd.shell=0"
	TrialEmergency = "rd.emergency=reboot"
	// BootConfig is where an image says how its environments boot.
	BootConfig = "/etc/paczfs/boot.json"
)

// BootFiles says where an environment's kernel and initramfs are in its
// root and what its command line is: written by the image build at
// BootConfig in every root, read by Create from the environment's own root.
type BootFiles struct {
	Kernel       string   `json:"kernel"` // path with {kver}
	Initrd       string   `json:"initrd"` // path with {kver} or {pkgbase} (boot.ExpandPath)
	RootOptions  []string `json:"root_options"`
	ExtraOptions []string `json:"extra_options,omitempty"`
	Title        string   `json:"title,omitempty"` // "{name}" is replaced
}

// entryFile is one paczfs entry found on the ESP.
type entryFile struct {
	file       string // file name in loader/entries
	left, done int    // counters, -1 = none
	version    string
	sortKey    string
	text       string
}

var entryRE = regexp.MustCompile(`^` + EntryPrefix + `([A-Za-z0-9._-]+?)(?:\+(\d+)(?:-(\d+))?)?\.conf$`)

// ParseEntryName splits an entry file name into the environment and its
// counters, as systemd-boot reads "+LEFT[-DONE]" (-1 when absent).
func ParseEntryName(file string) (env string, left, done int, ok bool) {
	m := entryRE.FindStringSubmatch(file)
	if m == nil {
		return "", 0, 0, false
	}
	left, done = -1, -1
	if m[2] != "" {
		left, _ = strconv.Atoi(m[2])
		done = 0
		if m[3] != "" {
			done, _ = strconv.Atoi(m[3])
		}
	}
	return m[1], left, done, true
}

func entryID(name string) string { return EntryPrefix + name + ".conf" }

func (m *Manager) entriesDir() string { return filepath.Join(m.esp, "loader", "entries") }

// entries reads the paczfs entries on the ESP, one per environment. When
// one environment has several files (a crash between writing and
// removing), the counted one wins, as it is the newer state.
func (m *Manager) entries() (map[string]entryFile, error) {
	des, err := os.ReadDir(m.entriesDir())
	if err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("ESP entries: %w", err)
	}
	out := map[string]entryFile{}
	for _, de := range des {
		name, left, done, ok := ParseEntryName(de.Name())
		if !ok {
			continue
		}
		data, err := os.ReadFile(filepath.Join(m.entriesDir(), de.Name()))
		if err != nil {
			return nil, err
		}
		e := entryFile{file: de.Name(), left: left, done: done, text: string(data)}
		for _, line := range strings.Split(e.text, "\n") {
			k, v, _ := strings.Cut(strings.TrimSpace(line), " ")
			switch k {
			case "version":
				e.version = strings.TrimSpace(v)
			case "sort-key":
				e.sortKey = strings.TrimSpace(v)
			}
		}
		if old, ok := out[name]; ok && old.left >= 0 && e.left < 0 {
			continue
		}
		out[name] = e
	}
	return out, nil
}

// writeEntry replaces every entry file of the environment with one:
// counted (tries > 0) or not. It writes the new file first and then
// removes the others, so a crash leaves at least one entry; entries()
// prefers the counted one if two survive.
func (m *Manager) writeEntry(name string, e boot.Entry, tries int) error {
	return m.writeEntryFile(name, e, entryFileName(name, tries))
}

// entryFileName is the entry's file: counted with tries > 0.
func entryFileName(name string, tries int) string {
	if tries > 0 {
		return fmt.Sprintf("%s%s+%d.conf", EntryPrefix, name, tries)
	}
	return entryID(name)
}

// writeEntryFile is writeEntry with the file name given (counters
// included).
func (m *Manager) writeEntryFile(name string, e boot.Entry, file string) error {
	e.ID = strings.TrimSuffix(file, ".conf")
	text, err := e.MarshalText()
	if err != nil {
		return err
	}
	if err := m.writeSyslinuxLabel(name, e); err != nil {
		return err
	}
	dir := m.entriesDir()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tmp := filepath.Join(dir, "."+file+".tmp")
	if err := writeSync(tmp, text); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, file)); err != nil {
		return err
	}
	return m.removeEntries(name, file)
}

// removeEntries removes the environment's entry files but keep.
func (m *Manager) removeEntries(name, keep string) error {
	des, err := os.ReadDir(m.entriesDir())
	if err != nil {
		return err
	}
	for _, de := range des {
		if n, _, _, ok := ParseEntryName(de.Name()); ok && n == name && de.Name() != keep {
			if err := os.Remove(filepath.Join(m.entriesDir(), de.Name())); err != nil {
				return err
			}
		}
	}
	if err := m.writeSyslinux(); err != nil {
		return err
	}
	return m.syncESP()
}

// LegacyBIOS reports whether this system was booted by a legacy BIOS (no
// EFI variables) from an ESP with SYSLINUX: a trial or a one-shot boot is
// then SYSLINUX's boot-once (extlinux --once), and a trial gets one try.
func (m *Manager) LegacyBIOS() bool { return m.legacyBIOS() }

func (m *Manager) legacyBIOS() bool {
	if !m.running || !m.biosBoot() {
		return false
	}
	if m.efivars == "" {
		return true
	}
	_, err := os.Stat(m.efivars)
	return err != nil
}

// bootOnce makes SYSLINUX boot the environment's label at the next boot
// only: extlinux writes it into the ADV in ldlinux.sys, and ldlinux clears
// it at that boot before it loads the kernel, so a failing boot falls
// back to DEFAULT by itself.
func (m *Manager) bootOnce(ctx context.Context, name string) error {
	if err := m.syncESP(); err != nil {
		return err
	}
	dir := filepath.Join(m.esp, strings.TrimPrefix(boot.SyslinuxDir, "/"))
	if _, err := m.run.Run(ctx, hooks.Cmd{Args: []string{"extlinux", "--once=" + name, dir}}); err != nil {
		return fmt.Errorf("boot %s once under legacy BIOS: %w (extlinux is in the syslinux package)", name, err)
	}
	return nil
}

// biosBoot: the ESP boots legacy BIOS too (the image was built with
// boot.bios): SYSLINUX's configuration follows the entries.
func (m *Manager) biosBoot() bool {
	_, err := os.Stat(filepath.Join(m.esp, strings.TrimPrefix(boot.SyslinuxConfig, "/")))
	return err == nil
}

// writeSyslinuxLabel writes the environment's SYSLINUX label beside its
// files, from its entry (nothing without BIOS boot).
func (m *Manager) writeSyslinuxLabel(name string, e boot.Entry) error {
	dir := filepath.Join(m.esp, "env", name)
	if _, err := os.Stat(dir); err != nil || !m.biosBoot() {
		return nil // no files, no label
	}
	return m.syslinuxLabelIn(dir, name, e)
}

func (m *Manager) syslinuxLabelIn(dir, name string, e boot.Entry) error {
	frag, err := boot.SyslinuxLabel(name, e)
	if err != nil {
		return err
	}
	p := filepath.Join(dir, boot.SyslinuxFragment)
	if err := writeSync(p+".tmp", frag); err != nil {
		return err
	}
	return os.Rename(p+".tmp", p)
}

// writeSyslinux rewrites SYSLINUX's main configuration from the entries:
// every environment, in systemd-boot's order, and as DEFAULT the one
// systemd-boot boots when no trial has tries left (the uncounted entry
// that sorts first). Its other lines (serial, timeout) are kept.
func (m *Manager) writeSyslinux() error {
	if !m.biosBoot() {
		return nil
	}
	entries, err := m.entries()
	if err != nil {
		return err
	}
	names := slices.Collect(maps.Keys(entries))
	slices.SortFunc(names, func(a, b string) int {
		if c := strings.Compare(entries[a].sortKey, entries[b].sortKey); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	// Only environments whose label is there (SYSLINUX skips a missing
	// INCLUDE, but a missing DEFAULT would stop at the prompt).
	names = slices.DeleteFunc(names, func(n string) bool {
		_, err := os.Stat(filepath.Join(m.esp, "env", n, boot.SyslinuxFragment))
		return err != nil
	})
	if len(names) == 0 {
		return nil
	}
	def := names[0]
	for _, n := range names {
		if entries[n].left < 0 {
			def = n
			break
		}
	}
	p := filepath.Join(m.esp, strings.TrimPrefix(boot.SyslinuxConfig, "/"))
	old, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	text, err := boot.Syslinux{Default: def, Environments: names, Keep: boot.SyslinuxKeep(string(old))}.MarshalText()
	if err != nil {
		return err
	}
	if string(text) == string(old) {
		return nil
	}
	if err := writeSync(p+".tmp", text); err != nil {
		return err
	}
	return os.Rename(p+".tmp", p)
}

// readEntry parses an entry file back into a boot.Entry.
func readEntry(text string) boot.Entry {
	var e boot.Entry
	for _, line := range strings.Split(text, "\n") {
		k, v, _ := strings.Cut(strings.TrimSpace(line), " ")
		v = strings.TrimSpace(v)
		switch k {
		case "title":
			e.Title = v
		case "version":
			e.Version = v
		case "sort-key":
			e.SortKey = v
		case "linux":
			e.Linux = v
		case "initrd":
			e.Initrd = append(e.Initrd, v)
		case "options":
			e.Options = append(e.Options, strings.Fields(v)...)
		}
	}
	return e
}

// TrialOptions are the options a trial entry carries, in this order.
func TrialOptions() []string { return []string{TrialOption, TrialPanic, TrialNoShell, TrialEmergency} }

// withoutTrial drops the trial options from a command line.
func withoutTrial(opts []string) []string {
	trial := TrialOptions()
	return slices.DeleteFunc(slices.Clone(opts), func(o string) bool { return slices.Contains(trial, o) })
}

// rewrite rewrites the environment's entry with a new rank and counters
// (tries > 0: a trial's, with its options).
func (m *Manager) rewrite(name, sortKey string, tries int) error {
	return m.rewriteFile(name, sortKey, tries > 0, entryFileName(name, tries))
}

// rewriteFile rewrites the environment's entry as file, with a new rank,
// and a trial's options or none.
func (m *Manager) rewriteFile(name, sortKey string, trial bool, file string) error {
	entries, err := m.entries()
	if err != nil {
		return err
	}
	en, ok := entries[name]
	if !ok {
		return fmt.Errorf("%s: no entry on the ESP: %w", name, ErrNoBootFiles)
	}
	e := readEntry(en.text)
	e.SortKey = sortKey
	e.Options = withoutTrial(e.Options)
	if trial {
		e.Options = append(e.Options, TrialOptions()...)
	}
	return m.writeEntryFile(name, e, file)
}

// readBootFiles reads BootConfig from a mounted root.
func readBootFiles(root string) (BootFiles, error) {
	var bf BootFiles
	data, err := readIn(root, BootConfig)
	if err != nil {
		return bf, fmt.Errorf("%w: %v (not an environment paczfs built?)", ErrNoBootFiles, err)
	}
	if err := json.Unmarshal(data, &bf); err != nil {
		return bf, fmt.Errorf("%s: %w", BootConfig, err)
	}
	if !strings.Contains(bf.Kernel, boot.VarKernelVersion) || !strings.Contains(bf.Initrd, boot.VarKernelVersion) && !strings.Contains(bf.Initrd, boot.VarPkgBase) || len(bf.RootOptions) == 0 {
		return bf, fmt.Errorf("%s: kernel needs {kver}, initrd {kver} or {pkgbase}, root_options a value", BootConfig)
	}
	return bf, nil
}

// newestKernel finds the highest kernel version present in root.
func newestKernel(root, pattern string) (string, error) {
	vers, err := boot.KernelVersions(root, pattern)
	if err != nil {
		return "", err
	}
	if len(vers) == 0 {
		return "", fmt.Errorf("%w: nothing matches %s", ErrNoBootFiles, pattern)
	}
	return vers[len(vers)-1], nil
}

// installBootFiles copies the environment's newest kernel and its
// initramfs from its own root to /env/<name>/ on the ESP and writes its
// entry with the given rank (not counted). A power cut at any point
// leaves an entry whose files are all there: the new files are written
// beside the ones the entry names (under another name when theirs is
// taken: base and base.b in turn) and synced, then the entry is replaced
// (a rename), then the files it no longer names are removed.
func (m *Manager) installBootFiles(ctx context.Context, name, sortKey string) error {
	return m.installBootFilesAs(ctx, name, sortKey, entryID(name), false)
}

// installBootFilesAs is installBootFiles writing the entry as file, with
// a trial's options when trial.
func (m *Manager) installBootFilesAs(ctx context.Context, name, sortKey, file string, trial bool) error {
	root, unmount, err := m.mountEnv(ctx, name, true)
	if err != nil {
		return err
	}
	defer unmount()
	bf, err := readBootFiles(root)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	kver, err := newestKernel(root, bf.Kernel)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	kernel := strings.ReplaceAll(bf.Kernel, boot.VarKernelVersion, kver)
	initrd, err := boot.ExpandPath(root, bf.Initrd, kver)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	dir := filepath.Join(m.esp, "env", name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	named, err := m.namedFiles(name)
	if err != nil {
		return err
	}
	var files []string
	for _, f := range []string{kernel, initrd} {
		data, err := readIn(root, f)
		if err != nil {
			return fmt.Errorf("%s: %w: %v", name, ErrNoBootFiles, err)
		}
		file, err := placeFile(dir, path.Base(f), data, named)
		if err != nil {
			return fmt.Errorf("ESP: %w", err)
		}
		files = append(files, file)
	}
	env := boot.Environment{
		Name: name, Dataset: m.Dataset(name), Kernel: files[0], Initrds: []string{files[1]},
		Version: kver, RootOptions: bf.RootOptions, Extra: bf.ExtraOptions,
	}
	title := strings.ReplaceAll(bf.Title, "{name}", name)
	if title == "" {
		title = "Arch Linux on ZFS (" + name + ")"
	}
	e := env.Entry(title)
	e.SortKey = sortKey
	if trial {
		e.Options = append(e.Options, TrialOptions()...)
	}
	// The kernel and initramfs on the disk before an entry names them:
	// a power cut must never leave an entry whose files are not there
	// (the firmware would not offer it). writeEntry syncs again.
	if err := m.syncESP(); err != nil {
		return err
	}
	if err := m.writeEntryFile(name, e, file); err != nil {
		return err
	}
	// What the entry no longer names (the SYSLINUX label, rewritten with
	// the entry, stays).
	keep := map[string]bool{files[0]: true, files[1]: true, boot.SyslinuxFragment: true}
	des, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, de := range des {
		if !keep[de.Name()] {
			if err := os.RemoveAll(filepath.Join(dir, de.Name())); err != nil {
				return err
			}
		}
	}
	return m.syncESP()
}

// readIn reads p in the environment's root, never through a link that
// leads out of it (to the running system's files).
func readIn(root, p string) ([]byte, error) {
	r, err := os.OpenRoot(root)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return r.ReadFile(strings.TrimPrefix(filepath.Clean("/"+p), "/"))
}

// namedFiles are the file names in /env/<name>/ the environment's entry
// names now (none without an entry).
func (m *Manager) namedFiles(name string) (map[string]bool, error) {
	entries, err := m.entries()
	if err != nil {
		return nil, err
	}
	named := map[string]bool{}
	if en, ok := entries[name]; ok {
		e := readEntry(en.text)
		for _, p := range append([]string{e.Linux}, e.Initrd...) {
			if d, f := path.Split(p); d == "/env/"+name+"/" {
				named[f] = true
			}
		}
	}
	return named, nil
}

// placeFile writes data in dir as base (the file's name in the root),
// or, when the entry names base (named) and it holds other bytes, as
// base.b: never over a file the entry names. Written to a temporary file, synced, then
// renamed. It returns the name used; a file that holds data already is
// left as it is.
func placeFile(dir, base string, data []byte, named map[string]bool) (string, error) {
	alt := base + ".b"
	for _, n := range []string{base, alt} {
		if have, err := os.ReadFile(filepath.Join(dir, n)); err == nil && bytes.Equal(have, data) {
			return n, nil
		}
	}
	file := base
	if named[base] {
		file = alt
	}
	tmp := filepath.Join(dir, "."+file+".tmp")
	if err := writeSync(tmp, data); err != nil {
		os.Remove(tmp)
		return "", err
	}
	if err := os.Rename(tmp, filepath.Join(dir, file)); err != nil {
		os.Remove(tmp)
		return "", err
	}
	return file, nil
}

// InstallBootFiles (re)installs the environment's kernel, initramfs and
// entry on the ESP from its own root, keeping its rank (for an
// environment whose root was received or changed).
func (m *Manager) InstallBootFiles(ctx context.Context, name string) error {
	if err := ValidName(name); err != nil {
		return err
	}
	entries, err := m.entries()
	if err != nil {
		return err
	}
	en, ok := entries[name]
	if !ok {
		return m.installBootFiles(ctx, name, SortOther)
	}
	// A trial stays one: its counter (the entry's file name), its rank
	// and its options.
	sortKey := en.sortKey
	if sortKey == "" {
		sortKey = SortOther
	}
	return m.installBootFilesAs(ctx, name, sortKey, en.file, slices.Contains(readEntry(en.text).Options, TrialOption))
}

func (m *Manager) removeBootFiles(name string) error {
	if err := os.RemoveAll(filepath.Join(m.esp, "env", name)); err != nil {
		return err
	}
	return m.removeEntries(name, "")
}

// writeLoader makes loader.conf's default the glob, keeping its other lines.
func (m *Manager) writeLoader() error {
	p := filepath.Join(m.esp, "loader", "loader.conf")
	data, err := os.ReadFile(p)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimRight(string(data), "\n"), "\n") {
		if k, _, _ := strings.Cut(strings.TrimSpace(l), " "); k == "default" || l == "" {
			continue
		}
		lines = append(lines, l)
	}
	text := "default " + LoaderDefault + "\n" + strings.Join(lines, "\n")
	if len(lines) > 0 {
		text += "\n"
	}
	if text == string(data) {
		return nil
	}
	tmp := p + ".tmp"
	if err := writeSync(tmp, []byte(text)); err != nil {
		return err
	}
	if err := os.Rename(tmp, p); err != nil {
		return err
	}
	return m.syncESP()
}

// syncESP writes back everything of the ESP's file system (syncfs): file
// data, directory entries, the FAT. vfat renames and removals are not
// durable by themselves, and a power cut after an apply or an activation
// must find the ESP as the call left it.
func (m *Manager) syncESP() error {
	f, err := os.Open(m.esp)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		return fmt.Errorf("ESP %s: syncfs: %w", m.esp, err)
	}
	return nil
}

func writeSync(p string, data []byte) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

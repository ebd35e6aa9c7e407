package bootenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/paczfs/paczfs/hooks"
	"github.com/paczfs/paczfs/zfs"
)

// CreateOptions say where a new environment comes from.
type CreateOptions struct {
	// From is an environment name, a dataset or a snapshot
	// (dataset@snap); "" is the booted environment.
	From string
	// Empty creates an empty environment (for zfs receive): no clone,
	// no boot files until InstallBootFiles.
	Empty bool
}

// beProps are what every environment needs: only the root named on the
// command line is mounted, at /.
func beProps(s State) map[string]string {
	return map[string]string{"canmount": "noauto", "mountpoint": "/", PropState: string(s)}
}

// Create makes a new environment, state new, with its own kernel,
// initramfs and entry on the ESP (ranked below the default: activate it
// to boot it). A failure removes what Create made.
func (m *Manager) Create(ctx context.Context, name string, o CreateOptions) (err error) {
	if err := ValidName(name); err != nil {
		return err
	}
	ds := m.Dataset(name)
	if ok, err := m.z.Exists(ctx, ds); err != nil {
		return err
	} else if ok {
		return fmt.Errorf("%s: %w", ds, ErrExists)
	}
	if err := m.nameFree(ctx, name); err != nil {
		return err
	}
	if o.Empty {
		if o.From != "" {
			return errors.New("create: Empty and From exclude each other")
		}
		return m.z.CreateDataset(ctx, ds, beProps(StateNew), zfs.CreateOptions{})
	}
	snap, made, err := m.sourceSnapshot(ctx, name, o.From)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil && made {
			_ = m.z.Destroy(context.WithoutCancel(ctx), snap, zfs.DestroyOptions{})
		}
	}()
	if err := m.z.Clone(ctx, snap, ds, zfs.CloneOptions{Props: beProps(StateNew)}); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = m.z.Destroy(context.WithoutCancel(ctx), ds, zfs.DestroyOptions{})
			_ = m.removeBootFiles(name)
		}
	}()
	if err := m.installBootFiles(ctx, name, SortOther); err != nil {
		return err
	}
	m.log.Info("created", "env", name, "from", snap)
	return nil
}

// sourceSnapshot resolves From to a snapshot, taking one (made=true) of
// an environment or dataset.
func (m *Manager) sourceSnapshot(ctx context.Context, name, from string) (snap string, made bool, err error) {
	if strings.Contains(from, "@") {
		if ok, err := m.z.Exists(ctx, from); err != nil {
			return "", false, err
		} else if !ok {
			return "", false, fmt.Errorf("snapshot %s: %w", from, ErrNotFound)
		}
		return from, false, nil
	}
	src := from
	switch {
	case from == "":
		if m.booted == "" {
			return "", false, fmt.Errorf("create from the booted environment: %w (name one with From)", ErrNotBooted)
		}
		src = m.booted
	case !strings.Contains(from, "/"):
		src = m.Dataset(from)
	}
	if ok, err := m.z.Exists(ctx, src); err != nil {
		return "", false, err
	} else if !ok {
		return "", false, fmt.Errorf("%s: %w", src, ErrNotFound)
	}
	snap = src + "@be-" + name + "-" + m.now().UTC().Format("20060102T150405Z")
	if err := m.z.Snapshot(ctx, zfs.SnapshotOptions{}, snap); err != nil {
		return "", false, err
	}
	return snap, true, nil
}

// Mode is how Activate activates.
type Mode int

// Modes.
const (
	Permanent Mode = iota // the default from now on
	Once                  // the next boot only (LoaderEntryOneShot)
	Trial                 // boot it first, Tries times at most, then fall back
)

// ActivateOptions tune Activate.
type ActivateOptions struct {
	Mode  Mode
	Tries int // Trial: boot attempts before falling back (default 3)
}

// Activate makes the environment boot next. Permanent: bootfs, its entry
// (ranked default) and the previous default (ranked other) are changed
// together. Once: the firmware variable only. Trial: its entry gets
// boot counters and trial options and ranks first; bootfs and the
// default stay where they are until the trial boots well (Good).
func (m *Manager) Activate(ctx context.Context, name string, o ActivateOptions) error {
	e, err := m.Get(ctx, name)
	if err != nil {
		return err
	}
	if e.Entry == "" {
		if err := m.installBootFiles(ctx, name, SortOther); err != nil {
			return err
		}
	}
	switch o.Mode {
	case Once:
		if m.legacyBIOS() {
			return m.bootOnce(ctx, name)
		}
		if m.efivars == "" || !m.running {
			return fmt.Errorf("activate once: %w (the firmware's variables hold it)", ErrNotBooted)
		}
		return m.writeEFIVar(varOneShot, entryID(name))
	case Trial:
		tries := o.Tries
		if tries == 0 {
			tries = 3
		}
		if tries < 1 || tries > 99 {
			return fmt.Errorf("activate: tries %d: want 1 to 99", tries)
		}
		if e.Default {
			// Its entry would leave the default rank: once the tries are
			// spent, no entry would be ranked default to fall back to.
			return fmt.Errorf("activate %s as a trial: %w: it is the default", name, ErrRefused)
		}
		if err := m.demoteTrials(ctx, name); err != nil {
			return err
		}
		if m.legacyBIOS() {
			return m.biosTrial(ctx, name)
		}
		if err := m.rewrite(name, SortTrial, tries); err != nil {
			return err
		}
		if err := m.setState(ctx, name, StateTrying, time.Time{}); err != nil {
			return err
		}
		return m.finish(ctx)
	case Permanent:
		return m.makeDefault(ctx, name)
	}
	return fmt.Errorf("activate: unknown mode %d", o.Mode)
}

// biosTrial is a trial on a system booted by a legacy BIOS: SYSLINUX has
// no boot counting, but its boot-once falls back by itself, so a trial
// gets one try. Its entry is written as tried once with none left
// (paczfs-<name>+0-1.conf) before the boot-once is set: the next boot,
// whichever it is, consumes the boot-once. If the trial boots well, Good
// promotes it as on UEFI; if not, the machine reboots into the default,
// whose Good marks the spent trial bad. Under UEFI firmware (the same
// disk) that entry is skipped like any spent one.
func (m *Manager) biosTrial(ctx context.Context, name string) error {
	if err := m.rewriteFile(name, SortTrial, true, EntryPrefix+name+"+0-1.conf"); err != nil {
		return err
	}
	if err := m.setState(ctx, name, StateTrying, time.Time{}); err != nil {
		return err
	}
	if err := m.finish(ctx); err != nil {
		return err
	}
	m.log.Info("legacy BIOS: the trial gets one try (SYSLINUX's boot-once)", "env", name)
	return m.bootOnce(ctx, name)
}

// demoteTrials ends other trials: one trial at a time.
func (m *Manager) demoteTrials(ctx context.Context, except string) error {
	entries, err := m.entries()
	if err != nil {
		return err
	}
	for n, en := range entries {
		// A pending trial (tries left) ends; a spent one (+0-N) keeps its
		// counters, which are what sorts it last and records its failure.
		if n != except && en.sortKey == SortTrial && en.left != 0 {
			if err := m.rewrite(n, SortOther, 0); err != nil {
				return err
			}
			if st, _ := m.z.Properties(ctx, m.Dataset(n), PropState); st[PropState].Value == string(StateTrying) {
				if err := m.setState(ctx, n, StateNew, time.Time{}); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// makeDefault points bootfs and the entries' ranks at name.
func (m *Manager) makeDefault(ctx context.Context, name string) error {
	entries, err := m.entries()
	if err != nil {
		return err
	}
	// The new default is ranked before the old one is demoted: stopped
	// between the two, two entries are ranked default (both boot), never
	// none (systemd-boot would take the first other entry, untried).
	if err := m.rewrite(name, SortDefault, 0); err != nil {
		return err
	}
	for n, en := range entries {
		if n != name && en.sortKey == SortDefault {
			if err := m.rewrite(n, SortOther, 0); err != nil {
				return err
			}
		}
	}
	if err := m.z.SetPoolProperty(ctx, m.pool, "bootfs", m.Dataset(name)); err != nil {
		return err
	}
	if st, _ := m.z.Properties(ctx, m.Dataset(name), PropState); st[PropState].Value == string(StateTrying) || st[PropState].Value == string(StateBad) {
		if err := m.setState(ctx, name, StateNew, time.Time{}); err != nil {
			return err
		}
	}
	return m.finish(ctx)
}

// finish makes loader.conf's default the glob and clears a default a
// person pinned in the menu (LoaderEntryDefault), which would override
// the order the fallback relies on.
func (m *Manager) finish(ctx context.Context) error {
	if err := m.writeLoader(); err != nil {
		return err
	}
	if m.running && m.efivars != "" && m.readEFIVar(varDefault) != "" {
		if err := m.writeEFIVar(varDefault, ""); err != nil {
			return fmt.Errorf("clear the pinned default entry: %w", err)
		}
	}
	return nil
}

// nameFree refuses a new environment name the ESP could not tell apart
// from an existing environment's (its FAT ignores case), or whose ESP
// directory is there already (left by an environment destroyed by hand):
// before anything is changed.
func (m *Manager) nameFree(ctx context.Context, name string) error {
	envs, err := m.List(ctx)
	if err != nil {
		return err
	}
	for _, e := range envs {
		if strings.EqualFold(e.Name, name) {
			return fmt.Errorf("%s: %w: %s differs only in case, which the ESP's FAT does not tell apart", name, ErrExists, e.Name)
		}
	}
	dir := filepath.Join(m.esp, "env", name)
	if _, err := os.Lstat(dir); err == nil {
		return fmt.Errorf("%s: %w: the ESP has %s, which no environment owns (remove it)", name, ErrExists, dir)
	}
	return nil
}

// Rename renames an environment: dataset, ESP directory and entry.
// The booted environment is refused (its command line names it).
func (m *Manager) Rename(ctx context.Context, from, to string) error {
	if err := ValidName(to); err != nil {
		return err
	}
	e, err := m.Get(ctx, from)
	if err != nil {
		return err
	}
	if e.Booted {
		return fmt.Errorf("rename %s: %w: it is booted", from, ErrRefused)
	}
	if ok, err := m.z.Exists(ctx, m.Dataset(to)); err != nil {
		return err
	} else if ok {
		return fmt.Errorf("%s: %w", m.Dataset(to), ErrExists)
	}
	if !strings.EqualFold(from, to) {
		if err := m.nameFree(ctx, to); err != nil {
			return err
		}
	} else if from == to {
		return nil
	} else {
		return fmt.Errorf("rename %s to %s: %w: the names differ only in case, which the ESP's FAT does not tell apart", from, to, ErrRefused)
	}
	if err := m.z.Rename(ctx, e.Dataset, m.Dataset(to), zfs.RenameOptions{}); err != nil {
		return err
	}
	if e.Default {
		if err := m.z.SetPoolProperty(ctx, m.pool, "bootfs", m.Dataset(to)); err != nil {
			return err
		}
	}
	entries, err := m.entries()
	if err != nil {
		return err
	}
	en, ok := entries[from]
	if !ok {
		return nil
	}
	if err := os.Rename(filepath.Join(m.esp, "env", from), filepath.Join(m.esp, "env", to)); err != nil && !os.IsNotExist(err) {
		return err
	}
	be := readEntry(en.text)
	be.Linux = strings.Replace(be.Linux, "/env/"+from+"/", "/env/"+to+"/", 1)
	for i := range be.Initrd {
		be.Initrd[i] = strings.Replace(be.Initrd[i], "/env/"+from+"/", "/env/"+to+"/", 1)
	}
	for i, o := range be.Options {
		if strings.HasSuffix(o, "="+e.Dataset) {
			be.Options[i] = strings.TrimSuffix(o, e.Dataset) + m.Dataset(to)
		}
	}
	be.Title = strings.Replace(be.Title, "("+from+")", "("+to+")", 1)
	// Its boot counter, as it was: a trial keeps its tries, and a spent
	// one stays spent (skipped by systemd-boot), never uncounted.
	file := entryID(to)
	if en.left >= 0 {
		file = fmt.Sprintf("%s%s+%d", EntryPrefix, to, en.left)
		if en.done > 0 {
			file += fmt.Sprintf("-%d", en.done)
		}
		file += ".conf"
	}
	if err := m.writeEntryFile(to, be, file); err != nil {
		return err
	}
	return m.removeEntries(from, "")
}

// Destroy destroys an environment: its dataset, the snapshot it was
// cloned from when Create made it for it, and its ESP files. It refuses
// the booted one, the default, and the last one that booted well.
// Environments cloned from its snapshots are promoted first (as zectl
// does), so they keep their data and it can go.
func (m *Manager) Destroy(ctx context.Context, name string) error {
	envs, err := m.List(ctx)
	if err != nil {
		return err
	}
	var e *Environment
	var lastGood *Environment
	for i := range envs {
		if envs[i].Name == name {
			e = &envs[i]
		}
		if !envs[i].LastGood.IsZero() && (lastGood == nil || envs[i].LastGood.After(lastGood.LastGood)) {
			lastGood = &envs[i]
		}
	}
	switch {
	case e == nil:
		return fmt.Errorf("%s: %w (see list)", name, ErrNotFound)
	case e.Booted:
		return fmt.Errorf("destroy %s: %w: it is booted", name, ErrRefused)
	case e.Default:
		return fmt.Errorf("destroy %s: %w: it is the default (activate another first)", name, ErrRefused)
	case lastGood != nil && lastGood.Name == name:
		return fmt.Errorf("destroy %s: %w: it is the last environment that booted well", name, ErrRefused)
	}
	// Clones of its snapshots, anywhere in the pool: promote the newest.
	snaps, err := m.z.List(ctx, e.Dataset, zfs.ListOptions{Types: []string{"snapshot"}, Recursive: true, Depth: 1, Props: []string{"clones"}})
	if err != nil {
		return err
	}
	var dependents []string
	for _, s := range snaps {
		if c := s.Props["clones"]; c != "" && c != "-" {
			dependents = append(dependents, strings.Split(c, ",")...)
		}
	}
	if len(dependents) > 0 {
		sort.Strings(dependents)
		// Promoting the clone of the newest snapshot takes every older
		// snapshot with it; the others become its clones' dependents.
		newest := ""
		for _, s := range snaps {
			if c := s.Props["clones"]; c != "" && c != "-" {
				newest = strings.Split(c, ",")[0]
			}
		}
		if err := m.z.Promote(ctx, newest); err != nil {
			return fmt.Errorf("destroy %s: promote %s, which depends on it: %w", name, newest, err)
		}
		m.log.Info("promoted", "clone", newest, "was dependent on", name)
	}
	if err := m.z.Destroy(ctx, e.Dataset, zfs.DestroyOptions{Recursive: true}); err != nil {
		return err
	}
	// Its origin, when it was made for it, unless something else holds it.
	if e.Origin != "" && strings.Contains(e.Origin, "@be-"+name+"-") {
		if err := m.z.Destroy(ctx, e.Origin, zfs.DestroyOptions{}); err != nil {
			m.log.Warn("origin snapshot kept", "snapshot", e.Origin, "err", err)
		}
	}
	return m.removeBootFiles(name)
}

// Mount mounts an environment at dir for inspection or changes (not the
// booted one: it is at /).
func (m *Manager) Mount(ctx context.Context, name, dir string, readOnly bool) error {
	e, err := m.Get(ctx, name)
	if err != nil {
		return err
	}
	if e.Booted {
		return fmt.Errorf("mount %s: %w: it is booted, at /", name, ErrRefused)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	o := "zfsutil"
	if readOnly {
		o += ",ro"
	}
	_, err = m.run.Run(ctx, hooks.Cmd{Args: []string{"mount", "-t", "zfs", "-o", o, e.Dataset, dir}})
	return err
}

// Unmount unmounts what Mount mounted.
func (m *Manager) Unmount(ctx context.Context, dir string) error {
	_, err := m.run.Run(ctx, hooks.Cmd{Args: []string{"umount", dir}})
	return err
}

// Nspawn boots the environment in a container (systemd-nspawn --boot) on
// an ephemeral copy, so nothing it does stays: a way to look at it before
// trusting it with the machine. args are appended (e.g.
// "systemd.unit=multi-user.target"); the container's console is the
// caller's standard input and output.
func (m *Manager) Nspawn(ctx context.Context, name string, stdio hooks.Cmd, args ...string) error {
	e, err := m.Get(ctx, name)
	if err != nil {
		return err
	}
	if e.Booted {
		return fmt.Errorf("nspawn %s: %w: it is booted", name, ErrRefused)
	}
	dir, unmount, err := m.mountEnv(ctx, name, true)
	if err != nil {
		return err
	}
	defer unmount()
	c := stdio
	c.Args = append([]string{"systemd-nspawn", "--quiet", "--ephemeral", "--boot", "--machine", "paczfs-" + name, "-D", dir}, args...)
	_, err = m.run.Run(ctx, c)
	return err
}

// GoodSnapshots returns the environment's @good- snapshots, oldest first.
func (m *Manager) GoodSnapshots(ctx context.Context, name string) ([]string, error) {
	snaps, err := m.z.List(ctx, m.Dataset(name), zfs.ListOptions{Types: []string{"snapshot"}, Recursive: true, Depth: 1, Props: []string{"createtxg"}})
	if err != nil {
		return nil, err
	}
	type good struct {
		name string
		txg  int64
	}
	var goods []good
	for _, s := range snaps {
		_, snap, ok := strings.Cut(s.Name, "@")
		if !ok || !strings.HasPrefix(snap, GoodPrefix) {
			continue
		}
		txg, err := strconv.ParseInt(s.Props["createtxg"], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%s: createtxg %q", s.Name, s.Props["createtxg"])
		}
		goods = append(goods, good{s.Name, txg})
	}
	// By the transaction that made them, not by name: the names carry
	// the clock's time, which can run behind (no RTC battery, a boot
	// before NTP), and the newest must never sort as the oldest.
	sort.SliceStable(goods, func(i, j int) bool {
		if goods[i].txg != goods[j].txg {
			return goods[i].txg < goods[j].txg
		}
		return goods[i].name < goods[j].name
	})
	out := make([]string, len(goods))
	for i, g := range goods {
		out[i] = g.name
	}
	return out, nil
}

// Rollback goes back to the last good snapshot of an environment: it
// creates an environment from it (<name>-rollback-<time>) and activates
// it for good. It returns the new environment's name.
func (m *Manager) Rollback(ctx context.Context, name string) (string, error) {
	snaps, err := m.GoodSnapshots(ctx, name)
	if err != nil {
		return "", err
	}
	if len(snaps) == 0 {
		return "", fmt.Errorf("rollback %s: %w", name, ErrNoGoodSnapshot)
	}
	snap := snaps[len(snaps)-1]
	to := name + "-rollback-" + m.now().UTC().Format("20060102T150405Z")
	if len(to) > 64 {
		to = "rollback-" + m.now().UTC().Format("20060102T150405Z")
	}
	if err := m.Create(ctx, to, CreateOptions{From: snap}); err != nil {
		return "", err
	}
	// It was good when snapshotted.
	if err := m.setState(ctx, to, StateGood, time.Time{}); err != nil {
		return "", err
	}
	return to, m.Activate(ctx, to, ActivateOptions{Mode: Permanent})
}

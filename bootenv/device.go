package bootenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/paczfs/paczfs/hooks"
	"github.com/paczfs/paczfs/zfs"
)

// GoodPrefix starts the name of the snapshot taken at each good boot.
const GoodPrefix = "good-"

// ErrUnhealthy: the boot check found problems.
var ErrUnhealthy = errors.New("boot is unhealthy")

// GoodReport says what Good did.
type GoodReport struct {
	Env      string   `json:"env"`
	Blessed  bool     `json:"blessed"`  // its boot counter was removed
	Promoted bool     `json:"promoted"` // a trial became the default
	Snapshot string   `json:"snapshot,omitempty"`
	Pruned   []string `json:"pruned,omitempty"`
	Bad      []string `json:"bad,omitempty"` // trials found with no tries left
}

// Good records that this boot was good (run once boot-complete.target is
// reached): a trial becomes the default (bootfs and its entry, without
// counters or trial options), the environment is marked good with the
// time, a @good-<time> snapshot is taken and the oldest beyond the keep
// count pruned (never a held one or one a clone depends on), and every
// entry whose tries are spent is recorded bad.
func (m *Manager) Good(ctx context.Context) (GoodReport, error) {
	var r GoodReport
	name := m.Booted()
	if name == "" {
		return r, fmt.Errorf("good: %w", ErrNotBooted)
	}
	r.Env = name
	entries, err := m.entries()
	if err != nil {
		return r, err
	}
	en, hasEntry := entries[name]
	st, err := m.z.Properties(ctx, m.Dataset(name), PropState)
	if err != nil {
		return r, err
	}
	trial := m.Trial() || State(st[PropState].Value) == StateTrying
	switch {
	case trial:
		if err := m.makeDefault(ctx, name); err != nil {
			return r, err
		}
		r.Promoted, r.Blessed = true, hasEntry && en.left >= 0
	case hasEntry && en.left >= 0:
		if err := m.rewrite(name, en.sortKey, 0); err != nil {
			return r, err
		}
		r.Blessed = true
	}
	now := m.now().UTC()
	if err := m.setState(ctx, name, StateGood, now); err != nil {
		return r, err
	}
	snap := m.Dataset(name) + "@" + GoodPrefix + now.Format("20060102T150405Z")
	if ok, _ := m.z.Exists(ctx, snap); !ok {
		if err := m.z.Snapshot(ctx, zfs.SnapshotOptions{}, snap); err != nil {
			return r, err
		}
		r.Snapshot = snap
	}
	pruned, err := m.prune(ctx, name)
	if err != nil {
		return r, err
	}
	r.Pruned = pruned
	for n, e := range entries {
		if n == name || e.left != 0 {
			continue
		}
		ds := m.Dataset(n)
		p, err := m.z.Properties(ctx, ds, PropState)
		if err != nil {
			continue // an entry without its dataset
		}
		if State(p[PropState].Value) != StateBad {
			if err := m.setState(ctx, n, StateBad, time.Time{}); err != nil {
				return r, err
			}
			m.log.Warn("a trial spent its tries and is marked bad", "env", n, "tries", e.done)
		}
		r.Bad = append(r.Bad, n)
	}
	sort.Strings(r.Bad)
	return r, nil
}

// prune destroys the oldest @good- snapshots beyond the keep count.
func (m *Manager) prune(ctx context.Context, name string) ([]string, error) {
	snaps, err := m.GoodSnapshots(ctx, name)
	if err != nil {
		return nil, err
	}
	var pruned []string
	for i := 0; len(snaps)-i > m.keepGood && i < len(snaps); i++ {
		s := snaps[i]
		p, err := m.z.Properties(ctx, s, "userrefs", "clones")
		if err != nil {
			return pruned, err
		}
		if p["userrefs"].Value != "0" && p["userrefs"].Value != "" || p["clones"].Value != "" && p["clones"].Value != "-" {
			continue // held, or the origin of a clone
		}
		if err := m.z.Destroy(ctx, s, zfs.DestroyOptions{}); err != nil {
			return pruned, err
		}
		pruned = append(pruned, s)
	}
	return pruned, nil
}

// SyncReport says what Sync did.
type SyncReport struct {
	Bootfs    string `json:"bootfs"`
	Activated string `json:"activated,omitempty"` // the environment made the default
	Installed bool   `json:"installed"`           // its boot files were put on the ESP
}

// Sync makes the loader follow bootfs: when bootfs names an environment
// other than the one the entries rank default (a person ran zpool set
// bootfs=..., maybe on a clone made by hand with zfs clone), that
// environment gets the properties an environment needs, its kernel,
// initramfs and entry from its own root, and becomes the default. Run at
// shutdown, so that the reboot that follows boots it.
func (m *Manager) Sync(ctx context.Context) (SyncReport, error) {
	var r SyncReport
	bootfs, err := m.bootfs(ctx)
	if err != nil {
		return r, err
	}
	r.Bootfs = bootfs
	if bootfs == "" {
		return r, nil
	}
	if path.Dir(bootfs) != m.container() {
		m.log.Warn("bootfs is not a boot environment; the loader is left as it is", "bootfs", bootfs, "want under", m.container())
		return r, nil
	}
	name := path.Base(bootfs)
	if err := ValidName(name); err != nil {
		return r, err
	}
	entries, err := m.entries()
	if err != nil {
		return r, err
	}
	if en, ok := entries[name]; ok && en.sortKey == SortDefault {
		return r, nil
	}
	p, err := m.z.Properties(ctx, bootfs, "canmount", "mountpoint")
	if err != nil {
		return r, err
	}
	fix := map[string]string{}
	if p["canmount"].Value != "noauto" {
		fix["canmount"] = "noauto"
	}
	if p["mountpoint"].Value != "/" {
		fix["mountpoint"] = "/"
	}
	if len(fix) > 0 {
		if err := m.z.SetProperties(ctx, bootfs, fix); err != nil {
			return r, err
		}
	}
	if _, ok := entries[name]; !ok {
		if err := m.installBootFiles(ctx, name, SortOther); err != nil {
			return r, err
		}
		r.Installed = true
	}
	if err := m.makeDefault(ctx, name); err != nil {
		return r, err
	}
	r.Activated = name
	m.log.Info("bootfs is now the default", "env", name)
	return r, nil
}

// CheckOptions tune Check.
type CheckOptions struct {
	// Health is the image's health script (default /usr/local/sbin/paczfs-health),
	// run with --in-boot; "" runs none.
	Health string
	// Dir holds the user's checks: every executable file in it must exit 0
	// (default /etc/paczfs/health.d).
	Dir string
	// Reboot reboots a trial boot that fails (the image's unit sets it).
	Reboot bool
}

// CheckResult is Check's verdict.
type CheckResult struct {
	Healthy   bool     `json:"healthy"`
	Problems  []string `json:"problems,omitempty"`
	Trial     bool     `json:"trial"`
	Rebooting bool     `json:"rebooting"`
}

// Check decides whether this boot is good: the health script and the
// user's checks. It returns ErrUnhealthy when not; on a trial boot with
// Reboot set it then asks for a reboot, so the next try (or, with the
// tries spent, the previous default) boots.
func (m *Manager) Check(ctx context.Context, o CheckOptions) (CheckResult, error) {
	r := CheckResult{Trial: m.Trial()}
	var scripts [][]string
	if o.Health != "" {
		scripts = append(scripts, []string{o.Health, "--in-boot"})
	}
	if o.Dir != "" {
		des, err := os.ReadDir(o.Dir)
		if err != nil && !os.IsNotExist(err) {
			return r, err
		}
		for _, de := range des {
			p := filepath.Join(o.Dir, de.Name())
			if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
				scripts = append(scripts, []string{p})
			}
		}
	}
	for _, s := range scripts {
		out, err := m.run.Run(ctx, hooks.Cmd{Args: s})
		if err == nil {
			continue
		}
		var ce *hooks.CmdError
		if !errors.As(err, &ce) {
			return r, err
		}
		found := false
		for _, line := range strings.Split(string(out)+"\n"+ce.Stderr, "\n") {
			if p, ok := strings.CutPrefix(strings.TrimSpace(line), "problem: "); ok {
				r.Problems = append(r.Problems, p)
				found = true
			}
		}
		if !found {
			r.Problems = append(r.Problems, fmt.Sprintf("%s exited %d", s[0], ce.ExitCode))
		}
	}
	r.Healthy = len(r.Problems) == 0
	if r.Healthy {
		return r, nil
	}
	if r.Trial && o.Reboot {
		r.Rebooting = true
		m.log.Warn("a trial boot failed its checks: rebooting", "problems", r.Problems)
		if _, err := m.run.Run(ctx, hooks.Cmd{Args: []string{"systemctl", "reboot", "--no-block"}}); err != nil {
			return r, fmt.Errorf("reboot: %w", err)
		}
	}
	return r, fmt.Errorf("%w: %s", ErrUnhealthy, strings.Join(r.Problems, "; "))
}

// Watchdog, on a trial boot, waits for boot-complete.target and reboots
// when it has not been reached after timeout (a hung boot) or has failed.
// On other boots it returns at once.
func (m *Manager) Watchdog(ctx context.Context, timeout, poll time.Duration) error {
	if !m.Trial() {
		return nil
	}
	deadline := m.now().Add(timeout)
	for {
		out, err := m.run.Run(ctx, hooks.Cmd{Args: []string{"systemctl", "show", "-p", "ActiveState", "--value", "boot-complete.target"}})
		if err != nil {
			return err
		}
		switch strings.TrimSpace(string(out)) {
		case "active":
			return nil
		case "failed":
			m.log.Warn("boot-complete.target failed on a trial boot: rebooting")
			return m.reboot(ctx)
		}
		if !m.now().Before(deadline) {
			m.log.Warn("a trial boot did not complete in time: rebooting", "timeout", timeout)
			return m.reboot(ctx)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(poll):
		}
	}
}

func (m *Manager) reboot(ctx context.Context) error {
	_, err := m.run.Run(ctx, hooks.Cmd{Args: []string{"systemctl", "reboot", "--force"}})
	return err
}

// Status is what a person asks first: what booted, what boots next.
type Status struct {
	Booted   string        `json:"booted"`
	Trial    bool          `json:"trial"`
	Default  string        `json:"default"`
	Next     string        `json:"next"` // what the loader picks next boot
	OneShot  string        `json:"one_shot,omitempty"`
	Selected string        `json:"selected,omitempty"` // LoaderEntrySelected: the entry booted
	Envs     []Environment `json:"environments"`
}

// Status reports the booted, default and next environment.
func (m *Manager) Status(ctx context.Context) (Status, error) {
	envs, err := m.List(ctx)
	if err != nil {
		return Status{}, err
	}
	s := Status{Booted: m.Booted(), Trial: m.Trial(), Envs: envs, Selected: m.readEFIVar(varSelected)}
	s.OneShot = m.readEFIVar(varOneShot)
	for _, e := range envs {
		if e.Default {
			s.Default = e.Name
		}
		if e.NextOnce {
			s.Next = e.Name
		}
	}
	if s.Next == "" && m.legacyBIOS() {
		// SYSLINUX: an armed trial (its boot-once) or DEFAULT, the default.
		s.Next = s.Default
		if entries, err := m.entries(); err == nil {
			for _, e := range envs {
				if en, ok := entries[e.Name]; ok && e.State == StateTrying && en.sortKey == SortTrial {
					s.Next = e.Name
				}
			}
		}
	}
	if s.Next == "" {
		s.Next = m.nextByOrder(envs)
	}
	return s, nil
}

// nextByOrder is systemd-boot's choice with our entries: rank, then
// entries without tries last.
func (m *Manager) nextByOrder(envs []Environment) string {
	entries, err := m.entries()
	if err != nil {
		return ""
	}
	best, bestKey := "", ""
	for _, e := range envs {
		en, ok := entries[e.Name]
		if !ok {
			continue
		}
		key := en.sortKey
		if en.left == 0 {
			key = "~" + key
		}
		if best == "" || key < bestKey {
			best, bestKey = e.Name, key
		}
	}
	return best
}

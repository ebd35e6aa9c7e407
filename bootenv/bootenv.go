package bootenv

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/paczfs/paczfs/hooks"
	"github.com/paczfs/paczfs/zfs"
)

// Property names on the pool (user properties of each environment).
const (
	PropState    = "org.paczfs:state"
	PropLastGood = "org.paczfs:lastgood"
)

// State is an environment's standing.
type State string

// States.
const (
	StateNew    State = "new"    // never booted well: created, received, cloned by hand
	StateTrying State = "trying" // activated as a trial; not yet blessed
	StateGood   State = "good"   // booted well at least once (or built so)
	StateBad    State = "bad"    // a trial that spent its tries
)

// Errors callers can match with errors.Is.
var (
	ErrNotFound       = errors.New("no such boot environment")
	ErrExists         = errors.New("boot environment exists")
	ErrRefused        = errors.New("refused")
	ErrInvalidName    = errors.New("invalid boot environment name")
	ErrNotBooted      = errors.New("needs a booted system")
	ErrNoBootFiles    = errors.New("no kernel or initramfs in the environment")
	ErrNoGoodSnapshot = errors.New("no good-boot snapshot")
)

// Environment is one boot environment as List reports it.
type Environment struct {
	Name     string    `json:"name"`
	Dataset  string    `json:"dataset"`
	Origin   string    `json:"origin,omitempty"` // snapshot it was cloned from
	Created  time.Time `json:"created"`
	Used     uint64    `json:"used"`             // bytes (zfs used)
	Kernel   string    `json:"kernel,omitempty"` // version in its entry on the ESP
	Booted   bool      `json:"booted"`
	Default  bool      `json:"default"`   // bootfs, and the entry ranked default
	NextOnce bool      `json:"next_once"` // LoaderEntryOneShot names it
	State    State     `json:"state"`
	LastGood time.Time `json:"last_good,omitzero"`
	// Entry is its loader entry's file name on the ESP ("" = none);
	// TriesLeft and TriesDone its boot counters (-1 = none).
	Entry     string `json:"entry,omitempty"`
	TriesLeft int    `json:"tries_left"`
	TriesDone int    `json:"tries_done"`
}

// Manager manages one pool's boot environments and the ESP that boots them.
type Manager struct {
	z        *zfs.Client
	run      hooks.Runner
	log      *slog.Logger
	pool     string
	esp      string
	efivars  string
	booted   string // dataset at /; "" = not a running system
	root     string // where the booted root is mounted ("/")
	cmdline  string
	running  bool
	workDir  string
	now      func() time.Time
	keepGood int
}

// Option configures a Manager.
type Option func(*Manager)

// WithRunner sets how zfs, mount and bootctl run (default hooks.ExecRunner).
func WithRunner(r hooks.Runner) Option { return func(m *Manager) { m.run = r } }

// WithLogger sets the logger (the default discards).
func WithLogger(l *slog.Logger) Option { return func(m *Manager) { m.log = l } }

// WithPool names the pool (default: the pool of the dataset mounted at /).
func WithPool(name string) Option { return func(m *Manager) { m.pool = name } }

// WithESP is where the ESP is mounted (default /efi).
func WithESP(dir string) Option { return func(m *Manager) { m.esp = dir } }

// WithEFIVars is the efivarfs directory (default /sys/firmware/efi/efivars);
// "" means there are no EFI variables (an image, not a booted system).
func WithEFIVars(dir string) Option { return func(m *Manager) { m.efivars = dir } }

// WithImage manages an image's pool imported on this host (with its ESP
// mounted at WithESP): nothing is booted, and one-shot activation, which
// needs the firmware's variables, is refused.
func WithImage() Option { return func(m *Manager) { m.running = false } }

// WithBooted overrides what / is and what the kernel command line says
// (tests, and callers that know better than /proc).
func WithBooted(dataset, cmdline string) Option {
	return func(m *Manager) { m.booted, m.cmdline = dataset, cmdline }
}

// WithRoot is where the booted environment's root is mounted (default /;
// tests).
func WithRoot(dir string) Option { return func(m *Manager) { m.root = dir } }

// WithWorkDir is where environments are mounted to copy their boot files
// (default os.TempDir()).
func WithWorkDir(dir string) Option { return func(m *Manager) { m.workDir = dir } }

// WithClock sets the clock (tests).
func WithClock(now func() time.Time) Option { return func(m *Manager) { m.now = now } }

// WithKeepGood is how many @good- snapshots each environment keeps (default 5).
func WithKeepGood(n int) Option { return func(m *Manager) { m.keepGood = n } }

// New returns a Manager. On a running system (the default) it reads what
// is mounted at / and the kernel command line; the pool is that of /.
func New(ctx context.Context, opts ...Option) (*Manager, error) {
	m := &Manager{
		log: slog.New(slog.DiscardHandler), esp: "/efi", efivars: "/sys/firmware/efi/efivars",
		running: true, now: time.Now, keepGood: 5, root: "/",
	}
	for _, o := range opts {
		o(m)
	}
	if m.run == nil {
		m.run = &hooks.ExecRunner{Logger: m.log}
	}
	if m.workDir == "" {
		m.workDir = os.TempDir()
	}
	if m.keepGood < 1 {
		return nil, fmt.Errorf("keep good snapshots: %d, want at least 1", m.keepGood)
	}
	m.z = zfs.New(zfs.WithRunner(m.run), zfs.WithLogger(m.log))
	if !m.running {
		m.efivars, m.booted, m.cmdline = "", "", ""
	} else if m.booted == "" {
		out, err := m.run.Run(ctx, hooks.Cmd{Args: []string{"findmnt", "-n", "-o", "SOURCE,FSTYPE", "/"}})
		if err != nil {
			return nil, fmt.Errorf("what is mounted at /: %w", err)
		}
		f := strings.Fields(string(out))
		if len(f) != 2 || f[1] != "zfs" {
			return nil, fmt.Errorf("/ is %q, not a ZFS boot environment: %w", strings.TrimSpace(string(out)), ErrNotBooted)
		}
		m.booted = f[0]
		if data, err := os.ReadFile("/proc/cmdline"); err == nil {
			m.cmdline = strings.TrimSpace(string(data))
		}
	}
	if m.pool == "" {
		if m.booted == "" {
			return nil, errors.New("bootenv: no pool: name it (WithPool) when managing an image")
		}
		m.pool, _, _ = strings.Cut(m.booted, "/")
	}
	if err := zfs.ValidatePoolName(m.pool); err != nil {
		return nil, err
	}
	return m, nil
}

// Pool is the pool managed.
func (m *Manager) Pool() string { return m.pool }

// ESP is where the ESP is mounted.
func (m *Manager) ESP() string { return m.esp }

// Booted is the booted environment's name ("" when not running).
func (m *Manager) Booted() string {
	if m.booted == "" || path.Dir(m.booted) != m.container() {
		return ""
	}
	return path.Base(m.booted)
}

// Trial reports whether this boot is a trial (its entry carries paczfs.trial).
func (m *Manager) Trial() bool { return slices.Contains(strings.Fields(m.cmdline), TrialOption) }

func (m *Manager) container() string { return m.pool + "/system" }

// Dataset is the dataset of the environment named name.
func (m *Manager) Dataset(name string) string { return m.container() + "/" + name }

// ValidName checks an environment name: it becomes a dataset name, an ESP
// directory and an entry file name, so letters, digits, . _ - only (no +,
// which boot counting owns), at most 64, not starting with . or -.
func ValidName(name string) error {
	if name == "" || len(name) > 64 || name[0] == '.' || name[0] == '-' {
		return fmt.Errorf("%w %q: 1 to 64 characters, not starting with . or -", ErrInvalidName, name)
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return fmt.Errorf("%w %q: use letters, digits, . _ -", ErrInvalidName, name)
		}
	}
	return nil
}

var listProps = []string{"origin", "creation", "used", "canmount", "mountpoint", PropState, PropLastGood}

// List returns the environments, sorted by name.
func (m *Manager) List(ctx context.Context) ([]Environment, error) {
	ds, err := m.z.List(ctx, m.container(), zfs.ListOptions{Types: []string{"filesystem"}, Recursive: true, Depth: 1, Props: listProps})
	if err != nil {
		return nil, err
	}
	bootfs, err := m.bootfs(ctx)
	if err != nil {
		return nil, err
	}
	entries, err := m.entries()
	if err != nil {
		return nil, err
	}
	once := m.readEFIVar(varOneShot)
	var envs []Environment
	for _, d := range ds {
		if d.Name == m.container() || path.Dir(d.Name) != m.container() {
			continue
		}
		name := path.Base(d.Name)
		e := Environment{Name: name, Dataset: d.Name, State: StateNew, TriesLeft: -1, TriesDone: -1}
		if o := d.Props["origin"]; o != "-" {
			e.Origin = o
		}
		if s, err := strconv.ParseInt(d.Props["creation"], 10, 64); err == nil {
			e.Created = time.Unix(s, 0).UTC()
		}
		e.Used, _ = strconv.ParseUint(d.Props["used"], 10, 64)
		if s := State(d.Props[PropState]); s == StateTrying || s == StateGood || s == StateBad || s == StateNew {
			e.State = s
		}
		if s, err := strconv.ParseInt(d.Props[PropLastGood], 10, 64); err == nil {
			e.LastGood = time.Unix(s, 0).UTC()
		}
		e.Booted = d.Name == m.booted
		e.Default = d.Name == bootfs
		if en, ok := entries[name]; ok {
			e.Entry, e.TriesLeft, e.TriesDone, e.Kernel = en.file, en.left, en.done, en.version
			e.NextOnce = once != "" && strings.EqualFold(once, entryID(name))
		}
		envs = append(envs, e)
	}
	sort.Slice(envs, func(i, j int) bool { return envs[i].Name < envs[j].Name })
	return envs, nil
}

// Get returns one environment.
func (m *Manager) Get(ctx context.Context, name string) (Environment, error) {
	envs, err := m.List(ctx)
	if err != nil {
		return Environment{}, err
	}
	for _, e := range envs {
		if e.Name == name {
			return e, nil
		}
	}
	return Environment{}, fmt.Errorf("%s: %w (see list)", name, ErrNotFound)
}

func (m *Manager) bootfs(ctx context.Context) (string, error) {
	p, err := m.z.PoolProperties(ctx, m.pool, "bootfs")
	if err != nil {
		return "", err
	}
	if v := p["bootfs"].Value; v != "-" {
		return v, nil
	}
	return "", nil
}

func (m *Manager) setState(ctx context.Context, name string, s State, good time.Time) error {
	props := map[string]string{PropState: string(s)}
	if !good.IsZero() {
		props[PropLastGood] = strconv.FormatInt(good.Unix(), 10)
	}
	return m.z.SetProperties(ctx, m.Dataset(name), props)
}

// mountEnv mounts an environment's root at a fresh directory and returns
// it with the function that unmounts it.
func (m *Manager) mountEnv(ctx context.Context, name string, readOnly bool) (string, func(), error) {
	if m.running && m.Dataset(name) == m.booted {
		return m.root, func() {}, nil // already mounted, at /
	}
	dir, err := os.MkdirTemp(m.workDir, "paczfs-be-"+name+"-")
	if err != nil {
		return "", nil, err
	}
	o := "zfsutil"
	if readOnly {
		o += ",ro"
	}
	if _, err := m.run.Run(ctx, hooks.Cmd{Args: []string{"mount", "-t", "zfs", "-o", o, m.Dataset(name), dir}}); err != nil {
		os.Remove(dir)
		return "", nil, fmt.Errorf("mount %s: %w", m.Dataset(name), err)
	}
	return dir, func() {
		// A fresh context: unmount even when ctx was cancelled.
		if _, err := m.run.Run(context.WithoutCancel(ctx), hooks.Cmd{Args: []string{"umount", dir}}); err != nil {
			m.log.Warn("unmount", "dir", dir, "err", err)
			return
		}
		os.Remove(dir)
	}, nil
}

package zfs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"

	"github.com/paczfs/paczfs/hooks"
)

// Sentinel errors, classified from zfs and zpool messages. Test with
// errors.Is; the *hooks.CmdError with the full message is wrapped too.
var (
	// ErrNotFound: the pool, dataset, snapshot or hold does not exist.
	ErrNotFound = errors.New("does not exist")
	// ErrExists: a pool, dataset, snapshot or hold of that name exists.
	// Choose another name, or destroy the old one if it is not wanted.
	ErrExists = errors.New("already exists")
	// ErrBusy: in use (mounted and open, held, or a pool with active
	// datasets). Stop what uses it, or pass the force option.
	ErrBusy = errors.New("busy")
	// ErrHasDependents: children or clones depend on it. Destroy
	// recursively, or promote the clones first.
	ErrHasDependents = errors.New("has dependents")
	// ErrNotSupported: the devices cannot do it (trim on a disk or a
	// loop device without discard).
	ErrNotSupported = errors.New("not supported")
)

// classes maps message fragments to sentinels. The fragments are the
// messages of OpenZFS 2.x (libzfs_util.c, zfs_main.c, zpool_main.c); the
// table test holds texts captured from real runs.
var classes = []struct {
	fragment string
	err      error
}{
	{"dataset does not exist", ErrNotFound},
	{"no such pool", ErrNotFound}, // also "no such pool available"
	{"could not find any snapshots", ErrNotFound},
	{"no such tag on this dataset", ErrNotFound},
	{"no such dataset", ErrNotFound},
	{"already exists", ErrExists}, // dataset, pool, tag, "a pool with that name"
	{"has children", ErrHasDependents},
	{"has dependent clones", ErrHasDependents},
	{"is busy", ErrBusy}, // dataset, pool, "pool or dataset"
	{"is held", ErrBusy},
	{"being held", ErrBusy}, // "cannot destroy snapshot x: it's being held"
	{"trim operations are not supported", ErrNotSupported},
	{"support trim operations", ErrNotSupported}, // "cannot trim: no devices in pool support trim operations"
}

// Classify returns the sentinel matching a zfs or zpool error message,
// or nil.
func Classify(stderr string) error {
	s := strings.ToLower(stderr)
	for _, c := range classes {
		if strings.Contains(s, c.fragment) {
			return c.err
		}
	}
	return nil
}

// wrap classifies a failed command and adds what was being done.
func wrap(op string, err error) error {
	var ce *hooks.CmdError
	if errors.As(err, &ce) {
		if s := Classify(ce.Stderr); s != nil {
			return fmt.Errorf("%s: %w: %w", op, s, err)
		}
	}
	return fmt.Errorf("%s: %w", op, err)
}

// Client runs zpool and zfs through a hooks.Runner. It keeps no state: one
// Client may serve many builds at once.
type Client struct {
	run hooks.Runner
	log *slog.Logger
}

// Option configures a Client.
type Option func(*Client)

// WithLogger sets the logger (the default discards).
func WithLogger(l *slog.Logger) Option { return func(c *Client) { c.log = l } }

// WithRunner sets how zpool and zfs run (the default: hooks.ExecRunner
// on the host), as image.WithRunner and pacman.WithRunner do.
func WithRunner(r hooks.Runner) Option { return func(c *Client) { c.run = r } }

// New returns a Client.
func New(opts ...Option) *Client {
	c := &Client{log: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		o(c)
	}
	if c.run == nil {
		c.run = &hooks.ExecRunner{Logger: c.log}
	}
	return c
}

func (c *Client) cmd(ctx context.Context, args ...string) ([]byte, error) {
	return c.run.Run(ctx, hooks.Cmd{Args: args})
}

// propArgs renders properties as repeated "flag k=v", sorted by name so
// that the same spec always gives the same argv.
func propArgs(flag string, props map[string]string) []string {
	keys := make([]string, 0, len(props))
	for k := range props {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []string
	for _, k := range keys {
		out = append(out, flag, k+"="+props[k])
	}
	return out
}

// merge returns base overlaid with over; an empty value in over removes
// the key (to drop a default).
func merge(base, over map[string]string) map[string]string {
	out := make(map[string]string, len(base)+len(over))
	for k, v := range base {
		out[k] = v
	}
	for k, v := range over {
		if v == "" {
			delete(out, k)
		} else {
			out[k] = v
		}
	}
	return out
}

// ErrArgument: a name or property zfs or zpool would take for an option
// or misread.
var ErrArgument = errors.New("not a name zfs can be given")

// checkArgs refuses names zfs and zpool would read as options or
// misread: empty, starting with -, or with a line break or NUL.
func checkArgs(what string, names ...string) error {
	for _, n := range names {
		if n == "" || strings.HasPrefix(n, "-") || strings.ContainsAny(n, "\x00\n") {
			return fmt.Errorf("%w: %s %q", ErrArgument, what, n)
		}
	}
	return nil
}

// checkDestroy is checkArgs for destroy, which also reads a%b as a range
// of snapshots and a,b as a list: one dataset or snapshot only.
func checkDestroy(name string) error {
	if strings.ContainsAny(name, "%,") {
		return fmt.Errorf("%w: destroy %q: one dataset or snapshot, not a range or list", ErrArgument, name)
	}
	return checkArgs("dataset or snapshot", name)
}

// checkSend is checkArgs for send's snapshot and its incremental source.
func checkSend(snapshot, from string) error {
	if from != "" {
		if err := checkArgs("snapshot", from); err != nil {
			return err
		}
	}
	return checkArgs("snapshot", snapshot)
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// parseTable splits -H output into rows of tab-separated fields.
func parseTable(out []byte) [][]string {
	var rows [][]string
	for _, l := range strings.Split(string(out), "\n") {
		if l == "" {
			continue
		}
		rows = append(rows, strings.Split(l, "\t"))
	}
	return rows
}

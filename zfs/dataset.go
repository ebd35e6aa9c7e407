package zfs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/paczfs/paczfs/hooks"
)

// Property is one property value and where it comes from (local,
// default, inherited from X, received, -).
type Property struct {
	Value  string
	Source string
}

// parseProperties reads `get -H -p -o property,value,source` output.
// zfs get puts the dataset name first when asked for it; this reads the
// three-column form.
func parseProperties(out []byte) (map[string]Property, error) {
	m := map[string]Property{}
	for _, r := range parseTable(out) {
		if len(r) != 3 {
			return nil, fmt.Errorf("%w: %d fields in %q, want property, value and source (a user property's value with a tab or line break?)", ErrOutput, len(r), strings.Join(r, "\t"))
		}
		if _, dup := m[r[0]]; dup {
			return nil, fmt.Errorf("%w: property %q twice (a user property's value with a line break?)", ErrOutput, r[0])
		}
		m[r[0]] = Property{Value: r[1], Source: r[2]}
	}
	return m, nil
}

// ErrOutput: zfs or zpool printed what cannot be read unambiguously.
var ErrOutput = errors.New("unreadable zfs output")

// Dataset is one row of zfs list.
type Dataset struct {
	Name  string
	Type  string            // filesystem, volume, snapshot, bookmark
	Props map[string]string // the extra properties asked for
}

// ListOptions filter List.
type ListOptions struct {
	Types     []string // filesystem, volume, snapshot, bookmark, all; default filesystem and volume
	Recursive bool
	Depth     int      // with Recursive: 0 = unlimited
	Props     []string // extra properties to read
}

// ListArgs returns the zfs list argv.
func ListArgs(root string, o ListOptions) []string {
	args := []string{"zfs", "list", "-H", "-p", "-o", strings.Join(append([]string{"name", "type"}, o.Props...), ",")}
	if len(o.Types) > 0 {
		args = append(args, "-t", strings.Join(o.Types, ","))
	}
	if o.Recursive {
		args = append(args, "-r")
		if o.Depth > 0 {
			args = append(args, "-d", fmt.Sprint(o.Depth))
		}
	}
	if root != "" {
		args = append(args, root)
	}
	return args
}

// parseList reads zfs list -H output for the given extra properties.
// A row with another number of fields (a user property's value with a
// tab or line break, which zfs prints as it is) is an error, never a
// shifted column or a dataset that is not there.
func parseList(out []byte, props []string) ([]Dataset, error) {
	var ds []Dataset
	for _, r := range parseTable(out) {
		if len(r) != 2+len(props) {
			return nil, fmt.Errorf("%w: %d fields in %q, want %d (a user property's value with a tab or line break?)", ErrOutput, len(r), strings.Join(r, "\t"), 2+len(props))
		}
		d := Dataset{Name: r[0], Type: r[1], Props: map[string]string{}}
		for i, p := range props {
			d.Props[p] = r[2+i]
		}
		ds = append(ds, d)
	}
	return ds, nil
}

// List lists datasets under root (all pools when root is empty).
func (c *Client) List(ctx context.Context, root string, o ListOptions) ([]Dataset, error) {
	out, err := c.cmd(ctx, ListArgs(root, o)...)
	if err != nil {
		return nil, wrap("list "+root, err)
	}
	ds, err := parseList(out, o.Props)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", root, err)
	}
	return ds, nil
}

// Exists reports whether a dataset, snapshot or bookmark exists.
func (c *Client) Exists(ctx context.Context, name string) (bool, error) {
	if err := checkArgs("dataset", name); err != nil {
		return false, err
	}
	_, err := c.cmd(ctx, "zfs", "list", "-H", "-o", "name", "-t", "all", name)
	if err == nil {
		return true, nil
	}
	if err = wrap("list "+name, err); errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return false, err
}

// CreateOptions tune CreateDataset.
type CreateOptions struct {
	Parents bool // -p: create missing parents
}

// CreateDatasetArgs returns the zfs create argv.
func CreateDatasetArgs(name string, props map[string]string, o CreateOptions) ([]string, error) {
	if err := ValidateDatasetName(name); err != nil {
		return nil, err
	}
	if strings.ContainsAny(name, "@#") {
		return nil, fmt.Errorf("dataset %q: create makes filesystems; use Snapshot for snapshots", name)
	}
	args := []string{"zfs", "create"}
	if o.Parents {
		args = append(args, "-p")
	}
	args = append(args, propArgs("-o", props)...)
	return append(args, name), nil
}

// CreateDataset creates a filesystem dataset.
func (c *Client) CreateDataset(ctx context.Context, name string, props map[string]string, o CreateOptions) error {
	if err := checkArgs("dataset", append([]string{name}, sortedKeys(props)...)...); err != nil {
		return err
	}
	args, err := CreateDatasetArgs(name, props, o)
	if err != nil {
		return err
	}
	if _, err := c.cmd(ctx, args...); err != nil {
		return wrap("create "+name, err)
	}
	return nil
}

// Properties reads dataset properties (all when none are named), as exact
// values.
func (c *Client) Properties(ctx context.Context, name string, props ...string) (map[string]Property, error) {
	if err := checkArgs("dataset or property", append([]string{name}, props...)...); err != nil {
		return nil, err
	}
	what := "all"
	if len(props) > 0 {
		what = strings.Join(props, ",")
	}
	out, err := c.cmd(ctx, "zfs", "get", "-H", "-p", "-o", "property,value,source", what, name)
	if err != nil {
		return nil, wrap("get properties of "+name, err)
	}
	m, err := parseProperties(out)
	if err != nil {
		return nil, fmt.Errorf("properties of %s: %w", name, err)
	}
	return m, nil
}

// SetProperties sets properties on a dataset in one call.
func (c *Client) SetProperties(ctx context.Context, name string, props map[string]string) error {
	if err := checkArgs("dataset or property", append([]string{name}, sortedKeys(props)...)...); err != nil {
		return err
	}
	if len(props) == 0 {
		return nil
	}
	args := []string{"zfs", "set"}
	for i, a := range propArgs("", props) {
		if i%2 == 1 {
			args = append(args, a)
		}
	}
	if _, err := c.cmd(ctx, append(args, name)...); err != nil {
		return wrap("set properties of "+name, err)
	}
	return nil
}

// InheritOptions tune Inherit.
type InheritOptions struct {
	Recursive bool // -r: the descendants too
}

// Inherit clears a local property so the value is inherited again.
func (c *Client) Inherit(ctx context.Context, name, prop string, opt InheritOptions) error {
	if err := checkArgs("dataset or property", name, prop); err != nil {
		return err
	}
	args := []string{"zfs", "inherit"}
	if opt.Recursive {
		args = append(args, "-r")
	}
	if _, err := c.cmd(ctx, append(args, prop, name)...); err != nil {
		return wrap(fmt.Sprintf("inherit %s on %s", prop, name), err)
	}
	return nil
}

// RenameOptions tune Rename.
type RenameOptions struct {
	Parents bool // -p: create missing parents
}

// Rename renames a dataset or snapshot.
func (c *Client) Rename(ctx context.Context, from, to string, opt RenameOptions) error {
	if err := checkArgs("dataset", from, to); err != nil {
		return err
	}
	if err := ValidateDatasetName(to); err != nil {
		return err
	}
	args := []string{"zfs", "rename"}
	if opt.Parents {
		args = append(args, "-p")
	}
	if _, err := c.cmd(ctx, append(args, from, to)...); err != nil {
		return wrap(fmt.Sprintf("rename %s to %s", from, to), err)
	}
	return nil
}

// DestroyOptions tune Destroy.
type DestroyOptions struct {
	Recursive  bool // -r: children and snapshots
	Dependents bool // -R: also clones outside the hierarchy
	Force      bool // -f: unmount even if busy
	Defer      bool // -d: snapshots only, destroy when released
}

// Destroy destroys a dataset or snapshot.
func (c *Client) Destroy(ctx context.Context, name string, o DestroyOptions) error {
	if err := checkDestroy(name); err != nil {
		return err
	}
	args := []string{"zfs", "destroy"}
	for _, f := range []struct {
		on   bool
		flag string
	}{{o.Recursive, "-r"}, {o.Dependents, "-R"}, {o.Force, "-f"}, {o.Defer, "-d"}} {
		if f.on {
			args = append(args, f.flag)
		}
	}
	if _, err := c.cmd(ctx, append(args, name)...); err != nil {
		return wrap("destroy "+name, err)
	}
	return nil
}

// SnapshotOptions tune Snapshot.
type SnapshotOptions struct {
	Recursive bool              // -r: the descendants too, atomically
	Props     map[string]string // -o: user properties of the snapshots
}

// Snapshot takes snapshots atomically (one transaction group); names are
// "dataset@snap". Recursive includes every descendant.
func (c *Client) Snapshot(ctx context.Context, opt SnapshotOptions, names ...string) error {
	if err := checkArgs("snapshot", names...); err != nil {
		return err
	}
	for _, n := range names {
		if err := ValidateDatasetName(n); err != nil {
			return err
		}
		if !strings.Contains(n, "@") {
			return fmt.Errorf("snapshot %q: name must be dataset@snapshot", n)
		}
	}
	args := []string{"zfs", "snapshot"}
	if opt.Recursive {
		args = append(args, "-r")
	}
	args = append(args, propArgs("-o", opt.Props)...)
	if _, err := c.cmd(ctx, append(args, names...)...); err != nil {
		return wrap("snapshot "+strings.Join(names, " "), err)
	}
	return nil
}

// HoldOptions tune Hold and Release.
type HoldOptions struct {
	Recursive bool // -r: the same snapshot of every descendant
}

// Hold places a user hold named tag on a snapshot, so it cannot be destroyed.
func (c *Client) Hold(ctx context.Context, tag, snapshot string, opt HoldOptions) error {
	if err := checkArgs("tag or snapshot", tag, snapshot); err != nil {
		return err
	}
	args := []string{"zfs", "hold"}
	if opt.Recursive {
		args = append(args, "-r")
	}
	if _, err := c.cmd(ctx, append(args, tag, snapshot)...); err != nil {
		return wrap(fmt.Sprintf("hold %s on %s", tag, snapshot), err)
	}
	return nil
}

// Release removes a user hold.
func (c *Client) Release(ctx context.Context, tag, snapshot string, opt HoldOptions) error {
	if err := checkArgs("tag or snapshot", tag, snapshot); err != nil {
		return err
	}
	args := []string{"zfs", "release"}
	if opt.Recursive {
		args = append(args, "-r")
	}
	if _, err := c.cmd(ctx, append(args, tag, snapshot)...); err != nil {
		return wrap(fmt.Sprintf("release %s on %s", tag, snapshot), err)
	}
	return nil
}

// Holds lists the hold tags on a snapshot.
func (c *Client) Holds(ctx context.Context, snapshot string) ([]string, error) {
	if err := checkArgs("snapshot", snapshot); err != nil {
		return nil, err
	}
	out, err := c.cmd(ctx, "zfs", "holds", "-H", snapshot)
	if err != nil {
		return nil, wrap("holds of "+snapshot, err)
	}
	var tags []string
	for _, r := range parseTable(out) {
		if len(r) >= 2 {
			tags = append(tags, r[1])
		}
	}
	return tags, nil
}

// CloneOptions tune Clone.
type CloneOptions struct {
	Props   map[string]string // -o: properties of the clone
	Parents bool              // -p: create missing parents
}

// Clone creates a writable dataset from a snapshot.
func (c *Client) Clone(ctx context.Context, snapshot, target string, opt CloneOptions) error {
	if err := checkArgs("snapshot or dataset", snapshot, target); err != nil {
		return err
	}
	if err := ValidateDatasetName(target); err != nil {
		return err
	}
	args := []string{"zfs", "clone"}
	if opt.Parents {
		args = append(args, "-p")
	}
	args = append(args, propArgs("-o", opt.Props)...)
	if _, err := c.cmd(ctx, append(args, snapshot, target)...); err != nil {
		return wrap(fmt.Sprintf("clone %s to %s", snapshot, target), err)
	}
	return nil
}

// Promote makes a clone independent of its origin (the origin becomes its clone).
func (c *Client) Promote(ctx context.Context, clone string) error {
	if err := checkArgs("dataset", clone); err != nil {
		return err
	}
	if _, err := c.cmd(ctx, "zfs", "promote", clone); err != nil {
		return wrap("promote "+clone, err)
	}
	return nil
}

// RollbackOptions tune Rollback.
type RollbackOptions struct {
	DestroyLater  bool // -r: destroy later snapshots
	DestroyClones bool // -R: and their clones
	Force         bool // -f: unmount clones
}

// Rollback returns a dataset to a snapshot.
func (c *Client) Rollback(ctx context.Context, snapshot string, o RollbackOptions) error {
	if err := checkArgs("snapshot", snapshot); err != nil {
		return err
	}
	args := []string{"zfs", "rollback"}
	if o.DestroyLater {
		args = append(args, "-r")
	}
	if o.DestroyClones {
		args = append(args, "-R")
	}
	if o.Force {
		args = append(args, "-f")
	}
	if _, err := c.cmd(ctx, append(args, snapshot)...); err != nil {
		return wrap("rollback to "+snapshot, err)
	}
	return nil
}

// Mount mounts a dataset (at its mountpoint, under the pool's altroot).
func (c *Client) Mount(ctx context.Context, name string) error {
	if err := checkArgs("dataset", name); err != nil {
		return err
	}
	if _, err := c.cmd(ctx, "zfs", "mount", name); err != nil {
		return wrap("mount "+name, err)
	}
	return nil
}

// UnmountOptions tune Unmount.
type UnmountOptions struct {
	Force bool // -f: even when busy
}

// Unmount unmounts a dataset.
func (c *Client) Unmount(ctx context.Context, name string, opt UnmountOptions) error {
	if err := checkArgs("dataset", name); err != nil {
		return err
	}
	args := []string{"zfs", "unmount"}
	if opt.Force {
		args = append(args, "-f")
	}
	if _, err := c.cmd(ctx, append(args, name)...); err != nil {
		return wrap("unmount "+name, err)
	}
	return nil
}

// SendOptions tune Send.
type SendOptions struct {
	// From makes an incremental stream from this snapshot (-i); with
	// Intermediary, every snapshot in between is included (-I).
	From         string
	Intermediary bool
	Replicate    bool // -R: descendants, snapshots and properties
	Raw          bool // -w: encrypted data stays encrypted
	Compressed   bool // -c
	LargeBlocks  bool // -L
	Embedded     bool // -e
	Props        bool // -p
}

// SendArgs returns the zfs send argv.
func SendArgs(snapshot string, o SendOptions) ([]string, error) {
	if !strings.Contains(snapshot, "@") {
		return nil, fmt.Errorf("send %q: name a snapshot (dataset@snap)", snapshot)
	}
	args := []string{"zfs", "send"}
	for _, f := range []struct {
		on   bool
		flag string
	}{{o.Replicate, "-R"}, {o.Raw, "-w"}, {o.Compressed, "-c"}, {o.LargeBlocks, "-L"}, {o.Embedded, "-e"}, {o.Props, "-p"}} {
		if f.on {
			args = append(args, f.flag)
		}
	}
	if o.From != "" {
		flag := "-i"
		if o.Intermediary {
			flag = "-I"
		}
		args = append(args, flag, o.From)
	} else if o.Intermediary {
		return nil, fmt.Errorf("send %q: Intermediary needs From", snapshot)
	}
	return append(args, snapshot), nil
}

// Send writes a send stream of snapshot to w. Cancelling ctx stops it.
func (c *Client) Send(ctx context.Context, w io.Writer, snapshot string, o SendOptions) error {
	if err := checkSend(snapshot, o.From); err != nil {
		return err
	}
	args, err := SendArgs(snapshot, o)
	if err != nil {
		return err
	}
	if _, err := c.run.Run(ctx, hooks.Cmd{Args: args, Stdout: w}); err != nil {
		return wrap("send "+snapshot, err)
	}
	return nil
}

// ReceiveOptions tune Receive.
type ReceiveOptions struct {
	// Mount mounts the received dataset; by default it is left unmounted (-u).
	Mount bool
	// Force rolls the target back to its latest snapshot first, and
	// destroys snapshots the stream does not have (-F).
	Force bool
	// Props override received properties (-o); Exclude drops them (-x).
	Props   map[string]string
	Exclude []string
}

// ReceiveArgs returns the zfs receive argv.
func ReceiveArgs(target string, o ReceiveOptions) ([]string, error) {
	if err := ValidateDatasetName(target); err != nil {
		return nil, err
	}
	args := []string{"zfs", "receive"}
	if !o.Mount {
		args = append(args, "-u")
	}
	if o.Force {
		args = append(args, "-F")
	}
	args = append(args, propArgs("-o", o.Props)...)
	for _, x := range o.Exclude {
		args = append(args, "-x", x)
	}
	return append(args, target), nil
}

// Receive reads a send stream from r into target. Cancelling ctx stops it;
// ZFS then discards the partial receive.
func (c *Client) Receive(ctx context.Context, r io.Reader, target string, o ReceiveOptions) error {
	if err := checkArgs("dataset", target); err != nil {
		return err
	}
	args, err := ReceiveArgs(target, o)
	if err != nil {
		return err
	}
	if _, err := c.run.Run(ctx, hooks.Cmd{Args: args, Stdin: r}); err != nil {
		return wrap("receive "+target, err)
	}
	return nil
}

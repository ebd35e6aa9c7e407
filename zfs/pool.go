package zfs

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// DefaultPoolProperties are the -o properties of a new pool: 4K sectors
// whatever the loop or image reports, TRIM, growth with the target disk,
// no cache file (it would record build-host paths), and a feature set
// that OpenZFS 2.2 and later can import (ZFSBootMenu, rescue media).
func DefaultPoolProperties() map[string]string {
	return map[string]string{
		"ashift":        "12",
		"autotrim":      "on",
		"autoexpand":    "on",
		"cachefile":     "none",
		"compatibility": "openzfs-2.2-linux",
	}
}

// DefaultFSProperties are the -O properties of a new pool's root dataset,
// inherited by every dataset: POSIX ACLs (journald), xattrs in the dnode,
// Unicode normalisation, relatime, lz4, and a root that is never mounted.
func DefaultFSProperties() map[string]string {
	return map[string]string{
		"acltype":       "posixacl",
		"xattr":         "sa",
		"dnodesize":     "auto",
		"normalization": "formD",
		"relatime":      "on",
		"compression":   "lz4",
		"canmount":      "off",
		"mountpoint":    "none",
	}
}

// PoolSpec describes a pool to create.
type PoolSpec struct {
	// Name is the name written on disk: what the booted system imports.
	Name string
	// TempName, when set, is the name the pool has while this host has it
	// imported (zpool create -t), so the on-disk name may equal a pool the
	// build host already has.
	TempName string
	// AltRoot prefixes every mount point (zpool create -R).
	AltRoot string
	// Vdevs are the devices, e.g. "/dev/loop0p2".
	Vdevs []string
	// Properties and FSProperties are laid over DefaultPoolProperties and
	// DefaultFSProperties; an empty value removes a default.
	Properties   map[string]string
	FSProperties map[string]string
	// Force passes -f: use vdevs that look in use by another pool.
	Force bool
}

// ImportedName is the name the pool has on this host after creation.
func (s PoolSpec) ImportedName() string {
	if s.TempName != "" {
		return s.TempName
	}
	return s.Name
}

// Validate checks names and vdevs without running anything.
func (s PoolSpec) Validate() error {
	var errs []error
	if err := ValidatePoolName(s.Name); err != nil {
		errs = append(errs, fmt.Errorf("pool name: %w", err))
	}
	if s.TempName != "" {
		if err := ValidatePoolName(s.TempName); err != nil {
			errs = append(errs, fmt.Errorf("pool temporary name: %w", err))
		}
	}
	if len(s.Vdevs) == 0 {
		errs = append(errs, errors.New("pool vdevs: none given; name the ZFS partition"))
	}
	if s.AltRoot != "" && !strings.HasPrefix(s.AltRoot, "/") {
		errs = append(errs, fmt.Errorf("pool altroot %q: must be an absolute path", s.AltRoot))
	}
	return errors.Join(errs...)
}

// CreatePoolArgs returns the zpool create argv for s: every option before
// the pool name, properties sorted.
func CreatePoolArgs(s PoolSpec) ([]string, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	args := []string{"zpool", "create"}
	if s.Force {
		args = append(args, "-f")
	}
	if s.TempName != "" && s.TempName != s.Name {
		args = append(args, "-t", s.TempName)
	}
	if s.AltRoot != "" {
		args = append(args, "-R", s.AltRoot)
	}
	args = append(args, propArgs("-o", merge(DefaultPoolProperties(), s.Properties))...)
	args = append(args, propArgs("-O", merge(DefaultFSProperties(), s.FSProperties))...)
	args = append(args, s.Name)
	return append(args, s.Vdevs...), nil
}

// CreatePool creates the pool; it is imported under s.ImportedName().
func (c *Client) CreatePool(ctx context.Context, s PoolSpec) error {
	args, err := CreatePoolArgs(s)
	if err != nil {
		return err
	}
	if _, err := c.cmd(ctx, args...); err != nil {
		return wrap("create pool "+s.Name, err)
	}
	return nil
}

// ImportSpec says how to import a pool.
type ImportSpec struct {
	// Pool is the pool's name or numeric GUID.
	Pool string
	// NewName imports it under another name; with Temporary the new name
	// is not written to disk (zpool import -t).
	NewName   string
	Temporary bool
	// Dirs are searched for devices (-d), e.g. the directory of an image
	// attached as /dev/loop3p2 is /dev, or a directory of image files.
	Dirs []string
	// AltRoot (-R) also implies cachefile=none.
	AltRoot string
	// Mount, when false (the default), imports without mounting (-N).
	Mount bool
	// Force (-f) imports a pool last used by another host.
	Force bool
	// ReadOnly imports with readonly=on.
	ReadOnly bool
}

// ImportedName is the name the pool has once imported.
func (s ImportSpec) ImportedName() string {
	if s.NewName != "" {
		return s.NewName
	}
	return s.Pool
}

// ImportPoolArgs returns the zpool import argv.
func ImportPoolArgs(s ImportSpec) ([]string, error) {
	if s.Pool == "" {
		return nil, errors.New("import pool: no pool name or guid given")
	}
	if s.NewName != "" {
		if err := ValidatePoolName(s.NewName); err != nil {
			return nil, fmt.Errorf("import pool: new name: %w", err)
		}
	}
	if s.Temporary && s.NewName == "" {
		return nil, errors.New("import pool: a temporary import needs a new name")
	}
	args := []string{"zpool", "import"}
	for _, d := range s.Dirs {
		args = append(args, "-d", d)
	}
	if !s.Mount {
		args = append(args, "-N")
	}
	if s.AltRoot != "" {
		args = append(args, "-R", s.AltRoot)
	}
	if s.Force {
		args = append(args, "-f")
	}
	if s.ReadOnly {
		args = append(args, "-o", "readonly=on")
	}
	if s.Temporary {
		args = append(args, "-t")
	}
	args = append(args, s.Pool)
	if s.NewName != "" {
		args = append(args, s.NewName)
	}
	return args, nil
}

// ImportPool imports a pool. Importing a pool that is already imported
// under the wanted name succeeds and does nothing.
func (c *Client) ImportPool(ctx context.Context, s ImportSpec) error {
	args, err := ImportPoolArgs(s)
	if err != nil {
		return err
	}
	if ok, err := c.PoolImported(ctx, s.ImportedName()); err != nil {
		return err
	} else if ok {
		return nil
	}
	if _, err := c.cmd(ctx, args...); err != nil {
		return wrap("import pool "+s.Pool, err)
	}
	return nil
}

// ExportOptions tune ExportPool.
type ExportOptions struct {
	Force bool // -f: unmount busy datasets
}

// ExportPool exports a pool, unmounting its datasets. Exporting a pool
// that is not imported succeeds and does nothing.
func (c *Client) ExportPool(ctx context.Context, name string, opt ExportOptions) error {
	if err := checkArgs("pool", name); err != nil {
		return err
	}
	args := []string{"zpool", "export"}
	if opt.Force {
		args = append(args, "-f")
	}
	if _, err := c.cmd(ctx, append(args, name)...); err != nil {
		err = wrap("export pool "+name, err)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		return err
	}
	return nil
}

// TrimOptions tune TrimPool.
type TrimOptions struct {
	Wait bool // -w: return when every device is trimmed
}

// TrimPool tells the pool's devices which of their blocks are free
// (zpool trim): on a sparse image file attached as a loop device those
// ranges become holes again, so the file, and every conversion of it,
// holds only the pool's live data. A pool whose devices cannot discard
// gives ErrNotSupported.
func (c *Client) TrimPool(ctx context.Context, name string, opt TrimOptions) error {
	if err := checkArgs("pool", name); err != nil {
		return err
	}
	args := []string{"zpool", "trim"}
	if opt.Wait {
		args = append(args, "-w")
	}
	if _, err := c.cmd(ctx, append(args, name)...); err != nil {
		return wrap("trim pool "+name, err)
	}
	return nil
}

// WaitFree waits until the pool has freed in the background what
// destroyed datasets and snapshots held (zpool wait -t free): only then
// is that space free for TrimPool to hand back.
func (c *Client) WaitFree(ctx context.Context, name string) error {
	if err := checkArgs("pool", name); err != nil {
		return err
	}
	if _, err := c.cmd(ctx, "zpool", "wait", "-t", "free", name); err != nil {
		return wrap("wait for pool "+name+" to free", err)
	}
	return nil
}

// DestroyPool destroys a pool and everything in it. Use with care: paczfs
// itself never destroys a pool; this is for tests and tools.
func (c *Client) DestroyPool(ctx context.Context, name string) error {
	if err := checkArgs("pool", name); err != nil {
		return err
	}
	if _, err := c.cmd(ctx, "zpool", "destroy", "-f", name); err != nil {
		return wrap("destroy pool "+name, err)
	}
	return nil
}

// PoolImported reports whether a pool of that name is imported here.
func (c *Client) PoolImported(ctx context.Context, name string) (bool, error) {
	if err := checkArgs("pool", name); err != nil {
		return false, err
	}
	_, err := c.cmd(ctx, "zpool", "list", "-H", "-o", "name", name)
	if err == nil {
		return true, nil
	}
	if err = wrap("list pool "+name, err); errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return false, err
}

// Pools lists the imported pools.
func (c *Client) Pools(ctx context.Context) ([]string, error) {
	out, err := c.cmd(ctx, "zpool", "list", "-H", "-o", "name")
	if err != nil {
		return nil, wrap("list pools", err)
	}
	var names []string
	for _, r := range parseTable(out) {
		names = append(names, r[0])
	}
	return names, nil
}

// PoolProperties reads pool properties (all when none are named), as
// exact values (-p).
func (c *Client) PoolProperties(ctx context.Context, pool string, props ...string) (map[string]Property, error) {
	if err := checkArgs("pool or property", append([]string{pool}, props...)...); err != nil {
		return nil, err
	}
	what := "all"
	if len(props) > 0 {
		what = strings.Join(props, ",")
	}
	out, err := c.cmd(ctx, "zpool", "get", "-H", "-p", "-o", "property,value,source", what, pool)
	if err != nil {
		return nil, wrap("get properties of pool "+pool, err)
	}
	m, err := parseProperties(out)
	if err != nil {
		return nil, fmt.Errorf("properties of pool %s: %w", pool, err)
	}
	return m, nil
}

// SetPoolProperty sets one pool property, e.g. bootfs.
func (c *Client) SetPoolProperty(ctx context.Context, pool, prop, value string) error {
	if err := checkArgs("pool or property", pool, prop); err != nil {
		return err
	}
	if _, err := c.cmd(ctx, "zpool", "set", prop+"="+value, pool); err != nil {
		return wrap(fmt.Sprintf("set %s on pool %s", prop, pool), err)
	}
	return nil
}

// PoolStatus returns `zpool status -P` for a pool, for logs and reports.
func (c *Client) PoolStatus(ctx context.Context, pool string) (string, error) {
	if err := checkArgs("pool", pool); err != nil {
		return "", err
	}
	out, err := c.cmd(ctx, "zpool", "status", "-P", pool)
	if err != nil {
		return "", wrap("status of pool "+pool, err)
	}
	return string(out), nil
}

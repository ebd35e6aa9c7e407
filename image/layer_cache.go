package image

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"

	"github.com/paczfs/paczfs/hooks"
	"github.com/paczfs/paczfs/pacman"
	"github.com/paczfs/paczfs/zfs"
)

// This file is the layer cache (Config.CacheDir/layers): the base and
// bootable layers kept as the root dataset's send streams (the base's
// full, the bootable's incremental from base) and archives of what each
// install wrote to the other mounted datasets, under the SHA-256 of a key
// document listing what the layer is made from. A build whose layers
// would be made from the same receives the streams instead of installing
// (in a 327 s lab rebuild, the base install took 72-79 s and the bootable
// one 98-113 s).
//
// The keys are known before anything is written: the resolved package
// set (name, version, file and the sync database's SHA-256 of each: a
// package rebuilt at the same version differs), the settings of pacman
// that change what an install writes, the dataset layout with its
// properties and the pool's file system properties, and the keys of the
// hooks.Keyed hooks up to the layer's stage. The bootable layer's key
// also holds the base's, the hostid and boot.initramfs_files (written
// before its install) and boot.initramfs_stubs (stubbed during it). Other hooks, an encrypted root, a random hostid
// (for the bootable layer) and builds derived from a release turn it off.
//
// The pacman keyring is never in a layer's stream: it is random per build
// and holds its master key. The build takes it out of the root around the
// snapshots the streams are sent from (base, and the bootable packages'
// own), so base holds no keyring (like Arch's bootstrap root: run
// pacman-key --init in a container made from it) and the environments,
// snapshotted later, hold this build's own.
//
// A damaged entry (a missing or changed file) is removed and the layer
// installed; so is a stream the kernel refuses. Entries are written to a
// .new-* directory and renamed into place.

// layerCacheFormat is the key document's first line.
const layerCacheFormat = "paczfs layer cache 2"

// bootablePackagesSnap is the snapshot of the root after the bootable
// packages: the bootable entry's stream ends there. It never stays.
const bootablePackagesSnap = "paczfs-bootable-packages"

// layerManifest is an entry's manifest.json.
type layerManifest struct {
	StreamSize int64 `json:"stream_size"`
	// GUID is the snapshot the stream ends at; From the one an
	// incremental stream starts from (the base entry's GUID).
	GUID     string                  `json:"guid"`
	From     string                  `json:"from,omitempty"`
	Data     []layerData             `json:"data"`
	Packages []pacman.PlannedPackage `json:"packages"`

	// files are the entry's stream and archives by name, opened when
	// the build looked the entry up: an entry pruned meanwhile
	// (PruneCache, or another build's prune) stays readable to the build
	// that chose it. Closed when the build ends.
	files map[string]*os.File
}

// reader reads the entry's file name (its stream or an archive) from the
// start, through the handle opened by lookup.
func (m *layerManifest) reader(name string) (io.Reader, error) {
	f, ok := m.files[name]
	if !ok {
		return nil, fmt.Errorf("%s: %w", name, fs.ErrClosed)
	}
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	return io.NewSectionReader(f, 0, fi.Size()), nil
}

// close closes the files lookup opened; m is nil-safe.
func (m *layerManifest) close() {
	if m == nil {
		return
	}
	for _, f := range m.files {
		f.Close()
	}
	m.files = nil
}

// layerData is one dataset's archive in an entry.
type layerData struct {
	Dataset string `json:"dataset"` // relative to the pool
	File    string `json:"file"`
	SHA256  string `json:"sha256"`
}

// layerEntry is one layer's key and, on a hit, its entry's manifest.
type layerEntry struct {
	layer string
	key   []byte
	// plan is the resolved set the key was made from (the bootable's
	// includes the base's): what the build installed must be it, or the
	// layer is not stored (the repositories changed since the checks).
	plan *pacman.Plan
	hit  *layerManifest
}

type layerCache struct {
	dir      string // Config.CacheDir/layers
	log      *slog.Logger
	base     *layerEntry
	bootable *layerEntry // nil: the bootable layer is not cached
	// received: the root came from the base entry (stageDatasets).
	received bool
	// baseGUID is this build's base snapshot once it is the base entry's
	// (received, or stored by this build): the bootable entry chains on it.
	baseGUID string
	// keep: a dry run, which removes no damaged entry.
	keep bool
}

// planLayerCache decides, in the checks stage, which layers come from the
// cache: st.layers is nil when there is no cache, an entry's hit nil on a
// miss. A cache that cannot be read warns and the build goes on.
func (st *build) planLayerCache(ctx context.Context) {
	if st.cfg.CacheDir == "" || st.previous != nil {
		return
	}
	keys, unkeyed := st.b.hooksThrough(hooks.StageBase)
	switch {
	case len(unkeyed) > 0:
		st.b.log.Info("layer cache not used", "why", "hooks without a cache key (hooks.Keyed) run at or before the base stage: "+strings.Join(unkeyed, ", "))
		return
	case st.cfg.Encryption.Root:
		st.b.log.Info("layer cache not used", "why", "the root is encrypted")
		return
	}
	for _, d := range st.cfg.Datasets {
		if mp := filepath.Clean(d.Props["mountpoint"]); d.Name != st.cfg.RootDataset && filepath.IsAbs(mp) && mp != "/" &&
			strings.HasPrefix("/"+keyringDir+"/", mp+"/") {
			st.b.log.Info("layer cache not used", "why", "dataset "+d.Name+" is mounted at "+mp+": its archive would hold the keyring")
			return
		}
	}
	c := &layerCache{dir: filepath.Join(st.cfg.CacheDir, "layers"), log: st.b.log, keep: st.dryRun}
	for _, d := range []string{st.cfg.CacheDir, c.dir} {
		if err := checkCacheDir(d); err != nil && !errors.Is(err, fs.ErrNotExist) {
			st.warn("layer cache not used: cache_dir: %v", err)
			return
		}
	}
	plan, err := st.b.installer.Plan(ctx, st.cfg.Packages.Base)
	if err != nil {
		st.warn("layer cache not used: %v", err)
		return
	}
	before, rootSpec, after := st.splitLayout()
	others := slices.Concat(before, after)
	c.base = &layerEntry{layer: LayerBase, plan: plan,
		key: layerKey(LayerBase, st.cfg.Packages.Base, rootSpec, others, st.cfg.FSProperties, st.cfg.Pacman, plan, keys)}
	c.base.hit = c.lookup(c.base)
	st.layers = c
	st.stack.Push("close the layer cache entries", func(context.Context) error { c.close(); return nil })
	if c.base.hit != nil {
		st.usedCacheEntry(c.entry(c.base))
		st.b.log.Info("layer cache: the base layer will be received", "entry", c.entry(c.base))
	}

	bkeys, bunkeyed := st.b.hooksThrough(hooks.StageBootable)
	switch {
	case len(bunkeyed) > 0:
		st.b.log.Info("layer cache: the bootable layer is not cached", "why", "hooks without a cache key (hooks.Keyed) run at or before the bootable stage: "+strings.Join(bunkeyed, ", "))
		return
	case st.cfg.System.HostID == "":
		st.b.log.Info("layer cache: the bootable layer is not cached", "why", "system.hostid is empty, so each build makes its own /etc/hostid before that layer")
		return
	}
	bplan, err := st.b.installer.Plan(ctx, slices.Concat(st.cfg.Packages.Base, st.bootablePackages()))
	if err != nil {
		st.warn("layer cache: the bootable layer is not cached: %v", err)
		return
	}
	c.bootable = &layerEntry{layer: LayerBootable, plan: bplan, key: bootableKey(c.base.key,
		layerKey(LayerBootable, st.bootablePackages(), rootSpec, others, st.cfg.FSProperties, st.cfg.Pacman, bplan, bkeys),
		st.cfg.System.HostID, st.cfg.Boot.InitramfsFiles, st.cfg.Boot.InitramfsStubs)}
	if c.base.hit == nil {
		return
	}
	if m := c.lookup(c.bootable); m != nil && m.From == c.base.hit.GUID {
		c.bootable.hit = m
		st.usedCacheEntry(c.entry(c.bootable))
		st.b.log.Info("layer cache: the bootable layer will be received", "entry", c.entry(c.bootable))
	} else if m != nil {
		m.close()
		st.b.log.Info("layer cache: the bootable entry follows another base entry; it will be replaced", "entry", c.entry(c.bootable))
	}
}

// close closes the files of the entries the build chose.
func (c *layerCache) close() {
	for _, e := range []*layerEntry{c.base, c.bootable} {
		if e != nil {
			e.hit.close()
		}
	}
}

// builderVersion names the paczfs that builds: what a layer's stages write
// besides the packages is its code, so another version misses. The
// module's version when paczfs is a dependency (with its checksum), the
// VCS revision when it is the main module and known, and Version.
func builderVersion() string {
	v := "paczfs " + Version
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return v
	}
	const path = "github.com/paczfs/paczfs"
	if bi.Main.Path == path {
		v += " " + bi.Main.Version
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" || s.Key == "vcs.modified" {
				v += " " + s.Key + "=" + s.Value
			}
		}
	}
	for _, d := range bi.Deps {
		if d.Path == path {
			v += " " + d.Version + " " + d.Sum
		}
	}
	return v
}

// bootableKey is the bootable layer's key document: its own layerKey,
// the base's key (its stream starts from the base's), and what the build
// writes before the bootable install (the hostid, boot.initramfs_files)
// and the generators stubbed during it (boot.initramfs_stubs, in any
// order).
func bootableKey(baseKey, own []byte, hostID string, initramfsFiles map[string]string, stubs []string) []byte {
	b := bytes.NewBuffer(slices.Clone(own))
	fmt.Fprintf(b, "after %s\nhostid %q\n", sha256Hex(baseKey), hostID)
	for _, name := range sortedKeys(initramfsFiles) {
		fmt.Fprintf(b, "initramfs-file %q %s\n", name, sha256Hex([]byte(initramfsFiles[name])))
	}
	// What the layer's hooks wrote differs with them (the initramfs a
	// stubbed generator did not build).
	sorted := slices.Clone(stubs)
	slices.Sort(sorted)
	for _, name := range slices.Compact(sorted) {
		fmt.Fprintf(b, "initramfs-stub %q\n", name)
	}
	return b.Bytes()
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// layerKey is the key document of a layer made from plan on the layout.
// requested are the names the layer's install asks for: pacman records
// which packages were asked for and which came as dependencies.
func layerKey(layer string, requested []string, root zfs.DatasetSpec, others []zfs.DatasetSpec, fsProps map[string]string, pc pacman.Config, plan *pacman.Plan, hookKeys []string) []byte {
	var b bytes.Buffer
	props := func(m map[string]string) string {
		var out []string
		for _, k := range sortedKeys(m) {
			out = append(out, fmt.Sprintf("%s=%q", k, m[k]))
		}
		return strings.Join(out, " ")
	}
	fmt.Fprintf(&b, "%s\nbuilder %s\nlayer %s\n", layerCacheFormat, builderVersion(), layer)
	names := slices.Sorted(slices.Values(requested))
	fmt.Fprintf(&b, "requested %q\n", names)
	fmt.Fprintf(&b, "root %q %s\n", root.Name, props(root.Props))
	for _, d := range others {
		fmt.Fprintf(&b, "dataset %q %s\n", d.Name, props(d.Props))
	}
	fmt.Fprintf(&b, "fs %s\n", props(fsProps))
	var repos []string
	for _, r := range pc.Repos {
		repos = append(repos, r.Name)
	}
	fmt.Fprintf(&b, "pacman arch=%q repos=%q ignore=%q noextract=%q target-cache=%t\n",
		pc.Architecture, repos, pc.IgnorePkgs, pc.NoExtract, len(pc.CacheDirs) == 0)
	pkgs := slices.Clone(plan.Packages)
	slices.SortFunc(pkgs, func(a, b pacman.PlannedPackage) int { return strings.Compare(a.Name, b.Name) })
	for _, p := range pkgs {
		fmt.Fprintf(&b, "package %q %q %q %q %q\n", p.Name, p.Version, p.Repo, p.Filename, p.SHA256)
	}
	for _, h := range hookKeys {
		fmt.Fprintln(&b, h)
	}
	return b.Bytes()
}

// entry is e's directory.
func (c *layerCache) entry(e *layerEntry) string {
	return filepath.Join(c.dir, sha256Hex(e.key))
}

// lookup returns e's entry's manifest when the entry is whole: its key,
// its stream of the recorded size, every archive with its checksum. The
// stream and archives stay open (layerManifest.files) until closed. A
// damaged entry is removed.
func (c *layerCache) lookup(e *layerEntry) *layerManifest {
	dir := c.entry(e)
	if _, err := os.Lstat(dir); err != nil {
		return nil
	}
	m := &layerManifest{}
	bad := func(why string) *layerManifest {
		m.close()
		c.damaged(e, why)
		return nil
	}
	key, err := os.ReadFile(filepath.Join(dir, "key"))
	if err != nil || !bytes.Equal(key, e.key) {
		return bad("its key is missing or is another")
	}
	data, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		return bad("no manifest")
	}
	if err := json.Unmarshal(data, m); err != nil {
		return bad("its manifest does not parse")
	}
	m.files = map[string]*os.File{}
	open := func(name string) (*os.File, error) {
		if _, dup := m.files[name]; dup {
			return nil, fmt.Errorf("%s is named twice", name)
		}
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		m.files[name] = f
		return f, nil
	}
	f, err := open("stream")
	if err != nil {
		return bad("its stream is missing")
	}
	if fi, err := f.Stat(); err != nil || fi.Size() != m.StreamSize {
		return bad("its stream is not of the recorded size")
	}
	for _, d := range m.Data {
		f, err := open(filepath.Base(d.File))
		if err != nil {
			return bad("an archive is missing")
		}
		sum, err := readerSHA256(f)
		if err != nil || sum != d.SHA256 {
			return bad("an archive does not match its checksum")
		}
	}
	if c.keep {
		// A dry run reads nothing more.
		m.close()
	}
	return m
}

// damaged removes e's entry (not in a dry run).
func (c *layerCache) damaged(e *layerEntry, why string) {
	if c.keep {
		c.log.Warn("layer cache: a damaged entry (left for the build to remove)", "layer", e.layer, "entry", c.entry(e), "why", why)
		return
	}
	c.log.Warn("layer cache: a damaged entry was removed", "layer", e.layer, "entry", c.entry(e), "why", why)
	if err := os.RemoveAll(c.entry(e)); err != nil {
		c.log.Warn("layer cache: remove the damaged entry", "err", err)
	}
}

// splitLayout returns the layout's ancestors of the root dataset, the
// root's own spec, and the other datasets, in layout order.
func (st *build) splitLayout() (before []zfs.DatasetSpec, root zfs.DatasetSpec, after []zfs.DatasetSpec) {
	rootRel := st.cfg.RootDataset
	for _, d := range st.cfg.Datasets {
		switch {
		case d.Name == rootRel:
			root = d
		case strings.HasPrefix(rootRel, d.Name+"/"):
			before = append(before, d)
		default:
			after = append(after, d)
		}
	}
	return before, root, after
}

// makeRootParent creates the root's ancestors (those of the layout with
// their properties, then any other) before a stream is received as the
// root.
func (st *build) makeRootParent(ctx context.Context, before []zfs.DatasetSpec) error {
	z := st.zfs()
	if err := st.createDatasets(ctx, before); err != nil {
		return err
	}
	parent := st.state.RootDataset[:strings.LastIndex(st.state.RootDataset, "/")]
	if ok, err := z.Exists(ctx, parent); err != nil {
		return err
	} else if !ok {
		return z.CreateDataset(ctx, parent, nil, zfs.CreateOptions{Parents: true})
	}
	return nil
}

// receiveCachedBase makes the root from the base entry's stream, as a
// build derived from a release does from its full stream, and reports
// whether it did. A stream the kernel refuses (ZFS then keeps nothing of
// it) removes the entry: the caller creates the root and installs.
func (st *build) receiveCachedBase(ctx context.Context) (bool, error) {
	c := st.layers
	z := st.zfs()
	before, rootSpec, after := st.splitLayout()
	if err := st.makeRootParent(ctx, before); err != nil {
		return false, err
	}
	err := st.receiveEntry(ctx, c.base, st.state.RootDataset+"@"+LayerBase, zfs.ReceiveOptions{Props: maps.Clone(rootSpec.Props)})
	if err != nil {
		if ctx.Err() != nil {
			return false, err
		}
		if ok, eerr := z.Exists(ctx, st.state.RootDataset); eerr != nil || ok {
			return false, fmt.Errorf("layer cache: receiving the base layer failed and left %s: %w", st.state.RootDataset, errors.Join(err, eerr))
		}
		st.warn("layer cache: receiving the base layer failed (%v); installing it", err)
		c.damaged(c.base, "its stream was refused")
		c.base.hit.close()
		c.base.hit = nil
		if c.bootable != nil {
			c.bootable.hit.close()
			c.bootable.hit = nil
		}
		return false, nil
	}
	c.received = true
	c.baseGUID = c.base.hit.GUID
	if err := z.Mount(ctx, st.state.RootDataset); err != nil {
		return true, err
	}
	return true, st.createDatasets(ctx, after)
}

// receiveEntry receives e's stream into target.
func (st *build) receiveEntry(ctx context.Context, e *layerEntry, target string, o zfs.ReceiveOptions) error {
	r, err := e.hit.reader("stream")
	if err != nil {
		return fmt.Errorf("layer cache entry %s: %w", st.layers.entry(e), err)
	}
	return st.zfs().Receive(ctx, bufio.NewReaderSize(r, 1<<20), target, o)
}

// dataDatasets returns the layout's datasets other than the root and its
// ancestors that are mounted in the target, with their mount points.
func (st *build) dataDatasets(ctx context.Context) ([]layerData, map[string]string, error) {
	z := st.zfs()
	_, _, after := st.splitLayout()
	var out []layerData
	dirs := map[string]string{}
	for i, d := range after {
		name := st.state.Pool + "/" + d.Name
		p, err := z.Properties(ctx, name, "mounted", "mountpoint")
		if err != nil {
			return nil, nil, err
		}
		if p["mounted"].Value != "yes" {
			continue
		}
		out = append(out, layerData{Dataset: d.Name, File: fmt.Sprintf("data-%d.tar", i)})
		dirs[d.Name] = p["mountpoint"].Value
	}
	return out, dirs, nil
}

// takeCachedBase finishes a base layer received from the cache: the
// archives go into the other datasets (unless the bootable entry's, which
// hold their state after both layers, will), the packages are recorded.
func (st *build) takeCachedBase(ctx context.Context) error {
	c := st.layers
	if c.bootable == nil || c.bootable.hit == nil {
		if err := st.extractArchives(ctx, c.base); err != nil {
			return err
		}
	}
	st.packages = append(st.packages, c.base.hit.Packages...)
	st.res.LayersReused = append(st.res.LayersReused, LayerBase)
	return nil
}

// extractArchives writes e's archives into the datasets they were taken
// from, freshly made by this build.
func (st *build) extractArchives(ctx context.Context, e *layerEntry) error {
	c := st.layers
	_, dirs, err := st.dataDatasets(ctx)
	if err != nil {
		return err
	}
	for _, d := range e.hit.Data {
		dir, ok := dirs[d.Dataset]
		if !ok {
			return fmt.Errorf("layer cache entry %s: dataset %s is not mounted in the target", c.entry(e), d.Dataset)
		}
		r, err := e.hit.reader(filepath.Base(d.File))
		if err != nil {
			return fmt.Errorf("layer cache entry %s: %w", c.entry(e), err)
		}
		if err := extractTree(bufio.NewReader(r), dir); err != nil {
			return fmt.Errorf("layer cache entry %s: extract into %s: %w", c.entry(e), d.Dataset, err)
		}
	}
	return nil
}

// snapshotBase takes the base snapshot without the keyring (a received
// one is only held), and stores the layer on a miss.
func (st *build) snapshotBase(ctx context.Context, installed []pacman.PlannedPackage) error {
	c := st.layers
	if c != nil && c.received {
		return st.zfs().Hold(ctx, st.cfg.HoldTag, st.state.RootDataset+"@"+LayerBase, zfs.HoldOptions{})
	}
	if err := st.withoutKeyring(func() error { return st.layerSnapshot(ctx, LayerBase) }); err != nil {
		return err
	}
	if c == nil {
		return nil
	}
	guid, err := st.storeEntry(ctx, c.base, st.state.RootDataset+"@"+LayerBase, "", installed, st.packages)
	if err != nil {
		st.warn("layer cache: the base layer was not stored: %v", err)
		return nil
	}
	c.baseGUID = guid
	c.log.Info("layer cache: the base layer was stored", "entry", c.entry(c.base))
	return nil
}

// receiveCachedBootable brings the root from base to the bootable
// packages with the bootable entry's incremental stream, and reports
// whether it did. The keyring (this build's, made by the pacman stage) is
// taken out while the stream is received (-F rolls the root back to
// base, which has none) and put back. A refused stream removes the entry;
// the caller installs.
func (st *build) receiveCachedBootable(ctx context.Context) (bool, error) {
	c := st.layers
	e := c.bootable
	snap := st.state.RootDataset + "@" + bootablePackagesSnap
	var rerr error
	err := st.withoutKeyring(func() error {
		rerr = st.receiveEntry(ctx, e, snap, zfs.ReceiveOptions{Force: true})
		return nil
	})
	if err != nil {
		return rerr == nil, errors.Join(rerr, err)
	}
	if rerr != nil {
		if ctx.Err() != nil {
			return false, rerr
		}
		st.warn("layer cache: receiving the bootable layer failed (%v); installing it", rerr)
		c.damaged(e, "its stream was refused")
		e.hit.close()
		e.hit = nil
		return false, st.extractArchives(ctx, c.base)
	}
	if err := st.zfs().Destroy(ctx, snap, zfs.DestroyOptions{}); err != nil {
		return true, err
	}
	if err := st.extractArchives(ctx, e); err != nil {
		return true, err
	}
	// Unchanged files are left alone; st.hostID is set.
	if err := st.beforeBootable(); err != nil {
		return true, err
	}
	st.packages = append(st.packages, e.hit.Packages...)
	st.res.LayersReused = append(st.res.LayersReused, LayerBootable)
	return true, nil
}

// storeBootable stores the bootable packages just installed, as a stream
// from this build's base (when it is the base entry's) to a snapshot of
// their own, taken without the keyring and destroyed after.
func (st *build) storeBootable(ctx context.Context, installed []pacman.PlannedPackage) error {
	c := st.layers
	if c == nil || c.bootable == nil || c.baseGUID == "" {
		return nil
	}
	z := st.zfs()
	snap := st.state.RootDataset + "@" + bootablePackagesSnap
	if err := st.withoutKeyring(func() error { return z.Snapshot(ctx, zfs.SnapshotOptions{}, snap) }); err != nil {
		return err
	}
	_, err := st.storeEntry(ctx, c.bootable, snap, st.state.RootDataset+"@"+LayerBase, installed, st.packages)
	if err != nil {
		st.warn("layer cache: the bootable layer was not stored: %v", err)
	} else {
		c.log.Info("layer cache: the bootable layer was stored", "entry", c.entry(c.bootable))
	}
	return z.Destroy(ctx, snap, zfs.DestroyOptions{})
}

// withoutKeyring runs fn with the target's pacman keyring taken out of
// the root (kept in memory, its gpg-agent's sockets left out) and puts
// it back whatever fn returns.
func (st *build) withoutKeyring(fn func() error) error {
	root := st.state.Root
	dir := filepath.Join(root, keyringDir)
	if _, err := os.Lstat(dir); errors.Is(err, fs.ErrNotExist) {
		return fn()
	}
	var saved bytes.Buffer
	if err := archiveTree(&saved, dir, true); err != nil {
		return fmt.Errorf("take the keyring out of the layer: %w", err)
	}
	if err := removeInRoot(root, keyringDir); err != nil {
		err = fmt.Errorf("take the keyring out of the layer: %w", err)
		if rerr := restoreTree(root, keyringDir, saved.Bytes()); rerr != nil {
			err = errors.Join(err, fmt.Errorf("put the keyring back: %w", rerr))
		}
		return err
	}
	err := fn()
	if rerr := restoreTree(root, keyringDir, saved.Bytes()); rerr != nil {
		err = errors.Join(err, fmt.Errorf("put the keyring back: %w", rerr))
	}
	return err
}

// restoreTree extracts archive into rel, a directory in root (made when
// missing).
func restoreTree(root, rel string, archive []byte) error {
	r, err := os.OpenRoot(root)
	if err != nil {
		return err
	}
	defer r.Close()
	if err := mkdirReplacing(r, rel); err != nil {
		return err
	}
	sub, err := r.OpenRoot(rel)
	if err != nil {
		return err
	}
	defer sub.Close()
	return extractInto(sub, bytes.NewReader(archive))
}

// storeEntry stores e: the stream of snap (incremental from from, when
// set), the archives of the other datasets, the packages installed. It
// returns the GUID of snap. Nothing is stored unless the packages in the
// root (all) are the plan e's key was made from. An entry already there
// is kept when it starts where this one would; one that follows another
// base is replaced.
func (st *build) storeEntry(ctx context.Context, e *layerEntry, snap, from string, installed, all []pacman.PlannedPackage) (guid string, err error) {
	c := st.layers
	defer func() {
		if err != nil {
			err = fmt.Errorf("%s: %w", c.entry(e), err)
		}
	}()
	if why := samePackages(e.plan, all); why != "" {
		return "", fmt.Errorf("the repositories changed since the checks: %s", why)
	}
	z := st.zfs()
	guidOf := func(s string) (string, error) {
		p, err := z.Properties(ctx, s, "guid")
		if err != nil {
			return "", err
		}
		return p["guid"].Value, nil
	}
	m := layerManifest{Packages: installed}
	if m.GUID, err = guidOf(snap); err != nil {
		return "", err
	}
	if from != "" {
		if m.From, err = guidOf(from); err != nil {
			return "", err
		}
	}
	if err := os.MkdirAll(c.dir, 0o700); err != nil {
		return "", err
	}
	for _, d := range []string{filepath.Dir(c.dir), c.dir} {
		if err := checkCacheDir(d); err != nil {
			return "", err
		}
	}
	if have := c.lookup(e); have != nil {
		have.close()
		if have.From == m.From {
			return "", errors.New("another build stored it first")
		}
		if err := os.RemoveAll(c.entry(e)); err != nil {
			return "", err
		}
	}
	removeStale(c.dir, c.log)
	tmp, err := os.MkdirTemp(c.dir, ".new-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp) // gone once renamed
	data, dirs, err := st.dataDatasets(ctx)
	if err != nil {
		return "", err
	}
	for _, d := range data {
		var werr error
		d.SHA256, werr = writeArchive(filepath.Join(tmp, d.File), dirs[d.Dataset])
		if werr != nil {
			return "", fmt.Errorf("%s: %w", d.Dataset, werr)
		}
		m.Data = append(m.Data, d)
	}
	f, err := os.OpenFile(filepath.Join(tmp, "stream"), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	err = z.Send(ctx, w, snap, zfs.SendOptions{From: from, Compressed: true, LargeBlocks: true, Embedded: true})
	if err == nil {
		err = w.Flush()
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", err
	}
	fi, err := os.Stat(filepath.Join(tmp, "stream"))
	if err != nil {
		return "", err
	}
	m.StreamSize = fi.Size()
	js, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return "", err
	}
	if err := writeSynced(filepath.Join(tmp, "manifest.json"), js); err != nil {
		return "", err
	}
	if err := writeSynced(filepath.Join(tmp, "key"), e.key); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, c.entry(e)); err != nil {
		if errors.Is(err, fs.ErrExist) || errors.Is(err, syscall.ENOTEMPTY) {
			return "", errors.New("another build stored it first")
		}
		return "", err
	}
	// The rename itself survives a crash once the directory is synced.
	_ = syncFile(c.dir)
	st.usedCacheEntry(c.entry(e))
	return m.GUID, nil
}

// samePackages reports how the packages installed (all) differ from plan
// ("" when they are the same set: name, version and checksum).
func samePackages(plan *pacman.Plan, all []pacman.PlannedPackage) string {
	id := func(p pacman.PlannedPackage) string { return p.Name + " " + p.Version + " " + p.SHA256 }
	want := map[string]bool{}
	for _, p := range plan.Packages {
		want[id(p)] = true
	}
	have := map[string]bool{}
	for _, p := range all {
		have[id(p)] = true
		if !want[id(p)] {
			return "installed " + p.Name + " " + p.Version + ", planned otherwise"
		}
	}
	for _, p := range plan.Packages {
		if !have[id(p)] {
			return "planned " + p.Name + " " + p.Version + ", not installed"
		}
	}
	return ""
}

// writeArchive archives dir into the new file p and returns its SHA-256.
func writeArchive(p, dir string) (string, error) {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", err
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(archiveTree(pw, dir, false)) }()
	sum, err := copyTo(f, pr, 0o600)
	pr.CloseWithError(err)
	return sum, err
}

// removeInRoot removes rel and what it holds inside root, never through
// a link that leads out of root.
func removeInRoot(root, rel string) error {
	r, err := os.OpenRoot(root)
	if err != nil {
		return err
	}
	defer r.Close()
	return r.RemoveAll(rel)
}

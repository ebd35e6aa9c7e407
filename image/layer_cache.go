package image

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/paczfs/paczfs/hooks"
	"github.com/paczfs/paczfs/pacman"
	"github.com/paczfs/paczfs/zfs"
)

// This file is the layer cache (Config.CacheDir/layers): the base layer
// kept as the root dataset's send stream and archives of what its install
// wrote to the other mounted datasets, under the SHA-256 of a key
// document listing what the layer is made from. A build whose base layer
// would be made from the same receives the stream instead of installing
// (the base install took 72-79 s of a 327 s lab rebuild).
//
// The key is known before anything is written: the resolved package set
// of packages.base (name, version, file and the sync database's SHA-256
// of each: a package rebuilt at the same version differs), the settings
// of pacman that change what an install writes, the dataset layout with
// its properties and the pool's file system properties, and the keys of
// the hooks.Keyed hooks at or before the base stage. Other hooks there,
// an encrypted root and a build derived from a release turn it off.
//
// The pacman keyring is in the stream (it is made before the base layer
// and checks its packages), and it is random per build: on a hit the
// received keyring is removed and a fresh one made, the stream is
// received under a snapshot of its own (paczfs-layer-cache), and the
// base snapshot is taken after the fresh keyring, so no image shares a
// master key with the build that stored the entry. The received snapshot
// is then destroyed.
//
// A damaged entry (a missing or changed file) is removed and the layer
// installed; a stream the kernel refuses is removed the same way. Entries
// are written to a .new-* directory and renamed into place.

// layerCacheFormat is the key document's first line.
const layerCacheFormat = "paczfs layer cache 1"

// layerCacheSnap is the snapshot a cached stream is received as, until
// the base snapshot is taken.
const layerCacheSnap = "paczfs-layer-cache"

// layerManifest is an entry's manifest.json.
type layerManifest struct {
	StreamSize int64                   `json:"stream_size"`
	Data       []layerData             `json:"data"`
	Packages   []pacman.PlannedPackage `json:"packages"`
}

// layerData is one dataset's archive in an entry.
type layerData struct {
	Dataset string `json:"dataset"` // relative to the pool
	File    string `json:"file"`
	SHA256  string `json:"sha256"`
}

type layerCache struct {
	dir string // Config.CacheDir/layers
	log *slog.Logger
	key []byte
	// hit is the entry to take; nil: install and store.
	hit *layerManifest
	// received: the root came from the entry (stageDatasets).
	received bool
}

// planLayerCache decides, in the checks stage, whether the base layer
// comes from the cache: st.layers is nil when there is no cache, its hit
// nil on a miss. A cache that cannot be read warns and the build goes on.
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
	c := &layerCache{dir: filepath.Join(st.cfg.CacheDir, "layers"), log: st.b.log}
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
	c.key = layerKey(LayerBase, rootSpec, append(before, after...), st.cfg.FSProperties, st.cfg.Pacman, plan, keys)
	c.hit = c.lookup()
	st.layers = c
	if c.hit != nil {
		st.b.log.Info("layer cache: the base layer will be received", "entry", c.entry())
	}
}

// layerKey is the key document of a layer made from plan on the layout.
func layerKey(layer string, root zfs.DatasetSpec, others []zfs.DatasetSpec, fsProps map[string]string, pc pacman.Config, plan *pacman.Plan, hookKeys []string) []byte {
	var b bytes.Buffer
	props := func(m map[string]string) string {
		var out []string
		for _, k := range sortedKeys(m) {
			out = append(out, fmt.Sprintf("%s=%q", k, m[k]))
		}
		return strings.Join(out, " ")
	}
	fmt.Fprintf(&b, "%s\nlayer %s\n", layerCacheFormat, layer)
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

// entry is the key's directory.
func (c *layerCache) entry() string {
	return (&initramfsCache{dir: c.dir}).entry(c.key)
}

// lookup returns the entry's manifest when the entry is whole: its key,
// its stream of the recorded size, every archive with its checksum. A
// damaged entry is removed.
func (c *layerCache) lookup() *layerManifest {
	dir := c.entry()
	if _, err := os.Lstat(dir); err != nil {
		return nil
	}
	bad := func(why string) *layerManifest {
		c.damaged(why)
		return nil
	}
	key, err := os.ReadFile(filepath.Join(dir, "key"))
	if err != nil || !bytes.Equal(key, c.key) {
		return bad("its key is missing or is another")
	}
	data, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		return bad("no manifest")
	}
	var m layerManifest
	if err := json.Unmarshal(data, &m); err != nil {
		return bad("its manifest does not parse")
	}
	if fi, err := os.Stat(filepath.Join(dir, "stream")); err != nil || fi.Size() != m.StreamSize {
		return bad("its stream is missing or not of the recorded size")
	}
	for _, d := range m.Data {
		f, err := os.Open(filepath.Join(dir, filepath.Base(d.File)))
		if err != nil {
			return bad("an archive is missing")
		}
		sum, err := readerSHA256(f)
		f.Close()
		if err != nil || sum != d.SHA256 {
			return bad("an archive does not match its checksum")
		}
	}
	return &m
}

// damaged removes the entry.
func (c *layerCache) damaged(why string) {
	c.log.Warn("layer cache: a damaged entry was removed", "entry", c.entry(), "why", why)
	if err := os.RemoveAll(c.entry()); err != nil {
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

// receiveCachedBase makes the root from the entry's stream, as a build
// derived from a release does from its full stream, and reports whether
// it did. A stream the kernel refuses (ZFS then keeps nothing of it)
// removes the entry: the caller creates the root and installs.
func (st *build) receiveCachedBase(ctx context.Context) (bool, error) {
	c := st.layers
	z := st.zfs()
	before, rootSpec, after := st.splitLayout()
	if err := st.makeRootParent(ctx, before); err != nil {
		return false, err
	}
	f, err := os.Open(filepath.Join(c.entry(), "stream"))
	if err != nil {
		st.warn("layer cache: %v; installing the base layer", err)
		c.damaged("its stream cannot be read")
		c.hit = nil
		return false, nil
	}
	defer f.Close()
	err = z.Receive(ctx, bufio.NewReaderSize(f, 1<<20), st.state.RootDataset+"@"+layerCacheSnap,
		zfs.ReceiveOptions{Props: maps.Clone(rootSpec.Props)})
	if err != nil {
		if ctx.Err() != nil {
			return false, err
		}
		st.warn("layer cache: receiving the base layer failed (%v); installing it", err)
		c.damaged("its stream was refused")
		c.hit = nil
		return false, nil
	}
	c.received = true
	if err := z.Mount(ctx, st.state.RootDataset); err != nil {
		return true, err
	}
	return true, st.createDatasets(ctx, after)
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

// takeCachedBase finishes a base layer received from the cache: a fresh
// keyring was made by the pacman stage; the archives go into the other
// datasets; the packages are recorded as installed.
func (st *build) takeCachedBase(ctx context.Context) error {
	c := st.layers
	_, dirs, err := st.dataDatasets(ctx)
	if err != nil {
		return err
	}
	for _, d := range c.hit.Data {
		dir, ok := dirs[d.Dataset]
		if !ok {
			return fmt.Errorf("layer cache entry %s: dataset %s is not mounted in the target", c.entry(), d.Dataset)
		}
		f, err := os.Open(filepath.Join(c.entry(), filepath.Base(d.File)))
		if err != nil {
			return fmt.Errorf("layer cache entry %s: %w", c.entry(), err)
		}
		err = extractTree(bufio.NewReader(f), dir)
		f.Close()
		if err != nil {
			c.damaged("an archive could not be extracted")
			return fmt.Errorf("layer cache entry %s: %s: %w", c.entry(), d.Dataset, err)
		}
	}
	st.packages = append(st.packages, c.hit.Packages...)
	st.res.LayersReused = append(st.res.LayersReused, LayerBase)
	return nil
}

// dropCacheSnapshot destroys the snapshot the stream was received as,
// once the base snapshot holds the layer with its fresh keyring.
func (st *build) dropCacheSnapshot(ctx context.Context) error {
	return st.zfs().Destroy(ctx, st.state.RootDataset+"@"+layerCacheSnap, zfs.DestroyOptions{})
}

// storeBase stores the base layer just snapshotted: the root's stream
// from that snapshot, the archives of the other datasets, the packages.
// A failure warns: the cache is an optimisation.
func (st *build) storeBase(ctx context.Context, installed []pacman.PlannedPackage) {
	c := st.layers
	if err := st.storeBaseEntry(ctx, installed); err != nil {
		st.warn("layer cache: the base layer was not stored: %v", err)
		return
	}
	c.log.Info("layer cache: the base layer was stored", "entry", c.entry())
}

func (st *build) storeBaseEntry(ctx context.Context, installed []pacman.PlannedPackage) error {
	c := st.layers
	if err := os.MkdirAll(c.dir, 0o700); err != nil {
		return err
	}
	for _, d := range []string{filepath.Dir(c.dir), c.dir} {
		if err := checkCacheDir(d); err != nil {
			return err
		}
	}
	if _, err := os.Stat(c.entry()); err == nil {
		return nil
	}
	(&initramfsCache{dir: c.dir, log: c.log}).removeStale()
	tmp, err := os.MkdirTemp(c.dir, ".new-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp) // gone once renamed
	m := layerManifest{Packages: installed}
	data, dirs, err := st.dataDatasets(ctx)
	if err != nil {
		return err
	}
	for _, d := range data {
		var werr error
		d.SHA256, werr = writeArchive(filepath.Join(tmp, d.File), dirs[d.Dataset])
		if werr != nil {
			return fmt.Errorf("%s: %w", d.Dataset, werr)
		}
		m.Data = append(m.Data, d)
	}
	f, err := os.OpenFile(filepath.Join(tmp, "stream"), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	err = st.zfs().Send(ctx, w, st.state.RootDataset+"@"+LayerBase, zfs.SendOptions{Compressed: true, LargeBlocks: true, Embedded: true})
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
		return err
	}
	fi, err := os.Stat(filepath.Join(tmp, "stream"))
	if err != nil {
		return err
	}
	m.StreamSize = fi.Size()
	js, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	if err := writeSynced(filepath.Join(tmp, "manifest.json"), js); err != nil {
		return err
	}
	if err := writeSynced(filepath.Join(tmp, "key"), c.key); err != nil {
		return err
	}
	if err := os.Rename(tmp, c.entry()); err != nil && !errors.Is(err, fs.ErrExist) && !errors.Is(err, syscall.ENOTEMPTY) {
		return err
	} // else another build stored it first
	return nil
}

// writeArchive archives dir into the new file p and returns its SHA-256.
func writeArchive(p, dir string) (string, error) {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", err
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(archiveTree(pw, dir)) }()
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

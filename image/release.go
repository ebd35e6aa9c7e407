package image

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/paczfs/paczfs/boot"
	"github.com/paczfs/paczfs/disk"
	"github.com/paczfs/paczfs/pacman"
	"github.com/paczfs/paczfs/release"
	"github.com/paczfs/paczfs/zfs"
)

// This file is a build's release side (Config.Release): checking and
// reading the previous release, receiving it as the root, bringing its
// packages to the new set, deciding whether its initramfs still holds,
// and writing the new release.

// releaseSnapshot is the root's snapshot that is the release version v.
func releaseSnapshot(v string) string { return "v" + v }

// trustedReleaseKeys reads manage.release_keys.
func (c *Config) trustedReleaseKeys() ([][]byte, error) {
	var keys [][]byte
	for i, k := range c.Manage.ReleaseKeys {
		data, err := os.ReadFile(k)
		if err != nil {
			return nil, fmt.Errorf("manage.release_keys[%d]: %w", i, err)
		}
		keys = append(keys, data)
	}
	return keys, nil
}

// previousRelease reads release.from, its manifest verified with the keys
// the image trusts.
func (c *Config) previousRelease() (*release.Manifest, error) {
	keys, err := c.trustedReleaseKeys()
	if err != nil {
		return nil, err
	}
	m, _, err := release.Open(c.Release.From, keys)
	return m, err
}

// checkReleaseFiles checks, before anything is written, what the release
// configuration names on the build host: the signing key, an empty
// output directory, and the previous release (signed by a trusted key,
// older, with a full stream and the disk identity a derived build takes).
func (c *Config) checkReleaseFiles() problems {
	var p problems
	r := c.Release
	if r.Dir == "" {
		return p
	}
	if ents, err := os.ReadDir(r.Dir); err == nil && len(ents) > 0 {
		p.add("release.dir", "give a new or empty directory: a release is never written over another", "%s is not empty", r.Dir)
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		p.add("release.dir", "give a directory the build can create and write", "%v", err)
	}
	if key, err := os.ReadFile(r.SigningKey); err != nil {
		p.add("release.signing_key", "name the armored secret key file (paczfs-release keygen NAME PREFIX makes PREFIX.key)", "%v", err)
	} else if _, err := release.Sign([]byte("paczfs"), key); err != nil {
		p.add("release.signing_key", "give an armored OpenPGP secret key (release.GenerateKey's secret half)", "%v", err)
	}
	if !r.derived() || len(c.Manage.ReleaseKeys) == 0 {
		return p
	}
	prev, err := c.previousRelease()
	if err != nil {
		p = append(p, &FieldError{Field: "release.from", Problem: err.Error(), Err: err,
			Fix: "give a release directory (manifest.json, manifest.json.sig, the full stream) signed by one of manage.release_keys"})
		return p
	}
	if boot.CompareVersions(r.Version, prev.Version) <= 0 {
		p.add("release.version", fmt.Sprintf("give a version newer than %s", prev.Version), "%q is not newer than release.from's %q", r.Version, prev.Version)
	}
	if st, ok := prev.Stream(release.Full); !ok {
		p.add("release.from", "give a release with its full stream", "release %s has no full stream", prev.Version)
	} else if fi, err := os.Stat(filepath.Join(r.From, st.File)); err != nil || fi.Size() != st.Size {
		p.add("release.from", "copy the release's full stream beside its manifest", "%s: missing or not %d bytes", st.File, st.Size)
	}
	if prev.Disk == nil {
		p.add("release.from", "derive from a release a paczfs build wrote (it records the disk's GUIDs, which the root's fstab names)", "release %s records no disk identity", prev.Version)
	} else if _, err := identityPlan(c.layoutPlanOrEmpty(), prev.Disk); err != nil {
		p.add("release.from", "keep the previous build's layout (esp_size, swap_size, layout)", "%v", err)
	}
	return p
}

// layoutPlanOrEmpty is the layout's plan for an image file (a block
// device's size is known only when the build checks it).
func (c *Config) layoutPlanOrEmpty() disk.Plan {
	if c.ImageFile == "" {
		return disk.Plan{}
	}
	plan, _ := c.layout().Plan(c.Size)
	return plan
}

// identityPlan gives plan the disk and partition GUIDs of id: the same
// partitions, by number, must exist in both.
func identityPlan(plan disk.Plan, id *release.Disk) (disk.Plan, error) {
	if len(plan.Partitions) == 0 {
		return plan, nil
	}
	out := plan
	out.Partitions = slices.Clone(plan.Partitions)
	out.DiskGUID = id.GUID
	for i, p := range out.Partitions {
		g, ok := id.Partitions[p.Number]
		if !ok {
			return plan, fmt.Errorf("partition %d (%s) was not on the previous release's disk", p.Number, p.Role)
		}
		out.Partitions[i].GUID = g
	}
	if len(id.Partitions) != len(plan.Partitions) {
		return plan, fmt.Errorf("the previous release's disk had %d partitions, this layout %d", len(id.Partitions), len(plan.Partitions))
	}
	return out, nil
}

// diskIdentity is what the manifest records of the disk built on.
func diskIdentity(plan disk.Plan) *release.Disk {
	id := &release.Disk{GUID: strings.ToLower(plan.DiskGUID), Partitions: map[int]string{}}
	for _, p := range plan.Partitions {
		id.Partitions[p.Number] = strings.ToLower(p.GUID)
	}
	return id
}

// receiveRoot makes the root environment from the previous release's full
// stream, checked against its manifest first (the kernel parses what it
// receives), with the layout's properties for the root; the parents of
// the root are created before, the other datasets after it is mounted.
func (st *build) receiveRoot(ctx context.Context) error {
	z := st.zfs()
	prev := st.previous
	before, rootSpec, after := st.splitLayout()
	if err := st.makeRootParent(ctx, before); err != nil {
		return err
	}
	full, _ := prev.Stream(release.Full)
	if err := release.VerifyStream(st.cfg.Release.From, full); err != nil {
		return fmt.Errorf("release.from: %w", err)
	}
	f, err := os.Open(filepath.Join(st.cfg.Release.From, full.File))
	if err != nil {
		return fmt.Errorf("release.from: %w", err)
	}
	defer f.Close()
	props := map[string]string{}
	for k, v := range rootSpec.Props {
		props[k] = v
	}
	if err := z.Receive(ctx, bufio.NewReaderSize(f, 1<<20), st.state.RootDataset, zfs.ReceiveOptions{Props: props}); err != nil {
		return fmt.Errorf("receive release %s: %w", prev.Version, err)
	}
	if err := z.Mount(ctx, st.state.RootDataset); err != nil {
		return err
	}
	return st.createDatasets(ctx, after)
}

// syncPackages brings the received root's packages to the configuration's
// whole set (base, bootable and workstation) in one libalpm transaction,
// remembering what changed for the initramfs decision.
func (st *build) syncPackages(ctx context.Context) error {
	before, err := localFiles(st.state.Root)
	if err != nil {
		return err
	}
	p := st.cfg.Packages
	names := append(append(append([]string{}, p.Base...), st.bootablePackages()...), p.Workstation...)
	var res *pacman.SyncResult
	err = st.withInitramfsStubs(func() (err error) {
		res, err = st.b.installer.Sync(ctx, st.state.Root, names)
		return err
	})
	if err != nil {
		return err
	}
	for _, w := range res.Warnings {
		st.warn("pacman: %s", w)
	}
	st.packages = res.Installed
	after, err := localFiles(st.state.Root)
	if err != nil {
		return err
	}
	st.changed = changedFiles(before, after)
	st.b.log.Info("packages synced from the previous release", "installed", len(res.Installed), "removed", len(res.Removed), "files changed", len(st.changed))
	if len(st.cfg.Pacman.CacheDirs) == 0 {
		return st.emptyTargetCache()
	}
	return nil
}

// pkgFiles is one installed package's version and files.
type pkgFiles struct {
	version string
	built   string // %BUILDDATE%: a package rebuilt at the same version differs
	files   []string
}

// localFiles reads every installed package's version and file list from
// root's pacman database (desc and files).
func localFiles(root string) (map[string]pkgFiles, error) {
	dirs, err := filepath.Glob(filepath.Join(root, "var/lib/pacman/local/*"))
	if err != nil {
		return nil, err
	}
	out := map[string]pkgFiles{}
	for _, d := range dirs {
		desc, err := os.ReadFile(filepath.Join(d, "desc"))
		if err != nil {
			continue // ALPM_DB_VERSION and the like
		}
		name := descField(desc, "%NAME%")
		pf := pkgFiles{version: descField(desc, "%VERSION%"), built: descField(desc, "%BUILDDATE%")}
		if data, err := os.ReadFile(filepath.Join(d, "files")); err == nil {
			in := false
			for _, l := range strings.Split(string(data), "\n") {
				switch {
				case strings.HasPrefix(l, "%"):
					in = l == "%FILES%"
				case in && l != "":
					pf.files = append(pf.files, l)
				}
			}
		}
		out[name] = pf
	}
	return out, nil
}

// changedFiles lists the files of every package added, removed or whose
// version changed from before to after (both versions' files).
func changedFiles(before, after map[string]pkgFiles) []string {
	var out []string
	for name, a := range after {
		if b, ok := before[name]; !ok || b.version != a.version {
			out = append(out, a.files...)
			if ok {
				out = append(out, b.files...)
			}
		}
	}
	for name, b := range before {
		if _, ok := after[name]; !ok {
			out = append(out, b.files...)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// triggered returns the first of files that matches one of the patterns
// (pacman hook Path targets: * matches any run of characters, / too, as
// fnmatch without FNM_PATHNAME does), or "".
func triggered(files, patterns []string) string {
	var res []*regexp.Regexp
	for _, p := range patterns {
		var b strings.Builder
		b.WriteString("^")
		for _, part := range strings.Split(p, "*") {
			b.WriteString(regexp.QuoteMeta(part))
			b.WriteString(".*")
		}
		re := strings.TrimSuffix(b.String(), ".*") + "$"
		res = append(res, regexp.MustCompile(re))
	}
	for _, f := range files {
		for _, re := range res {
			if re.MatchString(f) {
				return f
			}
		}
	}
	return ""
}

// initramfsRebuildReason reports why a derived build's received initramfs
// must be rebuilt ("" when it is still what the generator would make):
// a kernel was added or removed, a package the initramfs is made from
// changed (boot.initramfs_triggers, as the distribution's own package
// hook decides), or a file the build writes for the generator differs.
func (st *build) initramfsRebuildReason(kvers []string) string {
	if !st.cfg.Release.derived() {
		return "a new root"
	}
	b := st.cfg.Boot
	for _, k := range kvers {
		initrd, err := expand(st.state.Root, b.Initrd, k, "")
		if err != nil {
			return err.Error()
		}
		if fi, err := os.Stat(filepath.Join(st.state.Root, initrd)); err != nil || fi.Size() == 0 {
			return "no initramfs for " + k
		}
	}
	if len(b.InitramfsTriggers) == 0 {
		return "boot.initramfs_triggers is empty"
	}
	if f := triggered(st.changed, b.InitramfsTriggers); f != "" {
		return "a package changed " + f
	}
	for name, content := range b.InitramfsFiles {
		if have, err := os.ReadFile(filepath.Join(st.state.Root, strings.TrimPrefix(name, "/"))); err != nil || string(have) != content {
			return "boot.initramfs_files " + name + " changed"
		}
	}
	return ""
}

// writeRelease snapshots the root as the release, holds it, and writes
// the release: the full stream, the incremental one from release.from,
// and the signed manifest with the packages, their changes and the disk.
func (st *build) writeRelease(ctx context.Context) error {
	r := st.cfg.Release
	z := st.zfs()
	snap := st.state.RootDataset + "@" + releaseSnapshot(r.Version)
	if err := z.Snapshot(ctx, zfs.SnapshotOptions{}, snap); err != nil {
		return err
	}
	if err := z.Hold(ctx, st.cfg.HoldTag, snap, zfs.HoldOptions{}); err != nil {
		return err
	}
	key, err := os.ReadFile(r.SigningKey)
	if err != nil {
		return fmt.Errorf("release.signing_key: %w", err)
	}
	pkgs, err := installedPackages(st.state.Root)
	if err != nil {
		return err
	}
	o := release.WriteOptions{Snapshot: snap, Dir: r.Dir, Name: r.Name, Version: r.Version, Kernel: st.kver,
		Secret: key, Disk: diskIdentity(st.target.plan)}
	if o.Name == "" {
		o.Name = st.cfg.PoolName
	}
	for _, p := range pkgs {
		n, v, _ := strings.Cut(p, " ")
		o.Packages = append(o.Packages, release.Package{Name: n, Version: v})
	}
	if prev := st.previous; prev != nil {
		o.Previous = prev.Version
		o.Base = st.state.RootDataset + "@" + prev.Snapshot
		o.PreviousPackages = prev.Packages
		if o.PreviousPackages == nil {
			o.PreviousPackages = []release.Package{}
		}
	}
	st.releaseDir = true
	if st.record != nil {
		if err := st.record.update(func(rec *record) { rec.ReleaseDir = r.Dir }); err != nil {
			return err
		}
	}
	m, err := release.Write(ctx, z, o)
	if err != nil {
		return fmt.Errorf("release.dir: %w", err)
	}
	st.res.Release = m
	return nil
}

// removeReleaseFiles removes what release.Write puts in dir (a failed
// build's release), and dir when it is then empty.
func removeReleaseFiles(dir string) error {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	var errs []error
	for _, e := range ents {
		n := e.Name()
		if n == release.ManifestFile || n == release.SignatureFile || strings.HasSuffix(n, ".zstream") {
			if err := os.Remove(filepath.Join(dir, n)); err != nil {
				errs = append(errs, err)
			}
		}
	}
	_ = os.Remove(dir)
	return errors.Join(errs...)
}

// localeInputs are the files locale-gen builds the archive from (glibc's
// locales and charmaps, Debian's locales package) and the archive.
var localeInputs = []string{"usr/share/i18n/*", "usr/lib/locale/*", "usr/bin/locale-gen", "usr/sbin/locale-gen",
	"usr/bin/localedef", "usr/sbin/localedef"}

// localesStillBuilt reports whether a derived build's root has the
// locales locale.gen asks for already built: the same locale.gen, an
// archive, and no package the sync changed owns what it is made from.
func (st *build) localesStillBuilt(oldGen, gen []byte) bool {
	if st.previous == nil || !bytes.Equal(oldGen, gen) {
		return false
	}
	if _, err := os.Stat(filepath.Join(st.state.Root, "usr/lib/locale/locale-archive")); err != nil {
		return false
	}
	return triggered(st.changed, localeInputs) == ""
}

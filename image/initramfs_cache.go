package image

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/paczfs/paczfs/hooks"
)

// This file is the initramfs cache (Config.CacheDir): each kernel's
// image kept under the SHA-256 of a key document listing what it is made
// from, so that a rebuild whose initramfs would be made from the same
// takes it instead of running the generator (dracut took 180-230 s of a
// 515 s lab build).
//
// The key is made from what the build controls, read from the target
// just before the generator would run:
//   - the kernel version, the image's path and the generator's command;
//   - every installed package, its version and build date (the kernel,
//     its modules, the generator, its modules, udev, systemd...: what
//     the generator copies comes from packages, and hooks derive the rest
//     from them);
//   - /etc and /root as the build left them: every entry's type, mode,
//     owner and content (a link's target, and the content of the file it
//     leads to in the target), except the pacman keyring
//     (etc/pacman.d/gnupg), random per build, and the record of the
//     build's configuration (etc/paczfs/config.json), which names the
//     outputs and the workstation's packages; no generator reads either;
//   - every entry under /usr (but /usr/share's caches) and the top-level
//     lib, lib64, bin and sbin that no package owns: depmod's indexes,
//     DKMS modules, udev's hwdb, the device tool, whatever a build or a
//     scriptlet wrote there;
//   - system.files and boot.initramfs_files, whose paths may lie anywhere;
//   - the keys of the hooks.Keyed hooks at or before the stage.
//
// Other hooks at or before the initramfs stage turn the cache off: what
// they change may not be in the key. A damaged entry (no image or
// checksum, or an image that does not match it) is removed and the image
// built. Entries are written to a temporary directory and renamed into
// place, so a build killed while storing leaves no entry, only a .new-*
// directory that is never read and that a later store removes once it is
// a day old. The cache is an optimisation: when it fails, the build
// warns and runs the generator.

// initramfsCacheFormat is the key document's first line; a change in what
// the key holds changes it, so old entries are never taken.
const initramfsCacheFormat = "paczfs initramfs cache 1"

// keyringDir is the target's pacman keyring, left out of the key.
const keyringDir = "etc/pacman.d/gnupg"

// configRecord is the build's configuration as the image records it
// (writePaczfsDir), left out of the key: it names the outputs and every
// layer's packages, so adding a workstation package would change it.
const configRecord = "etc/paczfs/config.json"

type initramfsCache struct {
	dir   string // Config.CacheDir/initramfs
	log   *slog.Logger
	hooks []string // the Keyed hooks' lines of the key, in build order
}

// initramfsCache returns the build's initramfs cache, or nil and why
// there is none ("" when Config.CacheDir is empty), or a cache directory
// that fails checkCacheDir.
func (st *build) initramfsCache() (*initramfsCache, string, error) {
	if st.cfg.CacheDir == "" {
		return nil, "", nil
	}
	keys, unkeyed := st.b.hooksThrough(hooks.StageInitramfs)
	if len(unkeyed) > 0 {
		return nil, "hooks without a cache key (hooks.Keyed) run at or before the initramfs stage: " + strings.Join(unkeyed, ", "), nil
	}
	c := &initramfsCache{dir: filepath.Join(st.cfg.CacheDir, "initramfs"), log: st.b.log, hooks: keys}
	// New checked cache_dir if it existed; whoever made it since, or its
	// initramfs directory, must pass the same check before it is read.
	for _, d := range []string{st.cfg.CacheDir, c.dir} {
		if err := checkCacheDir(d); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, "", fmt.Errorf("cache_dir: %w", err)
		}
	}
	return c, "", nil
}

// hooksThrough returns the key lines of the Keyed hooks that run at or
// before stage, and the names of the others (a Keyed hook with an empty
// key is one of them).
func (b *Builder) hooksThrough(stage hooks.Stage) (keys, unkeyed []string) {
	all := hooks.Stages()
	last := slices.Index(all, stage)
	for _, h := range b.hooks {
		if i := slices.Index(all, h.Stage()); i < 0 || i > last {
			continue
		}
		if k, ok := h.(hooks.Keyed); ok && k.CacheKey() != "" {
			keys = append(keys, fmt.Sprintf("hook %s %s %q %q", h.When(), h.Stage(), h.Name(), k.CacheKey()))
		} else {
			unkeyed = append(unkeyed, h.Name())
		}
	}
	return keys, unkeyed
}

// checkCacheDir refuses a cache directory another user could write: what
// it holds is copied into images.
func checkCacheDir(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("%s is writable by group or others (mode %04o)", dir, fi.Mode().Perm())
	}
	if s, ok := fi.Sys().(*syscall.Stat_t); ok && int(s.Uid) != os.Geteuid() {
		return fmt.Errorf("%s is owned by uid %d, not the building user (uid %d)", dir, s.Uid, os.Geteuid())
	}
	return nil
}

// keyInput is what every kernel's key shares.
type keyInput struct {
	root           string
	pkgs           map[string]pkgFiles // localFiles(root)
	systemFiles    map[string]string   // system.files
	initramfsFiles map[string]string   // boot.initramfs_files
	hooks          []string            // initramfsCache.hooks
}

// commonKey is the part of the key every kernel shares.
func commonKey(in keyInput) ([]byte, error) {
	var b bytes.Buffer
	owned := map[string]bool{}
	for _, name := range sortedKeys(in.pkgs) {
		p := in.pkgs[name]
		fmt.Fprintf(&b, "package %s %s %s\n", name, p.version, p.built)
		for _, f := range p.files {
			owned[strings.TrimSuffix(f, "/")] = true
		}
	}
	for _, h := range in.hooks {
		fmt.Fprintf(&b, "%s\n", h)
	}
	for _, f := range []struct {
		field string
		files map[string]string
	}{{"system.files", in.systemFiles}, {"boot.initramfs_files", in.initramfsFiles}} {
		for _, name := range sortedKeys(f.files) {
			fmt.Fprintf(&b, "%s %s %x\n", f.field, name, sha256.Sum256([]byte(f.files[name])))
		}
	}
	r, err := os.OpenRoot(in.root)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	all := func(string) bool { return false }
	unowned := func(rel string) bool { return owned[rel] }
	for _, t := range []struct {
		dir        string
		skip, omit func(rel string) bool
		need       bool
	}{
		{"etc", func(rel string) bool { return rel == keyringDir }, func(rel string) bool { return rel == configRecord }, true},
		{"root", all, all, false},
		{"usr", func(rel string) bool { return rel == "usr/share" }, unowned, false},
		{"lib", all, unowned, false},
		{"lib64", all, unowned, false},
		{"bin", all, unowned, false},
		{"sbin", all, unowned, false},
	} {
		fi, err := r.Lstat(t.dir)
		switch {
		case errors.Is(err, fs.ErrNotExist) && !t.need:
			continue
		case err != nil:
			return nil, err
		case fi.Mode()&fs.ModeSymlink != 0:
			// lib -> usr/lib on a merged /usr: a line, not a second walk.
			if !t.omit(t.dir) {
				target, err := r.Readlink(t.dir)
				if err != nil {
					return nil, err
				}
				fmt.Fprintf(&b, "link %s -> %s\n", t.dir, target)
			}
			continue
		}
		if err := keyTree(&b, r, t.dir, t.skip, t.omit); err != nil {
			return nil, err
		}
	}
	return b.Bytes(), nil
}

// initramfsKey returns the key document of kernel kver's initramfs at
// initrd, made by argv, in a target whose commonKey is common.
func initramfsKey(kver, initrd string, argv []string, common []byte) []byte {
	cmd, _ := json.Marshal(argv) // strings: never fails
	head := fmt.Sprintf("%s\nkernel %s\ninitrd %s\ncommand %s\n", initramfsCacheFormat, kver, initrd, cmd)
	return append([]byte(head), common...)
}

// keyTree writes a line for each entry under dir (relative to the
// target r), in lexical order: its type, path, mode, owner, and a file's
// SHA-256 or a link's target (and the SHA-256 of the file it leads to in
// the target, if any). skip prunes a directory; omit leaves an entry out.
func keyTree(w io.Writer, r *os.Root, dir string, skip, omit func(rel string) bool) error {
	return fs.WalkDir(r.FS(), dir, func(rel string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && skip(rel) {
			return fs.SkipDir
		}
		if omit(rel) {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		owner := ""
		if s, ok := fi.Sys().(*syscall.Stat_t); ok {
			owner = fmt.Sprintf(" %d:%d", s.Uid, s.Gid)
		}
		head := fmt.Sprintf("%s %04o%s", rel, fi.Mode().Perm()|fi.Mode()&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky), owner)
		switch {
		case d.IsDir():
			_, err = fmt.Fprintf(w, "dir %s\n", head)
		case d.Type()&fs.ModeSymlink != 0:
			target, lerr := r.Readlink(rel)
			if lerr != nil {
				return lerr
			}
			// What it leads to, followed inside the target only (an
			// absolute target is the target's, not the build host's).
			to := target
			if filepath.IsAbs(to) {
				to = strings.TrimPrefix(filepath.Clean(to), "/")
			} else {
				to = filepath.Join(filepath.Dir(rel), to)
			}
			leads := "-"
			if f, oerr := r.Open(to); oerr == nil {
				if ti, serr := f.Stat(); serr == nil && ti.Mode().IsRegular() {
					if sum, herr := readerSHA256(f); herr == nil {
						leads = sum
					}
				}
				f.Close()
			}
			_, err = fmt.Fprintf(w, "link %s -> %s %s\n", head, target, leads)
		case d.Type().IsRegular():
			f, oerr := r.Open(rel)
			if oerr != nil {
				return oerr
			}
			sum, herr := readerSHA256(f)
			f.Close()
			if herr != nil {
				return herr
			}
			_, err = fmt.Fprintf(w, "file %s %s\n", head, sum)
		default:
			_, err = fmt.Fprintf(w, "other %s %s\n", head, d.Type())
		}
		return err
	})
}

func readerSHA256(r io.Reader) (string, error) {
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// entry is key's directory in the cache.
func (c *initramfsCache) entry(key []byte) string {
	sum := sha256.Sum256(key)
	return filepath.Join(c.dir, hex.EncodeToString(sum[:]))
}

// restore writes the image cached for key to initrd in the target root
// (replacing it, with the cached file's mode; never through a link that
// leads out of root) and reports whether there was one. A damaged entry
// is removed and reported as none.
func (c *initramfsCache) restore(key []byte, root, initrd string) (bool, error) {
	dir := c.entry(key)
	d, err := os.OpenRoot(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil // no entry
	} else if err != nil {
		return false, fmt.Errorf("restore %s: %w", dir, err)
	}
	defer d.Close()
	src, want, err := c.openEntry(d, dir)
	if err != nil || src == nil {
		return false, err
	}
	defer src.Close()
	fi, err := src.Stat()
	if err != nil {
		return false, fmt.Errorf("restore %s: %w", dir, err)
	}
	r, err := os.OpenRoot(root)
	if err != nil {
		return false, fmt.Errorf("restore %s: %w", dir, err)
	}
	defer r.Close()
	rel := strings.TrimPrefix(filepath.Clean(initrd), "/")
	tmp := rel + ".paczfs-new"
	// A leftover, or a link put there: removed, never followed.
	if err := r.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("restore %s: %w", dir, err)
	}
	out, err := r.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fi.Mode().Perm())
	if err != nil {
		return false, fmt.Errorf("restore %s: %w", dir, err)
	}
	sum, err := copyTo(out, src, fi.Mode().Perm())
	if err == nil && sum != want {
		_ = r.Remove(tmp)
		return false, c.damaged(dir, "its image does not match its checksum")
	}
	if err == nil {
		err = r.Rename(tmp, rel)
	}
	if err != nil {
		_ = r.Remove(tmp)
		return false, fmt.Errorf("restore %s: %w", dir, err)
	}
	return true, nil
}

// openEntry reads the checksum of the entry opened as d (at dir) and
// opens its image. The entry is read through d, the directory itself, so
// one a prune takes away meanwhile (removeEntry renames it before removing
// it) is read whole or found gone: then it is a miss (nil file, nil
// error), not a damaged entry. One still at dir without its checksum or
// image is damaged, and removed.
func (c *initramfsCache) openEntry(d *os.Root, dir string) (*os.File, string, error) {
	want, err := d.ReadFile("sha256")
	why := "no checksum"
	var src *os.File
	if err == nil {
		why = "no image"
		src, err = d.Open("image")
	}
	switch {
	case err == nil:
		return src, strings.TrimSpace(string(want)), nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, "", fmt.Errorf("restore %s: %w", dir, err)
	case entryGone(d, dir):
		c.log.Info("initramfs cache: the entry was removed while it was read (a prune); the image is built", "entry", dir)
		return nil, "", nil
	}
	return nil, "", c.damaged(dir, why)
}

// entryGone says whether dir no longer names the directory d is.
func entryGone(d *os.Root, dir string) bool {
	here, err := d.Stat(".")
	if err != nil {
		return true
	}
	now, err := os.Lstat(dir)
	return err != nil || !os.SameFile(here, now)
}

// damaged removes a damaged entry, as a prune does (renamed, then
// removed: a reader finds it whole or gone).
func (c *initramfsCache) damaged(dir, why string) error {
	c.log.Warn("initramfs cache: a damaged entry was removed", "entry", dir, "why", why)
	if err := removeEntry(dir); err != nil {
		return fmt.Errorf("remove the damaged entry %s: %w", dir, err)
	}
	return nil
}

// store copies the image at initrd in the target root into the cache
// under key.
func (c *initramfsCache) store(key []byte, root, initrd string) (err error) {
	defer func() {
		if err != nil {
			err = fmt.Errorf("store %s: %w", initrd, err)
		}
	}()
	if err := os.MkdirAll(c.dir, 0o700); err != nil {
		return err
	}
	for _, d := range []string{filepath.Dir(c.dir), c.dir} {
		if err := checkCacheDir(d); err != nil {
			return err
		}
	}
	if _, err := os.Stat(c.entry(key)); err == nil {
		return nil
	}
	removeStale(c.dir, c.log)
	in, err := os.OpenInRoot(root, strings.TrimPrefix(initrd, "/"))
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(c.dir, ".new-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp) // gone once renamed
	out, err := os.OpenFile(filepath.Join(tmp, "image"), os.O_WRONLY|os.O_CREATE|os.O_EXCL, fi.Mode().Perm())
	if err != nil {
		return err
	}
	sum, err := copyTo(out, in, fi.Mode().Perm())
	if err != nil {
		return err
	}
	if err := writeSynced(filepath.Join(tmp, "key"), key); err != nil {
		return err
	}
	if err := writeSynced(filepath.Join(tmp, "sha256"), []byte(sum+"\n")); err != nil {
		return err
	}
	if err := os.Rename(tmp, c.entry(key)); err != nil && !errors.Is(err, fs.ErrExist) && !errors.Is(err, syscall.ENOTEMPTY) {
		return err
	} // else another build stored it first
	return nil
}

func writeSynced(p string, data []byte) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = copyTo(f, bytes.NewReader(data), 0o600)
	return err
}

// staleAfter is the age of a .new-* directory no running build still
// writes: what a build killed while storing left.
const staleAfter = 24 * time.Hour

// removeStale removes the .new-* directories killed builds left in dir
// (a cache's initramfs or layers directory), and the .old-* ones a killed
// PruneCache left.
func removeStale(dir string, log *slog.Logger) {
	old, _ := filepath.Glob(filepath.Join(dir, ".new-*"))
	// .old-*: an entry PruneCache renamed, never read again.
	pruned, _ := filepath.Glob(filepath.Join(dir, ".old-*"))
	for _, d := range append(old, pruned...) {
		if fi, err := os.Lstat(d); err == nil && fi.IsDir() && (time.Since(fi.ModTime()) > staleAfter || strings.HasPrefix(filepath.Base(d), ".old-")) {
			log.Debug("cache: removing what a killed build left", "dir", d)
			_ = os.RemoveAll(d)
		}
	}
}

// copyTo writes r to out, gives it mode perm whatever the umask, syncs
// and closes it, and returns the SHA-256 of what it wrote.
func copyTo(out *os.File, r io.Reader, perm fs.FileMode) (string, error) {
	h := sha256.New()
	_, err := io.Copy(io.MultiWriter(out, h), r)
	if err == nil {
		err = out.Chmod(perm)
	}
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return hex.EncodeToString(h.Sum(nil)), err
}

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
//   - every installed package and its version (the kernel, its modules,
//     the generator, its modules, udev, systemd...: what the generator
//     copies comes from packages, and hooks derive the rest from them);
//   - /etc as the build left it: every file's mode, owner and content
//     (the generator's configuration, /etc/hostid, vconsole.conf,
//     modprobe.d...), except the pacman keyring (etc/pacman.d/gnupg),
//     random per build, and the record of the build's configuration
//     (etc/paczfs/config.json), which names the outputs and the
//     workstation's packages; no generator reads either;
//   - the files in the kernel's module directory that no package owns
//     (depmod's indexes, modules DKMS built);
//   - system.files, which may name paths outside /etc.
//
// Hooks at or before the initramfs stage turn the cache off (what they
// change may not be in the key), unless they are hooks.Keyed: their keys
// are then in it, in build order. A damaged entry (its SHA-256 differs) is
// removed and the image built. Entries are written to a temporary
// directory and renamed into place, so a build killed while storing
// leaves no entry, only a .new-* directory that is never read and that
// a later store removes once it is a day old.

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
// there is none ("" when Config.CacheDir is empty).
func (st *build) initramfsCache() (*initramfsCache, string) {
	if st.cfg.CacheDir == "" {
		return nil, ""
	}
	keys, unkeyed := st.b.hooksThrough(hooks.StageInitramfs)
	if len(unkeyed) > 0 {
		return nil, "hooks without a cache key (hooks.Keyed) run at or before the initramfs stage: " + strings.Join(unkeyed, ", ")
	}
	return &initramfsCache{dir: filepath.Join(st.cfg.CacheDir, "initramfs"), log: st.b.log, hooks: keys}, ""
}

// hooksThrough returns the key lines of the Keyed hooks that run at or
// before stage, and the names of the others.
func (b *Builder) hooksThrough(stage hooks.Stage) (keys, unkeyed []string) {
	all := hooks.Stages()
	last := slices.Index(all, stage)
	for _, h := range b.hooks {
		if i := slices.Index(all, h.Stage()); i < 0 || i > last {
			continue
		}
		if k, ok := h.(hooks.Keyed); ok {
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

// initramfsKey returns the key document of kernel kver's initramfs at
// initrd, made by argv, in root with the installed packages pkgs
// (localFiles).
func initramfsKey(root, kver, initrd string, argv []string, pkgs map[string]pkgFiles, systemFiles map[string]string, hookKeys []string) ([]byte, error) {
	var b bytes.Buffer
	cmd, err := json.Marshal(argv)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(&b, "%s\nkernel %s\ninitrd %s\ncommand %s\n", initramfsCacheFormat, kver, initrd, cmd)
	owned := map[string]bool{}
	for _, name := range sortedKeys(pkgs) {
		fmt.Fprintf(&b, "package %s %s\n", name, pkgs[name].version)
		for _, f := range pkgs[name].files {
			owned[strings.TrimSuffix(f, "/")] = true
		}
	}
	for _, h := range hookKeys {
		fmt.Fprintf(&b, "%s\n", h)
	}
	for _, name := range sortedKeys(systemFiles) {
		fmt.Fprintf(&b, "system.files %s %x\n", name, sha256.Sum256([]byte(systemFiles[name])))
	}
	if err := keyTree(&b, root, "etc", func(rel string) bool { return rel == keyringDir }, func(rel string) bool { return rel == configRecord }); err != nil {
		return nil, err
	}
	// The kernel's module directory, where merged /usr puts it; a package
	// may list it as lib/modules/... (Debian's older packages).
	mods := filepath.ToSlash(filepath.Join("usr/lib/modules", kver))
	isOwned := func(rel string) bool { return owned[rel] || owned[strings.TrimPrefix(rel, "usr/")] }
	if err := keyTree(&b, root, mods, nil, isOwned); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	return b.Bytes(), nil
}

// keyTree writes a line for each entry under dir (relative to root), in
// lexical order: its type, path, mode, owner, and a file's SHA-256 or a
// link's target. skip prunes a directory; omit leaves an entry out.
func keyTree(w io.Writer, root, dir string, skip, omit func(rel string) bool) error {
	return filepath.WalkDir(filepath.Join(root, dir), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if d.IsDir() && skip != nil && skip(rel) {
			return filepath.SkipDir
		}
		if omit != nil && omit(rel) {
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
			target, lerr := os.Readlink(p)
			if lerr != nil {
				return lerr
			}
			_, err = fmt.Fprintf(w, "link %s -> %s\n", head, target)
		case d.Type().IsRegular():
			sum, herr := fileSHA256(p)
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

func fileSHA256(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
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

// restore writes the image cached for key to dst (replacing it, with the
// cached file's mode) and reports whether there was one. A damaged entry
// is removed and reported as none.
func (c *initramfsCache) restore(key []byte, dst string) (bool, error) {
	dir := c.entry(key)
	want, err := os.ReadFile(filepath.Join(dir, "sha256"))
	if errors.Is(err, fs.ErrNotExist) {
		// No entry, or one that lost its checksum: not to be trusted.
		return false, os.RemoveAll(dir)
	} else if err != nil {
		return false, err
	}
	src, err := os.Open(filepath.Join(dir, "image"))
	if err != nil {
		return false, err
	}
	defer src.Close()
	fi, err := src.Stat()
	if err != nil {
		return false, err
	}
	tmp := dst + ".paczfs-new"
	sum, err := copyFile(tmp, src, fi.Mode().Perm())
	if err != nil {
		os.Remove(tmp)
		return false, err
	}
	if sum != strings.TrimSpace(string(want)) {
		os.Remove(tmp)
		c.log.Warn("initramfs cache: a damaged entry was removed", "entry", dir)
		return false, os.RemoveAll(dir)
	}
	return true, os.Rename(tmp, dst)
}

// store copies the image at src into the cache under key.
func (c *initramfsCache) store(key []byte, src string) error {
	if err := os.MkdirAll(c.dir, 0o700); err != nil {
		return err
	}
	if err := checkCacheDir(filepath.Dir(c.dir)); err != nil {
		return err
	}
	if err := checkCacheDir(c.dir); err != nil {
		return err
	}
	if _, err := os.Stat(c.entry(key)); err == nil {
		return nil
	}
	c.removeStale()
	in, err := os.Open(src)
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
	sum, err := copyFile(filepath.Join(tmp, "image"), in, fi.Mode().Perm())
	if err == nil {
		err = os.WriteFile(filepath.Join(tmp, "key"), key, 0o600)
	}
	if err == nil {
		err = os.WriteFile(filepath.Join(tmp, "sha256"), []byte(sum+"\n"), 0o600)
	}
	if err == nil {
		err = os.Rename(tmp, c.entry(key))
		if errors.Is(err, fs.ErrExist) || errors.Is(err, syscall.ENOTEMPTY) {
			err = nil // another build stored it first
		}
	}
	if rerr := os.RemoveAll(tmp); err == nil && rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
		err = rerr
	}
	return err
}

// staleAfter is the age of a .new-* directory no running build still
// writes: what a build killed while storing left.
const staleAfter = 24 * time.Hour

// removeStale removes the .new-* directories killed builds left.
func (c *initramfsCache) removeStale() {
	old, _ := filepath.Glob(filepath.Join(c.dir, ".new-*"))
	for _, d := range old {
		if fi, err := os.Lstat(d); err == nil && fi.IsDir() && time.Since(fi.ModTime()) > staleAfter {
			c.log.Debug("initramfs cache: removing what a killed build left", "dir", d)
			_ = os.RemoveAll(d)
		}
	}
}

// copyFile writes r to a new file dst with mode perm, synced, and
// returns the SHA-256 of what it wrote.
func copyFile(dst string, r io.Reader, perm fs.FileMode) (string, error) {
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	_, err = io.Copy(io.MultiWriter(out, h), r)
	if err == nil {
		err = out.Chmod(perm) // whatever the umask
	}
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return hex.EncodeToString(h.Sum(nil)), err
}

package image

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// This file archives what a layer's install wrote to the datasets mounted
// in the target besides the root (data/root, data/srv...: the filesystem
// package's /root is 0750, /srv holds ftp and http): a layer cache entry
// is the root's stream and these archives, so that a layer taken from the
// cache leaves those datasets as its install did.

// errArchiveType is a file the archive does not hold (a device node, a
// FIFO, a socket): the layer is then not stored.
var errArchiveType = errors.New("not a regular file, directory or symbolic link")

// xattrPrefix is the PAX record of an extended attribute (GNU tar's and
// Go's archive/tar's name for it).
const xattrPrefix = "SCHILY.xattr."

// archiveTree writes the tree at dir to w as a tar archive: every
// directory, regular file and symbolic link with its mode, owner, times
// and extended attributes, hard links as links, the top directory as
// ".". Directories where another file system is mounted are left out
// (their datasets are archived on their own). A socket is an error, or
// left out with skipSockets (a keyring's gpg-agent).
func archiveTree(w io.Writer, dir string, skipSockets bool) error {
	top, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	topSt, ok := top.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("%s: no Unix file information", dir)
	}
	dev := topSt.Dev
	tw := tar.NewWriter(w)
	links := map[uint64]string{}
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("%s: no Unix file information", p)
		}
		if st.Dev != dev {
			if !d.IsDir() {
				return fmt.Errorf("%s: a file mounted from elsewhere", p)
			}
			return filepath.SkipDir // a mount point
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		name := filepath.ToSlash(rel)
		var target string
		switch m := fi.Mode(); {
		case m.IsDir(), m.IsRegular():
		case m&fs.ModeSymlink != 0:
			if target, err = os.Readlink(p); err != nil {
				return err
			}
		case m&fs.ModeSocket != 0 && skipSockets:
			return nil
		default:
			return fmt.Errorf("%s: %w", p, errArchiveType)
		}
		h, err := tar.FileInfoHeader(fi, target)
		if err != nil {
			return err
		}
		h.Name, h.Uname, h.Gname = name, "", ""
		h.Uid, h.Gid = int(st.Uid), int(st.Gid)
		h.Format = tar.FormatPAX
		h.AccessTime, h.ChangeTime = time.Time{}, time.Time{}
		if fi.Mode().IsRegular() && st.Nlink > 1 {
			if first, ok := links[st.Ino]; ok {
				h.Typeflag, h.Linkname, h.Size = tar.TypeLink, first, 0
			} else {
				links[st.Ino] = name
			}
		}
		if h.PAXRecords, err = xattrs(p, fi); err != nil {
			return err
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if h.Typeflag == tar.TypeReg {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			_, err = io.Copy(tw, f)
			f.Close()
			return err
		}
		return nil
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

// xattrs reads p's extended attributes as PAX records. A link's are not
// kept: Linux gives user attributes to files and directories only.
func xattrs(p string, fi fs.FileInfo) (map[string]string, error) {
	if fi.Mode()&fs.ModeSymlink != 0 {
		return nil, nil
	}
	size, err := unix.Llistxattr(p, nil)
	if errors.Is(err, unix.ENOTSUP) || size == 0 {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("list the extended attributes of %s: %w", p, err)
	}
	buf := make([]byte, size)
	if size, err = unix.Llistxattr(p, buf); err != nil {
		return nil, fmt.Errorf("list the extended attributes of %s: %w", p, err)
	}
	out := map[string]string{}
	for _, name := range strings.Split(strings.TrimRight(string(buf[:size]), "\x00"), "\x00") {
		if name == "" {
			continue
		}
		n, err := unix.Lgetxattr(p, name, nil)
		if err != nil {
			return nil, fmt.Errorf("read %s of %s: %w", name, p, err)
		}
		v := make([]byte, n)
		if n, err = unix.Lgetxattr(p, name, v); err != nil {
			return nil, fmt.Errorf("read %s of %s: %w", name, p, err)
		}
		out[xattrPrefix+name] = string(v[:n])
	}
	return out, nil
}

// extractTree writes the archive r (archiveTree's) into dir, which exists:
// its "." entry gives dir its mode, owner and attributes. Every name stays
// in dir (os.Root: no link is followed out of it). What is there already
// is replaced by the archive's entry of the same name (a directory keeps
// its content and takes the entry's mode, owner and times): a hook that
// wrote into the dataset before the layer was taken from the cache ran in
// the build that stored it too, and its files are in the archive.
// Directories' times are set last, once their content is written.
func extractTree(r io.Reader, dir string) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	return extractInto(root, r)
}

// extractInto is extractTree into an open root.
func extractInto(root *os.Root, r io.Reader) error {
	type dirTime struct {
		name string
		t    time.Time
	}
	var dirs []dirTime
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		name := path.Clean(h.Name)
		if name != "." && !filepath.IsLocal(name) {
			return fmt.Errorf("archive entry %q leaves the directory", h.Name)
		}
		mode := h.FileInfo().Mode()
		switch h.Typeflag {
		case tar.TypeDir:
			if name != "." {
				if err := mkdirReplacing(root, name); err != nil {
					return err
				}
			}
			dirs = append(dirs, dirTime{name, h.ModTime})
		case tar.TypeReg:
			if err := removeNonDir(root, name); err != nil {
				return err
			}
			f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
		case tar.TypeSymlink:
			if err := removeNonDir(root, name); err != nil {
				return err
			}
			if err := root.Symlink(h.Linkname, name); err != nil {
				return err
			}
		case tar.TypeLink:
			if !filepath.IsLocal(h.Linkname) {
				return fmt.Errorf("archive entry %q links to %q, outside the directory", h.Name, h.Linkname)
			}
			if err := removeNonDir(root, name); err != nil {
				return err
			}
			if err := root.Link(h.Linkname, name); err != nil {
				return err
			}
			continue // the first name's owner, mode and times
		default:
			return fmt.Errorf("archive entry %q: type %q: %w", h.Name, h.Typeflag, errArchiveType)
		}
		if err := root.Lchown(name, h.Uid, h.Gid); err != nil {
			return err
		}
		if h.Typeflag == tar.TypeSymlink {
			continue
		}
		// After the owner: chown clears set-user-ID and set-group-ID.
		if err := root.Chmod(name, mode); err != nil {
			return err
		}
		// After both: chown clears security.capability.
		if err := setXattrs(root, name, h.PAXRecords); err != nil {
			return err
		}
		if h.Typeflag == tar.TypeReg {
			if err := root.Chtimes(name, h.ModTime, h.ModTime); err != nil {
				return err
			}
		}
	}
	slices.Reverse(dirs) // children before parents
	for _, d := range dirs {
		if err := root.Chtimes(d.name, d.t, d.t); err != nil {
			return err
		}
	}
	return nil
}

// removeNonDir removes name from root unless it is missing; a directory
// there is an error (an archive never replaces one with a file).
func removeNonDir(root *os.Root, name string) error {
	fi, err := root.Lstat(name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return err
	case fi.IsDir():
		return fmt.Errorf("%s is a directory, the archive has a file there", name)
	}
	return root.Remove(name)
}

// mkdirReplacing makes directory name in root, leaves one that is there,
// and replaces anything else.
func mkdirReplacing(root *os.Root, name string) error {
	if fi, err := root.Lstat(name); err == nil && fi.IsDir() {
		return nil
	}
	if err := removeNonDir(root, name); err != nil {
		return err
	}
	return root.Mkdir(name, 0o700)
}

// setXattrs sets the extended attributes of the PAX records on name (a
// file or directory in root), through its open descriptor.
func setXattrs(root *os.Root, name string, pax map[string]string) error {
	var names []string
	for k := range pax {
		if strings.HasPrefix(k, xattrPrefix) {
			names = append(names, k)
		}
	}
	if len(names) == 0 {
		return nil
	}
	slices.Sort(names)
	f, err := root.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	for _, k := range names {
		if err := unix.Fsetxattr(int(f.Fd()), strings.TrimPrefix(k, xattrPrefix), []byte(pax[k]), 0); err != nil {
			return fmt.Errorf("set %s on %s: %w", strings.TrimPrefix(k, xattrPrefix), name, err)
		}
	}
	return nil
}

package disk

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"

	diskfs "github.com/diskfs/go-diskfs"
	godisk "github.com/diskfs/go-diskfs/disk"
	"github.com/diskfs/go-diskfs/filesystem"
)

// ESP is the EFI System Partition of an image or device, open for writing
// files without mounting it (the build host needs no vfat driver).
// Close must be called: it repairs what go-diskfs leaves wrong.
type ESP struct {
	d     *godisk.Disk
	fs    filesystem.FileSystem
	path  string
	part  Partition
	close bool
}

// FormatESP creates a FAT32 filesystem on the plan's ESP partition of path
// (an image file or block device that already carries the plan's GPT) and
// returns it open for writing. label is at most 11 ASCII characters; it is
// upper-cased as FAT expects.
func FormatESP(path string, plan Plan, label string) (*ESP, error) {
	part, ok := plan.Find(RoleESP)
	if !ok {
		return nil, fmt.Errorf("format esp: %w: the plan has no esp partition", ErrLayout)
	}
	label = strings.ToUpper(label)
	if len(label) > 11 || strings.IndexFunc(label, func(r rune) bool { return r < 0x20 || r > 0x7e || strings.ContainsRune(`"*+,./:;<=>?[\]|`, r) }) >= 0 {
		return nil, fmt.Errorf("format esp: label %q: use at most 11 letters, digits, spaces, - or _", label)
	}
	d, err := openDisk(path, diskfs.ReadWriteExclusive)
	if err != nil {
		return nil, fmt.Errorf("format esp: open %s: %w", path, err)
	}
	f, err := d.CreateFilesystem(godisk.FilesystemSpec{Partition: part.Number, FSType: filesystem.TypeFat32, VolumeLabel: label})
	if err != nil {
		d.Close()
		return nil, fmt.Errorf("format esp: partition %d of %s: %w", part.Number, path, err)
	}
	return &ESP{d: d, fs: f, path: path, part: part}, nil
}

// OpenESP opens the existing FAT32 filesystem on the plan's ESP partition.
func OpenESP(path string, plan Plan) (*ESP, error) {
	part, ok := plan.Find(RoleESP)
	if !ok {
		return nil, fmt.Errorf("open esp: %w: the plan has no esp partition", ErrLayout)
	}
	d, err := openDisk(path, diskfs.ReadWriteExclusive)
	if err != nil {
		return nil, fmt.Errorf("open esp: %s: %w", path, err)
	}
	if _, err := d.GetPartitionTable(); err != nil {
		d.Close()
		return nil, fmt.Errorf("open esp: %s: %w", path, err)
	}
	f, err := d.GetFilesystem(part.Number)
	if err != nil {
		d.Close()
		return nil, fmt.Errorf("open esp: partition %d of %s: %w", part.Number, path, err)
	}
	return &ESP{d: d, fs: f, path: path, part: part}, nil
}

func cleanESPPath(name string) (string, error) {
	for _, el := range strings.Split(name, "/") {
		if el == ".." {
			return "", fmt.Errorf("esp path %q: must not contain ..", name)
		}
	}
	return path.Clean("/" + name), nil
}

// MkdirAll creates a directory and its parents.
func (e *ESP) MkdirAll(name string) error {
	p, err := cleanESPPath(name)
	if err != nil {
		return err
	}
	if p == "/" {
		return nil
	}
	if err := e.fs.Mkdir(p); err != nil {
		return fmt.Errorf("esp mkdir %s: %w", p, err)
	}
	return nil
}

// WriteFile creates or replaces a file with what r yields; parent
// directories are created.
func (e *ESP) WriteFile(name string, r io.Reader) error {
	p, err := cleanESPPath(name)
	if err != nil {
		return err
	}
	if err := e.MkdirAll(path.Dir(p)); err != nil {
		return err
	}
	f, err := e.fs.OpenFile(p, os.O_CREATE|os.O_RDWR|os.O_TRUNC)
	if err != nil {
		return fmt.Errorf("esp create %s: %w", p, err)
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return fmt.Errorf("esp write %s: %w", p, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("esp write %s: %w", p, err)
	}
	return nil
}

// CopyFS copies every directory and regular file of fsys into the ESP
// under dir. Symbolic links and other special files cannot live on FAT and
// are an error.
func (e *ESP) CopyFS(dir string, fsys fs.FS) error {
	return fs.WalkDir(fsys, ".", func(name string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		dst := path.Join("/", dir, name)
		switch {
		case de.IsDir():
			return e.MkdirAll(dst)
		case de.Type().IsRegular():
			f, err := fsys.Open(name)
			if err != nil {
				return err
			}
			defer f.Close()
			return e.WriteFile(dst, f)
		default:
			return fmt.Errorf("esp copy %s: %v files cannot be stored on FAT", name, de.Type())
		}
	})
}

// ReadFile returns a file's contents.
func (e *ESP) ReadFile(name string) ([]byte, error) {
	p, err := cleanESPPath(name)
	if err != nil {
		return nil, err
	}
	f, err := e.fs.OpenFile(p, os.O_RDONLY)
	if err != nil {
		return nil, fmt.Errorf("esp read %s: %w", p, err)
	}
	defer f.Close()
	return io.ReadAll(f)
}

// Close flushes the filesystem, repairs the ".." entries go-diskfs writes
// wrong, and closes the image or device.
func (e *ESP) Close() error {
	if e.close {
		return nil
	}
	e.close = true
	err := e.d.Close()
	f, oerr := os.OpenFile(e.path, os.O_RDWR, 0)
	if oerr != nil {
		return errors.Join(err, fmt.Errorf("esp close: reopen %s: %w", e.path, oerr))
	}
	ferr := fixDotDot(f, int64(e.part.Offset()))
	return errors.Join(err, ferr, f.Close())
}

// fixDotDot repairs a go-diskfs v1.9.4 bug: the ".." entry of every
// directory directly under the root points to the root's cluster (2)
// instead of 0, as the FAT specification requires. Firmware and Linux do
// not follow "..", but fsck.fat reports it and systemd-fsck would "fix" the
// ESP on first boot. The repair is idempotent and touches nothing else.
func fixDotDot(f io.ReaderAt, off int64) error {
	w, ok := f.(io.WriterAt)
	if !ok {
		return errors.New("fix fat: not writable")
	}
	bs := make([]byte, 512)
	if _, err := f.ReadAt(bs, off); err != nil {
		return fmt.Errorf("fix fat: read boot sector: %w", err)
	}
	bps := int64(binary.LittleEndian.Uint16(bs[11:]))
	spc := int64(bs[13])
	reserved := int64(binary.LittleEndian.Uint16(bs[14:]))
	nfats := int64(bs[16])
	spf := int64(binary.LittleEndian.Uint32(bs[36:]))
	root := binary.LittleEndian.Uint32(bs[44:])
	if bps == 0 || spc == 0 || spf == 0 || bs[510] != 0x55 || bs[511] != 0xaa {
		return errors.New("fix fat: not a FAT32 boot sector")
	}
	clusterBytes := bps * spc
	dataStart := off + (reserved+nfats*spf)*bps
	clusterOff := func(c uint32) int64 { return dataStart + int64(c-2)*clusterBytes }
	next := func(c uint32) (uint32, error) {
		var b [4]byte
		if _, err := f.ReadAt(b[:], off+reserved*bps+int64(c)*4); err != nil {
			return 0, err
		}
		return binary.LittleEndian.Uint32(b[:]) & 0x0fffffff, nil
	}
	buf := make([]byte, clusterBytes)
	for c, hops := root, 0; c >= 2 && c < 0x0ffffff8; hops++ {
		if hops > 1<<20 {
			return errors.New("fix fat: root directory cluster chain loops")
		}
		if _, err := f.ReadAt(buf, clusterOff(c)); err != nil {
			return fmt.Errorf("fix fat: read root directory: %w", err)
		}
		for i := int64(0); i < clusterBytes; i += 32 {
			ent := buf[i : i+32]
			if ent[0] == 0 {
				return nil // end of directory
			}
			if ent[0] == 0xe5 || ent[11] == 0x0f || ent[11]&0x10 == 0 || ent[0] == '.' {
				continue
			}
			sub := uint32(binary.LittleEndian.Uint16(ent[20:]))<<16 | uint32(binary.LittleEndian.Uint16(ent[26:]))
			if sub < 2 {
				continue
			}
			var dd [32]byte
			ddOff := clusterOff(sub) + 32 // ".." is the second entry
			if _, err := f.ReadAt(dd[:], ddOff); err != nil {
				return fmt.Errorf("fix fat: read '..': %w", err)
			}
			if string(dd[:11]) != "..         " {
				continue
			}
			if binary.LittleEndian.Uint16(dd[20:]) == 0 && binary.LittleEndian.Uint16(dd[26:]) == 0 {
				continue
			}
			var zero [2]byte
			if _, err := w.WriteAt(zero[:], ddOff+20); err != nil {
				return err
			}
			if _, err := w.WriteAt(zero[:], ddOff+26); err != nil {
				return err
			}
		}
		var err error
		if c, err = next(c); err != nil {
			return fmt.Errorf("fix fat: read FAT: %w", err)
		}
	}
	return nil
}

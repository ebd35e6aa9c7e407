package boot

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"strings"

	"github.com/klauspost/compress/zstd"
)

// Initramfs compressions CompressInitramfs writes: the two every
// distribution kernel paczfs builds for unpacks (CONFIG_RD_ZSTD,
// CONFIG_RD_GZIP).
const (
	CompressZstd = "zstd"
	CompressGzip = "gzip"
)

// CompressInitramfs writes image, an uncompressed initramfs (newc cpio
// archives one after another), to w as the kernel expects it: the
// leading early archives (dracut's early_cpio and kernel/… members: CPU
// microcode, ACPI tables, which the kernel reads before it unpacks
// anything) copied unchanged, and everything after them compressed with
// method (CompressZstd, at zstd's default level, on every CPU; or
// CompressGzip). An image whose main part is compressed already is
// written unchanged (compressed is false); one that does not start with
// a cpio archive is ErrInitramfsFormat.
//
// The kernel's view is the same as the uncompressed image's: the same
// archives, in the same order.
func CompressInitramfs(w io.Writer, image []byte, method string) (compressed bool, err error) {
	if method != CompressZstd && method != CompressGzip {
		return false, fmt.Errorf("initramfs compression %q: use %s or %s", method, CompressZstd, CompressGzip)
	}
	if len(image) < 6 || !isCpio(image) {
		return false, fmt.Errorf("%w: an uncompressed initramfs starts with a newc cpio archive", ErrInitramfsFormat)
	}
	off := 0
	for {
		next, early, err := earlyArchive(image, off)
		if err != nil {
			return false, err
		}
		if !early {
			break
		}
		off = next
		for off < len(image) && image[off] == 0 {
			off++
		}
		if len(image)-off < 6 || !isCpio(image[off:]) {
			break
		}
	}
	if _, err := w.Write(image[:off]); err != nil {
		return false, err
	}
	rest := image[off:]
	if len(rest) < 6 || !isCpio(rest) {
		// Nothing left, or the generator compressed it already.
		_, err := w.Write(rest)
		return false, err
	}
	var enc io.WriteCloser
	if method == CompressZstd {
		enc, err = zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedDefault))
	} else {
		enc, err = gzip.NewWriterLevel(w, gzip.DefaultCompression)
	}
	if err != nil {
		return false, err
	}
	if _, err := enc.Write(rest); err != nil {
		enc.Close()
		return false, err
	}
	return true, enc.Close()
}

// earlyArchive reads the newc archive at image[off:] and returns where
// its trailer ends and whether every member is early data: ".",
// "early_cpio", "kernel" or under "kernel/".
func earlyArchive(image []byte, off int) (next int, early bool, err error) {
	early = true
	for {
		if len(image)-off < 110 {
			return 0, false, fmt.Errorf("%w: cpio header at byte %d cut short", ErrInitramfsFormat, off)
		}
		size64, nameSize64, err := newcHeader(image[off : off+110])
		if err != nil {
			return 0, false, fmt.Errorf("at byte %d: %w", off, err)
		}
		size, nameSize := int(size64), int(nameSize64)
		nameEnd := off + 110 + nameSize
		if nameEnd > len(image) {
			return 0, false, fmt.Errorf("%w: cpio name at byte %d cut short", ErrInitramfsFormat, off)
		}
		name := cleanMember(string(bytes.TrimRight(image[off+110:nameEnd], "\x00")))
		data := nameEnd + int(pad4(int64(110+nameSize)))
		end := data + size + int(pad4(int64(size)))
		if data > len(image) || end > len(image) && name != "TRAILER!!!" {
			return 0, false, fmt.Errorf("%w: cpio member %q runs past the end", ErrInitramfsFormat, name)
		}
		if name == "TRAILER!!!" {
			return min(end, len(image)), early, nil
		}
		if name != "" && name != "." && name != "early_cpio" && name != "kernel" && !strings.HasPrefix(name, "kernel/") {
			early = false
		}
		off = end
	}
}

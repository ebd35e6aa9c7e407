package boot

import (
	"bufio"
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
	"github.com/ulikunitz/xz/lzma"
)

// ErrInitramfsFormat: an initramfs is not a series of newc cpio archives,
// uncompressed or compressed with gzip, zstd, xz, lzma or bzip2 (the
// compressions dracut and mkinitcpio default to and offer, lz4 and lzo
// aside).
var ErrInitramfsFormat = errors.New("not an initramfs paczfs can read")

// maxCpioName bounds a member's name: newc gives its length in the
// header, and a damaged header must not make the reader allocate gigabytes.
const maxCpioName = 64 << 10

// InitramfsMissing reads the initramfs r (as the kernel unpacks it: newc
// cpio archives one after another, uncompressed ones first, such as early
// microcode, then a compressed one) and returns the paths of must that no
// member has. Paths are compared whole, without a leading / or ./ . It
// stops reading as soon as every path is found, so a check for a few
// files near the start does not decompress the whole image.
//
// It needs no tool in the target and runs in the calling process:
// listing a 40 MB dracut image with lsinitrd takes 50 s in an emulated
// VM, where this stops after the first files. A format it cannot read
// (lz4, lzo) is ErrInitramfsFormat; list those with the generator's own
// tool instead.
func InitramfsMissing(r io.Reader, must []string) ([]string, error) {
	want := map[string]bool{}
	for _, m := range must {
		want[cleanMember(m)] = true
	}
	found := func(name string) bool {
		delete(want, cleanMember(name))
		return len(want) == 0
	}
	missing := func() []string {
		var out []string
		for _, m := range must {
			if want[cleanMember(m)] {
				out = append(out, m)
			}
		}
		return out
	}
	if len(want) == 0 {
		return nil, nil
	}
	br := bufio.NewReaderSize(r, 64<<10)
	for segment := 0; ; segment++ {
		if err := skipZeros(br); err == io.EOF {
			if segment == 0 {
				return nil, fmt.Errorf("%w: empty", ErrInitramfsFormat)
			}
			return missing(), nil
		} else if err != nil {
			return nil, err
		}
		head, err := br.Peek(6)
		if err != nil {
			return nil, fmt.Errorf("%w: segment %d: %v", ErrInitramfsFormat, segment, err)
		}
		if isCpio(head) {
			done, err := readCpio(br, found)
			if err != nil {
				return nil, fmt.Errorf("segment %d: %w", segment, err)
			}
			if done {
				return nil, nil
			}
			continue
		}
		dec, name, err := decompressor(br, head)
		if err != nil {
			return nil, fmt.Errorf("segment %d: %w", segment, err)
		}
		// A compressed segment is the last: the kernel stops there too
		// (what follows it would be the decompressor's own trailing
		// data). It may hold several archives.
		db := bufio.NewReaderSize(dec, 64<<10)
		for archives := 0; ; archives++ {
			if err := skipZeros(db); err == io.EOF || err != nil && archives > 0 {
				// After a whole archive, what the decompressor cannot
				// read is padding past the stream's end, which the
				// kernel ignores as well.
				return missing(), nil
			} else if err != nil {
				return nil, fmt.Errorf("%w: segment %d (%s): %v", ErrInitramfsFormat, segment, name, err)
			}
			done, err := readCpio(db, found)
			if err != nil {
				return nil, fmt.Errorf("segment %d (%s): %w", segment, name, err)
			}
			if done {
				return nil, nil
			}
		}
	}
}

func cleanMember(p string) string {
	p = strings.TrimPrefix(p, "./")
	return strings.Trim(p, "/")
}

func isCpio(b []byte) bool {
	return bytes.Equal(b[:6], []byte("070701")) || bytes.Equal(b[:6], []byte("070702"))
}

// skipZeros skips the NUL padding between archives (cpio pads its
// trailer to 512 bytes; generators align segments to 4).
func skipZeros(br *bufio.Reader) error {
	for {
		b, err := br.Peek(1)
		if err != nil {
			return err
		}
		if b[0] != 0 {
			return nil
		}
		if _, err := br.Discard(1); err != nil {
			return err
		}
	}
}

func decompressor(br *bufio.Reader, head []byte) (io.Reader, string, error) {
	switch {
	case bytes.HasPrefix(head, []byte{0x1f, 0x8b}):
		z, err := gzip.NewReader(br)
		if err != nil {
			return nil, "gzip", fmt.Errorf("%w: gzip: %v", ErrInitramfsFormat, err)
		}
		return z, "gzip", nil
	case bytes.HasPrefix(head, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		// The generator's window may be large (zstd --long); 1 GiB bounds
		// what a damaged header can ask for.
		z, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(1<<30))
		if err != nil {
			return nil, "zstd", fmt.Errorf("%w: zstd: %v", ErrInitramfsFormat, err)
		}
		return z.IOReadCloser(), "zstd", nil
	case bytes.HasPrefix(head, []byte{0xfd, '7', 'z', 'X', 'Z', 0}):
		z, err := xz.NewReader(br)
		if err != nil {
			return nil, "xz", fmt.Errorf("%w: xz: %v", ErrInitramfsFormat, err)
		}
		return z, "xz", nil
	case bytes.HasPrefix(head, []byte{0x5d, 0, 0}):
		z, err := lzma.NewReader(br)
		if err != nil {
			return nil, "lzma", fmt.Errorf("%w: lzma: %v", ErrInitramfsFormat, err)
		}
		return z, "lzma", nil
	case bytes.HasPrefix(head, []byte("BZh")):
		return bzip2.NewReader(br), "bzip2", nil
	case bytes.HasPrefix(head, []byte{0x02, 0x21, 0x4c, 0x18}), bytes.HasPrefix(head, []byte{0x04, 0x22, 0x4d, 0x18}):
		return nil, "lz4", fmt.Errorf("%w: lz4", ErrInitramfsFormat)
	case bytes.HasPrefix(head, []byte{0x89, 'L', 'Z', 'O'}):
		return nil, "lzo", fmt.Errorf("%w: lzo", ErrInitramfsFormat)
	}
	return nil, "", fmt.Errorf("%w: starts with % x", ErrInitramfsFormat, head)
}

// readCpio reads one newc archive up to its trailer, calling found with
// each member's name; done: found reported every path found.
func readCpio(br *bufio.Reader, found func(string) bool) (done bool, err error) {
	var hdr [110]byte
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			return false, fmt.Errorf("%w: cpio header: %v", ErrInitramfsFormat, err)
		}
		size, nameSize, err := newcHeader(hdr[:])
		if err != nil {
			return false, err
		}
		name := make([]byte, nameSize)
		if _, err := io.ReadFull(br, name); err != nil {
			return false, fmt.Errorf("%w: cpio name: %v", ErrInitramfsFormat, err)
		}
		n := string(bytes.TrimRight(name, "\x00"))
		// The header and name are padded to 4 bytes, and so is the data.
		if _, err := br.Discard(int(pad4(110 + nameSize))); err != nil {
			return false, fmt.Errorf("%w: cpio name padding: %v", ErrInitramfsFormat, err)
		}
		if n == "TRAILER!!!" {
			return false, nil
		}
		if found(n) {
			return true, nil
		}
		if _, err := io.CopyN(io.Discard, br, size+pad4(size)); err != nil {
			return false, fmt.Errorf("%w: cpio member %s: %v", ErrInitramfsFormat, n, err)
		}
	}
}

func pad4(n int64) int64 { return (4 - n%4) % 4 }

// newcHeader reads a newc member's header (110 bytes): the size of its
// data and of its name (NUL included), bounded.
func newcHeader(hdr []byte) (size, nameSize int64, err error) {
	if len(hdr) < 110 || !isCpio(hdr) {
		return 0, 0, fmt.Errorf("%w: cpio header magic % x", ErrInitramfsFormat, hdr[:min(6, len(hdr))])
	}
	field := func(i int) (int64, error) {
		v, err := strconv.ParseUint(string(hdr[6+8*i:14+8*i]), 16, 32)
		return int64(v), err
	}
	size, err1 := field(6)
	nameSize, err2 := field(11)
	if err := errors.Join(err1, err2); err != nil {
		return 0, 0, fmt.Errorf("%w: cpio header: %v", ErrInitramfsFormat, err)
	}
	if nameSize < 1 || nameSize > maxCpioName {
		return 0, 0, fmt.Errorf("%w: cpio name of %d bytes", ErrInitramfsFormat, nameSize)
	}
	return size, nameSize, nil
}

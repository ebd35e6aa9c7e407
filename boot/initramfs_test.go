package boot_test

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/ulikunitz/xz"
	"github.com/ulikunitz/xz/lzma"

	"github.com/paczfs/paczfs/boot"
	"github.com/paczfs/paczfs/internal/testutil"
)

var newc = testutil.Newc

func compress(t testing.TB, kind string, data []byte) []byte {
	var b bytes.Buffer
	var w io.WriteCloser
	var err error
	switch kind {
	case "gzip":
		w = gzip.NewWriter(&b)
	case "zstd":
		w, err = zstd.NewWriter(&b)
	case "xz":
		w, err = xz.NewWriter(&b)
	case "lzma":
		w, err = lzma.NewWriter(&b)
	default:
		t.Fatalf("no writer for %s", kind)
	}
	require.NoError(t, err)
	_, err = w.Write(data)
	require.NoError(t, err)
	require.NoError(t, w.Close())
	return b.Bytes()
}

// An image as dracut and mkinitcpio write one: an uncompressed early
// archive (microcode), then the main archive, compressed.
func TestInitramfsMissingReadsEachCompression(t *testing.T) {
	early := newc("kernel/", "kernel/x86/microcode/GenuineIntel.bin")
	main := newc(".", "bin", "etc/", "etc/fstab", "etc/hostid", "usr/lib/modules/6.12/zfs.ko.zst", "init")
	for _, kind := range []string{"gzip", "zstd", "xz", "lzma"} {
		t.Run(kind, func(t *testing.T) {
			img := append(bytes.Clone(early), compress(t, kind, main)...)
			missing, err := boot.InitramfsMissing(bytes.NewReader(img), []string{"/etc/hostid", "./init", "usr/lib/modules/6.12/zfs.ko.zst", "kernel/x86/microcode/GenuineIntel.bin"})
			require.NoError(t, err)
			assert.Empty(t, missing)

			missing, err = boot.InitramfsMissing(bytes.NewReader(img), []string{"etc/hostid", "/etc/zfs/zpool.cache", "etc/host"})
			require.NoError(t, err)
			assert.Equal(t, []string{"/etc/zfs/zpool.cache", "etc/host"}, missing, "the caller's spelling, whole paths only")
		})
	}
}

func TestInitramfsMissingUncompressedAndSeveralArchives(t *testing.T) {
	img := append(newc("etc/", "etc/fstab"), newc("etc/hostid")...)
	missing, err := boot.InitramfsMissing(bytes.NewReader(img), []string{"etc/hostid", "etc/fstab"})
	require.NoError(t, err)
	assert.Empty(t, missing)

	// Two archives inside one compressed stream, padding after it.
	z := compress(t, "zstd", append(newc("bin"), newc("etc/hostid")...))
	img = append(newc("early"), append(z, make([]byte, 300)...)...)
	missing, err = boot.InitramfsMissing(bytes.NewReader(img), []string{"etc/hostid", "lib"})
	require.NoError(t, err)
	assert.Equal(t, []string{"lib"}, missing)
}

// failAfter fails every read past n bytes: the reader must have stopped
// before it.
type failAfter struct {
	r io.Reader
	n int
}

func (f *failAfter) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, errors.New("read past the member that was asked for")
	}
	if len(p) > f.n {
		p = p[:f.n]
	}
	n, err := f.r.Read(p)
	f.n -= n
	return n, err
}

func TestInitramfsMissingStopsAtTheLastPathFound(t *testing.T) {
	big := make([]string, 0, 5000)
	for i := range 5000 {
		big = append(big, fmt.Sprintf("usr/lib/modules/6.12/kernel/m%04d.ko", i))
	}
	img := newc(append([]string{"etc/hostid"}, big...)...)
	r := &failAfter{r: bytes.NewReader(img), n: 128 << 10}
	require.Greater(t, len(img), 2*r.n)
	missing, err := boot.InitramfsMissing(r, []string{"etc/hostid"})
	require.NoError(t, err)
	assert.Empty(t, missing)
}

func TestInitramfsMissingRejectsWhatItCannotRead(t *testing.T) {
	whole := compress(t, "gzip", newc("etc/hostid", "init"))
	for name, img := range map[string][]byte{
		"empty":             nil,
		"zeros":             make([]byte, 1024),
		"text":              []byte("#!/bin/sh\necho not an initramfs\n"),
		"lz4":               {0x02, 0x21, 0x4c, 0x18, 1, 2, 3, 4},
		"lzo":               {0x89, 'L', 'Z', 'O', 0, 1, 2, 3},
		"truncated cpio":    newc("etc/fstab", "etc/hostid")[:150],
		"truncated gzip":    whole[:len(whole)/2],
		"huge name":         []byte("070701" + "00000001000081A4000000000000000000000001000000000000000000000000000000000000000000000000FFFFFFFF00000000"),
		"bad header number": []byte("070701" + "zz000001000081A4000000000000000000000001000000000000000000000000000000000000000000000000000000040000000000"),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := boot.InitramfsMissing(bytes.NewReader(img), []string{"etc/passwd"})
			assert.ErrorIs(t, err, boot.ErrInitramfsFormat)
		})
	}
}

func FuzzInitramfsMissing(f *testing.F) {
	f.Add(newc("etc/hostid"))
	f.Add(append(newc("early"), compress(f, "gzip", newc("etc/hostid"))...))
	f.Add(compress(f, "zstd", newc("etc/", "etc/hostid")))
	f.Add(compress(f, "xz", newc("init")))
	f.Fuzz(func(t *testing.T, img []byte) {
		_, _ = boot.InitramfsMissing(bytes.NewReader(img), []string{"etc/hostid", "init"})
	})
}

func ExampleInitramfsMissing() {
	// An initramfs whose pool would be imported with hostid 0: it has
	// no /etc/hostid.
	var img bytes.Buffer
	zw, _ := zstd.NewWriter(&img)
	zw.Write(newc("init", "etc/", "etc/fstab", "usr/bin/zpool"))
	zw.Close()
	missing, err := boot.InitramfsMissing(&img, []string{"/etc/hostid", "/usr/bin/zpool"})
	fmt.Println(missing, err)
	// Output: [/etc/hostid] <nil>
}

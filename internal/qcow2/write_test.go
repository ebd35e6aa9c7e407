package qcow2

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/paczfs/paczfs/internal/testutil"
)

// rawImage writes a sparse raw image of size bytes with data where a
// disk image has it: incompressible clusters (ZFS's lz4 blocks),
// compressible ones (text, metadata), clusters of written zeros, runs
// across an L2 table's 512 MiB, a cluster only partly written, and data
// in the last, short cluster.
func rawImage(t *testing.T, dir string, size int64) string {
	t.Helper()
	p := filepath.Join(dir, "disk.raw")
	f, err := os.Create(p)
	require.NoError(t, err)
	defer f.Close()
	require.NoError(t, f.Truncate(size))
	r := rand.New(rand.NewPCG(7, 8))
	noise := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.IntN(256))
		}
		return b
	}
	var text bytes.Buffer
	for i := 0; text.Len() < 3<<20; i++ {
		fmt.Fprintf(&text, "usr/lib/modules/6.12.%d-arch1-1/kernel/drivers/net/%x.ko.zst\n", i%40, r.Uint32())
	}
	write := func(off int64, b []byte) {
		_, err := f.WriteAt(b, off)
		require.NoError(t, err)
	}
	write(0, noise(1<<20))                         // stored clusters
	write(1<<20, text.Bytes())                     // compressed clusters
	write(5<<20, make([]byte, 256<<10))            // zeros, allocated
	write(512<<20-96<<10, noise(64<<10))           // before and across the first L2 table's end
	write(512<<20+32<<10, text.Bytes()[:200<<10])  // after it, unaligned
	write(700<<20+1000, []byte("one short write")) // a cluster mostly zeros
	// Stored and compressed clusters mixed, so that compressed data
	// often has to find room around a stored one.
	for i := int64(0); i < 300; i++ {
		off := 800<<20 + i*ClusterSize
		if r.IntN(3) == 0 {
			write(off, noise(ClusterSize))
		} else {
			write(off, text.Bytes()[i*1000:i*1000+ClusterSize])
		}
	}
	// Clusters that repeat 16 KiB of noise: a deflate with a 32 KiB
	// window would shrink them to a quarter, reaching back beyond QEMU's.
	for i := int64(0); i < 4; i++ {
		n := noise(16 << 10)
		write(900<<20+i*ClusterSize, bytes.Repeat(n, 4))
	}
	write(size-3000, noise(3000)) // the last cluster is short
	return p
}

func writeQCOW2(t *testing.T, src, dst string, opt Options) Stats {
	t.Helper()
	in, err := os.Open(src)
	require.NoError(t, err)
	defer in.Close()
	out, err := os.Create(dst)
	require.NoError(t, err)
	defer out.Close()
	st, err := Write(context.Background(), out, in, opt)
	require.NoError(t, err)
	return st
}

// The image qemu-img reads back is the raw image, qemu-img check finds
// no error and no leak, and every compressed cluster inflates to its
// raw cluster within QEMU's 4 KiB window.
func TestWriteIsWhatQemuImgReads(t *testing.T) {
	qemuImg := testutil.RequireTool(t, "qemu-img", "qemu-utils")
	dir := t.TempDir()
	const size = int64(1<<30 + 5*512) // two L2 tables; not a whole number of clusters
	src := rawImage(t, dir, size)
	dst := filepath.Join(dir, "disk.qcow2")
	var calls, lastDone, lastTotal int64
	st := writeQCOW2(t, src, dst, Options{Workers: 3, Progress: func(done, total int64) {
		calls++
		lastDone, lastTotal = done, total
	}})
	assert.Equal(t, size, st.Size)
	assert.Positive(t, st.Compressed)
	assert.Positive(t, st.Stored)
	assert.GreaterOrEqual(t, st.Zero, int64(4), "the written zeros are left unallocated")
	assert.Equal(t, lastTotal, lastDone)
	assert.Equal(t, calls, lastTotal)
	assert.Equal(t, st.Compressed+st.Stored+st.Zero, lastTotal)

	out := testutil.Run(t, qemuImg, "check", "-f", "qcow2", "--output=json", dst)
	var check struct {
		CheckErrors  int `json:"check-errors"`
		Leaks        int `json:"leaks"`
		Corruptions  int `json:"corruptions"`
		Compressed   int `json:"compressed-clusters"`
		Allocated    int `json:"allocated-clusters"`
		ImageEndOffs int `json:"image-end-offset"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &check), out)
	assert.Zero(t, check.CheckErrors, out)
	assert.Zero(t, check.Leaks, out)
	assert.Zero(t, check.Corruptions, out)
	assert.EqualValues(t, st.Compressed, check.Compressed, out)
	assert.EqualValues(t, st.Compressed+st.Stored, check.Allocated, out)
	assert.Contains(t, testutil.Run(t, qemuImg, "compare", "-f", "raw", "-F", "qcow2", src, dst), "Images are identical")
	info := testutil.Run(t, qemuImg, "info", "--output=json", dst)
	assert.Contains(t, info, fmt.Sprintf(`"virtual-size": %d`, size))
	assert.Contains(t, info, `"compat": "1.1"`)

	raw, err := os.ReadFile(src)
	require.NoError(t, err)
	img, err := os.ReadFile(dst)
	require.NoError(t, err)
	assert.EqualValues(t, len(img), st.FileSize)
	n := 0
	for index, stream := range compressedClusters(t, img) {
		got, farthest, err := inflate(stream)
		require.NoError(t, err, "cluster %d", index)
		require.Len(t, got, ClusterSize, "cluster %d", index)
		want := make([]byte, ClusterSize)
		copy(want, raw[index*ClusterSize:])
		require.True(t, bytes.Equal(want, got), "cluster %d", index)
		require.LessOrEqual(t, farthest, 4096, "cluster %d reaches beyond QEMU's 4 KiB window (inflateInit2 -12)", index)
		n++
	}
	assert.EqualValues(t, st.Compressed, n)
}

// compressedClusters reads a QCOW2 file's L1 and L2 tables and returns
// each compressed cluster's bytes by its index on the virtual disk.
func compressedClusters(t *testing.T, img []byte) map[int64][]byte {
	be := binary.BigEndian
	require.Equal(t, "QFI\xfb", string(img[:4]))
	l1Size, l1Off := int64(be.Uint32(img[36:])), int64(be.Uint64(img[40:]))
	out := map[int64][]byte{}
	for i := range l1Size {
		l2Off := int64(be.Uint64(img[l1Off+i*8:]) & standardMask)
		if l2Off == 0 {
			continue
		}
		for k := range int64(l2Entries) {
			e := be.Uint64(img[l2Off+k*8:])
			if e&flagCompressed == 0 {
				continue
			}
			off := int64(e & offsetMask)
			csize := (int64(e>>csizeShift&0xff)+1)*512 - off%512
			end := min(off+csize, int64(len(img)))
			out[i*l2Entries+k] = img[off:end]
		}
	}
	return out
}

// Same input, same bytes; and no larger than qemu-img's own zlib output.
func TestWriteIsReproducibleAndSmall(t *testing.T) {
	qemuImg := testutil.RequireTool(t, "qemu-img", "qemu-utils")
	dir := t.TempDir()
	src := rawImage(t, dir, 1<<30)
	a, b := filepath.Join(dir, "a.qcow2"), filepath.Join(dir, "b.qcow2")
	writeQCOW2(t, src, a, Options{Workers: 1})
	st := writeQCOW2(t, src, b, Options{Workers: 4})
	da, err := os.ReadFile(a)
	require.NoError(t, err)
	db, err := os.ReadFile(b)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(da, db), "one worker and four write the same file")

	q := filepath.Join(dir, "qemu.qcow2")
	testutil.Run(t, qemuImg, "convert", "-f", "raw", "-c", "-O", "qcow2", src, q)
	fi, err := os.Stat(q)
	require.NoError(t, err)
	t.Logf("paczfs %d bytes, qemu-img %d bytes", st.FileSize, fi.Size())
	assert.LessOrEqual(t, st.FileSize, fi.Size()+fi.Size()/50, "within 2%% of qemu-img's size")
}

// A cancelled write stops, and what it left has no QCOW2 header.
func TestWriteCancelledLeavesNoHeader(t *testing.T) {
	dir := t.TempDir()
	src := rawImage(t, dir, 1<<30)
	in, err := os.Open(src)
	require.NoError(t, err)
	defer in.Close()
	out, err := os.Create(filepath.Join(dir, "x.qcow2"))
	require.NoError(t, err)
	defer out.Close()
	ctx, cancel := context.WithCancel(context.Background())
	_, err = Write(ctx, out, in, Options{Progress: func(done, total int64) {
		if done == 10 {
			cancel()
		}
	}})
	require.ErrorIs(t, err, context.Canceled)
	head := make([]byte, 4)
	_, err = out.ReadAt(head, 0)
	if err == nil {
		assert.NotEqual(t, "QFI\xfb", string(head))
	}
}

func TestWriteRefusesBadFiles(t *testing.T) {
	dir := t.TempDir()
	d, err := os.Open(dir)
	require.NoError(t, err)
	defer d.Close()
	out, err := os.Create(filepath.Join(dir, "x.qcow2"))
	require.NoError(t, err)
	defer out.Close()
	_, err = Write(context.Background(), out, d, Options{})
	require.ErrorIs(t, err, ErrSource)

	empty, err := os.Create(filepath.Join(dir, "empty.raw"))
	require.NoError(t, err)
	defer empty.Close()
	_, err = Write(context.Background(), out, empty, Options{})
	require.ErrorIs(t, err, ErrSource)

	src := rawImage(t, dir, 64<<20+1<<30)
	in, err := os.Open(src)
	require.NoError(t, err)
	defer in.Close()
	_, err = out.WriteString("something")
	require.NoError(t, err)
	_, err = Write(context.Background(), out, in, Options{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "not empty")
}

package qcow2

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"

	"github.com/klauspost/compress/flate"
	"golang.org/x/sys/unix"
)

const (
	clusterBits = 16
	// ClusterSize is the size of the clusters Write writes.
	ClusterSize = 1 << clusterBits
	l2Entries   = ClusterSize / 8
	// refcountOrder 4: 16-bit refcounts, qemu-img's default.
	refcountOrder = 4
	refsPerBlock  = ClusterSize * 8 >> refcountOrder
	headerLength  = 104

	flagCopied     = uint64(1) << 63 // refcount exactly 1
	flagCompressed = uint64(1) << 62
	// csizeShift: a compressed cluster's descriptor holds its byte offset
	// below this bit and its additional 512-byte sectors from it.
	csizeShift = 62 - (clusterBits - 8)
	offsetMask = uint64(1)<<csizeShift - 1
	// standardMask: a standard cluster's or L2 table's offset, bits 9-55.
	standardMask = uint64(0x00fffffffffffe00)

	// Window is the deflate window every compressed cluster is written
	// with: QEMU inflates clusters with windowBits -12.
	Window = 4096
	// reserveClusters make a region: compressed and stored clusters share
	// it from either end, so little is left unused between them (qemu-img
	// leaves the rest of a cluster unused at each stored cluster).
	reserveClusters = 64
)

// ErrSource is returned for a source Write cannot convert.
var ErrSource = errors.New("qcow2: unusable source image")

// Options tune Write. The zero value is ready to use.
type Options struct {
	// Workers compress clusters at once; 0 means runtime.GOMAXPROCS.
	Workers int
	// Progress, when set, is called from one goroutine with the clusters
	// of data done and their total, after every cluster.
	Progress func(done, total int64)
}

// Stats counts what Write wrote.
type Stats struct {
	Size       int64 // the virtual disk's size: the source's
	Compressed int64 // clusters stored compressed
	Stored     int64 // clusters stored whole: deflate did not shrink them
	Zero       int64 // clusters of zeros in the source's data, left unallocated
	FileSize   int64 // bytes of the QCOW2 file
}

// Write writes the raw image src (a file or a block device) as a
// compressed QCOW2 image to dst, which must be empty. It reads only src's data extents (SEEK_DATA), and
// writes in the same order for the same input. On an error dst holds no
// header: it is not a QCOW2 image, and the caller removes it.
func Write(ctx context.Context, dst, src *os.File, opt Options) (Stats, error) {
	fi, err := src.Stat()
	if err != nil {
		return Stats{}, err
	}
	size := fi.Size()
	if fi.Mode()&os.ModeDevice != 0 && fi.Mode()&os.ModeCharDevice == 0 {
		// A block device (a build on a whole disk): its size is its end.
		if size, err = src.Seek(0, io.SeekEnd); err != nil {
			return Stats{}, fmt.Errorf("qcow2: the size of %s: %w", src.Name(), err)
		}
	} else if !fi.Mode().IsRegular() {
		return Stats{}, fmt.Errorf("%w: %s is neither a regular file nor a block device (mode %s)", ErrSource, src.Name(), fi.Mode())
	}
	if size <= 0 {
		return Stats{}, fmt.Errorf("%w: %s is empty", ErrSource, src.Name())
	}
	if dfi, err := dst.Stat(); err != nil {
		return Stats{}, err
	} else if dfi.Size() != 0 {
		return Stats{}, fmt.Errorf("qcow2: %s is not empty (%d bytes)", dst.Name(), dfi.Size())
	}
	clusters, err := dataClusters(src, size)
	if err != nil {
		return Stats{}, fmt.Errorf("qcow2: reading %s's extents: %w", src.Name(), err)
	}
	w := newWriter(dst, size)
	if err := w.run(ctx, src, clusters, opt); err != nil {
		return Stats{}, err
	}
	if err := w.finish(); err != nil {
		return Stats{}, err
	}
	w.stats.Size = size
	w.stats.FileSize = w.end
	return w.stats, nil
}

// dataClusters lists the index of every cluster holding data, in order:
// all of them where the file system cannot say where its holes are.
func dataClusters(f *os.File, size int64) ([]int64, error) {
	n := (size + ClusterSize - 1) / ClusterSize
	var out []int64
	fd := int(f.Fd())
	for off := int64(0); off < size; {
		data, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break
		}
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP) {
			out = out[:0]
			for i := int64(0); i < n; i++ {
				out = append(out, i)
			}
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil {
			return nil, err
		}
		first, last := data/ClusterSize, (hole-1)/ClusterSize
		if len(out) > 0 && out[len(out)-1] >= first {
			first = out[len(out)-1] + 1
		}
		for i := first; i <= last && i < n; i++ {
			out = append(out, i)
		}
		off = hole
	}
	return out, nil
}

// job is one cluster: read and compressed by a worker, written in order.
type job struct {
	seq, index int64
	data       []byte // compressed, or the cluster itself when stored
	zero       bool
	compressed bool
	err        error
}

type writer struct {
	f    *os.File
	size int64
	end  int64 // the file's end: where the next region starts
	// The current region (reserveClusters at the file's end): compressed
	// clusters are packed from its start up to cFill, stored clusters
	// take whole clusters from its end down to sTop. It is full when the
	// two meet: less than a cluster is left unused.
	cFill, sTop, rEnd int64
	regionStored      []storedAt // the region's stored clusters, in order
	l2                map[int64][]uint64
	refs              []uint16
	stats             Stats
}

type storedAt struct{ index, off int64 }

func newWriter(f *os.File, size int64) *writer {
	return &writer{f: f, size: size, end: ClusterSize, l2: map[int64][]uint64{}, refs: []uint16{1}}
}

func roundUp(n int64) int64 { return (n + ClusterSize - 1) / ClusterSize * ClusterSize }

func (w *writer) ref(cluster int64, delta int) {
	for int64(len(w.refs)) <= cluster {
		w.refs = append(w.refs, 0)
	}
	w.refs[cluster] = uint16(int(w.refs[cluster]) + delta)
}

// alloc allocates n clusters at the file's end, each with one reference.
func (w *writer) alloc(n int64) int64 {
	off := w.end
	w.end += n * ClusterSize
	for c := off / ClusterSize; c < w.end/ClusterSize; c++ {
		w.ref(c, 1)
	}
	return off
}

func (w *writer) newRegion() {
	w.cFill = w.end
	w.end += reserveClusters * ClusterSize
	w.sTop, w.rEnd = w.end, w.end
	w.regionStored = w.regionStored[:0]
}

func (w *writer) setL2(index int64, entry uint64) {
	t := w.l2[index/l2Entries]
	if t == nil {
		t = make([]uint64, l2Entries)
		w.l2[index/l2Entries] = t
	}
	t[index%l2Entries] = entry
}

// put writes one cluster's data and records where.
func (w *writer) put(j *job) error {
	if j.zero {
		w.stats.Zero++
		return nil
	}
	if !j.compressed {
		if w.rEnd == 0 || w.sTop-ClusterSize < roundUp(w.cFill) {
			w.newRegion()
		}
		w.sTop -= ClusterSize
		off := w.sTop
		if _, err := w.f.WriteAt(j.data, off); err != nil {
			return err
		}
		w.ref(off/ClusterSize, 1)
		w.setL2(j.index, uint64(off)|flagCopied)
		w.regionStored = append(w.regionStored, storedAt{j.index, off})
		w.stats.Stored++
		return nil
	}
	n := int64(len(j.data))
	if w.rEnd == 0 || w.cFill+n > w.sTop {
		w.newRegion()
	}
	off := w.cFill
	if _, err := w.f.WriteAt(j.data, off); err != nil {
		return err
	}
	w.cFill += n
	for c := off / ClusterSize; c <= (off+n-1)/ClusterSize; c++ {
		w.ref(c, 1)
	}
	sectors := uint64((off+n-1)>>9 - off>>9)
	w.setL2(j.index, flagCompressed|sectors<<csizeShift|uint64(off)&offsetMask)
	w.stats.Compressed++
	return nil
}

// closeRegion ends the file at the last region's data: its stored
// clusters move down next to its compressed ones.
func (w *writer) closeRegion() error {
	if w.rEnd == 0 {
		return nil
	}
	base := roundUp(w.cFill)
	data := make([]byte, int64(len(w.regionStored))*ClusterSize)
	for k, s := range w.regionStored {
		if _, err := w.f.ReadAt(data[int64(k)*ClusterSize:int64(k+1)*ClusterSize], s.off); err != nil {
			return err
		}
		w.ref(s.off/ClusterSize, -1)
	}
	if _, err := w.f.WriteAt(data, base); err != nil {
		return err
	}
	for k, s := range w.regionStored {
		off := base + int64(k)*ClusterSize
		w.ref(off/ClusterSize, 1)
		w.setL2(s.index, uint64(off)|flagCopied)
	}
	w.end = base + int64(len(w.regionStored))*ClusterSize
	w.refs = w.refs[:min(int64(len(w.refs)), w.end/ClusterSize)]
	w.rEnd = 0
	return nil
}

func (w *writer) run(ctx context.Context, src *os.File, clusters []int64, opt Options) error {
	workers := opt.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	comps := make([]*compressor, workers)
	for i := range comps {
		c, err := newCompressor()
		if err != nil {
			return err
		}
		comps[i] = c
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// tokens bound the clusters read but not yet written: those finished
	// ahead of their turn wait in pending.
	tokens := make(chan struct{}, 4*workers)
	jobs := make(chan *job)
	done := make(chan *job, workers)
	go func() {
		defer close(jobs)
		for seq, index := range clusters {
			select {
			case tokens <- struct{}{}:
			case <-ctx.Done():
				return
			}
			select {
			case jobs <- &job{seq: int64(seq), index: index}:
			case <-ctx.Done():
				return
			}
		}
	}()
	var wg sync.WaitGroup
	for _, c := range comps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				c.do(src, w.size, j)
				select {
				case done <- j:
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	go func() {
		wg.Wait()
		close(done)
	}()
	err := w.collect(ctx, done, tokens, int64(len(clusters)), src.Name(), opt.Progress)
	if err != nil {
		// No worker reads src once Write has returned.
		cancel()
		for range done {
		}
	}
	return err
}

// collect writes the workers' clusters in their order.
func (w *writer) collect(ctx context.Context, done <-chan *job, tokens <-chan struct{}, total int64, src string, progress func(done, total int64)) error {
	pending := map[int64]*job{}
	next := int64(0)
	for next < total {
		var j *job
		select {
		case j = <-done:
		case <-ctx.Done():
			return ctx.Err()
		}
		if j == nil {
			return fmt.Errorf("qcow2: %d of %d clusters written", next, total)
		}
		pending[j.seq] = j
		for {
			j, ok := pending[next]
			if !ok {
				break
			}
			delete(pending, next)
			if j.err != nil {
				return fmt.Errorf("qcow2: reading %s: %w", src, j.err)
			}
			if err := w.put(j); err != nil {
				return fmt.Errorf("qcow2: writing %s: %w", w.f.Name(), err)
			}
			<-tokens
			next++
			if progress != nil {
				progress(next, total)
			}
		}
	}
	return ctx.Err()
}

// compressor is one worker's buffers and deflate state.
type compressor struct {
	buf []byte
	out bytes.Buffer
	zw  *flate.Writer
	hw  *flate.Writer // Huffman codes only: no match, so no window
}

func newCompressor() (*compressor, error) {
	zw, err := flate.NewWriterWindow(io.Discard, Window)
	if err != nil {
		return nil, fmt.Errorf("qcow2: deflate with a %d-byte window: %w", Window, err)
	}
	hw, err := flate.NewWriter(io.Discard, flate.HuffmanOnly)
	if err != nil {
		return nil, fmt.Errorf("qcow2: deflate: %w", err)
	}
	return &compressor{buf: make([]byte, ClusterSize), zw: zw, hw: hw}, nil
}

func (c *compressor) do(src *os.File, size int64, j *job) {
	off := j.index * ClusterSize
	n := min(ClusterSize, size-off)
	clear(c.buf[n:])
	if _, err := src.ReadAt(c.buf[:n], off); err != nil && !errors.Is(err, io.EOF) {
		j.err = err
		return
	}
	if allZero(c.buf) {
		j.zero = true
		return
	}
	// At least a sector saved, or the cluster is stored whole: it is read
	// without inflating, and a compressed cluster written to in the VM is
	// inflated and stored whole anyway. When matches do not pay (ZFS's
	// lz4 blocks, mostly), Huffman codes alone may still save a few
	// percent, which zlib's default level finds and the fast matcher's
	// estimate gives up on.
	for _, zw := range []*flate.Writer{c.zw, c.hw} {
		ok, err := c.deflate(zw)
		if err != nil {
			j.err = err
			return
		}
		if ok {
			j.compressed = true
			j.data = bytes.Clone(c.out.Bytes())
			return
		}
	}
	j.data = bytes.Clone(c.buf)
}

// deflate compresses the cluster into c.out with zw, and reports whether
// that saves a sector.
func (c *compressor) deflate(zw *flate.Writer) (bool, error) {
	c.out.Reset()
	zw.Reset(&c.out)
	if _, err := zw.Write(c.buf); err != nil {
		return false, err
	}
	if err := zw.Close(); err != nil {
		return false, err
	}
	return c.out.Len() <= ClusterSize-512, nil
}

func allZero(b []byte) bool {
	for len(b) >= 8 {
		if binary.LittleEndian.Uint64(b) != 0 {
			return false
		}
		b = b[8:]
	}
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}

// finish writes the tables after the data and the header last.
func (w *writer) finish() error {
	if err := w.closeRegion(); err != nil {
		return err
	}
	l1Size := (w.size + int64(l2Entries)*ClusterSize - 1) / (int64(l2Entries) * ClusterSize)
	l1 := make([]byte, l1Size*8)
	for i := int64(0); i < l1Size; i++ {
		t := w.l2[i]
		if t == nil {
			continue
		}
		off := w.alloc(1)
		buf := make([]byte, ClusterSize)
		for k, e := range t {
			binary.BigEndian.PutUint64(buf[k*8:], e)
		}
		if _, err := w.f.WriteAt(buf, off); err != nil {
			return err
		}
		binary.BigEndian.PutUint64(l1[i*8:], uint64(off)&standardMask|flagCopied)
	}
	l1Clusters := max(1, (int64(len(l1))+ClusterSize-1)/ClusterSize)
	l1Off := w.alloc(l1Clusters)
	if _, err := w.f.WriteAt(l1, l1Off); err != nil {
		return err
	}
	// The refcount blocks count every cluster, themselves and the table
	// included.
	var blocks, tableClusters int64
	for {
		total := w.end/ClusterSize + blocks + tableClusters
		nb := (total + refsPerBlock - 1) / refsPerBlock
		nt := max(1, (nb*8+ClusterSize-1)/ClusterSize)
		if nb == blocks && nt == tableClusters {
			break
		}
		blocks, tableClusters = nb, nt
	}
	blocksOff := w.alloc(blocks)
	tableOff := w.alloc(tableClusters)
	rb := make([]byte, blocks*ClusterSize)
	for c, r := range w.refs {
		binary.BigEndian.PutUint16(rb[c*2:], r)
	}
	if _, err := w.f.WriteAt(rb, blocksOff); err != nil {
		return err
	}
	table := make([]byte, tableClusters*ClusterSize)
	for i := int64(0); i < blocks; i++ {
		binary.BigEndian.PutUint64(table[i*8:], uint64(blocksOff+i*ClusterSize))
	}
	if _, err := w.f.WriteAt(table, tableOff); err != nil {
		return err
	}
	if err := w.f.Truncate(w.end); err != nil {
		return err
	}
	if err := w.f.Sync(); err != nil {
		return err
	}
	h := make([]byte, headerLength)
	copy(h[0:], "QFI\xfb")
	binary.BigEndian.PutUint32(h[4:], 3)
	binary.BigEndian.PutUint32(h[20:], clusterBits)
	binary.BigEndian.PutUint64(h[24:], uint64(w.size))
	binary.BigEndian.PutUint32(h[36:], uint32(l1Size))
	binary.BigEndian.PutUint64(h[40:], uint64(l1Off))
	binary.BigEndian.PutUint64(h[48:], uint64(tableOff))
	binary.BigEndian.PutUint32(h[56:], uint32(tableClusters))
	binary.BigEndian.PutUint32(h[96:], refcountOrder)
	binary.BigEndian.PutUint32(h[100:], headerLength)
	// The header extensions end at once (type 0, length 0): the rest of
	// the first cluster is zeros.
	if _, err := w.f.WriteAt(h, 0); err != nil {
		return err
	}
	return w.f.Sync()
}

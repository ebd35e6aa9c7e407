package disk_test

import (
	"encoding/binary"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/paczfs/paczfs/disk"
)

// craftGPT writes a 2 MiB image whose primary GPT header, with valid
// CRCs, says count entries of size bytes.
func craftGPT(t *testing.T, count, size uint32) string {
	t.Helper()
	b := make([]byte, 2<<20)
	b[510], b[511] = 0x55, 0xaa // protective MBR
	b[446+4] = 0xee
	binary.LittleEndian.PutUint32(b[446+8:], 1)
	binary.LittleEndian.PutUint32(b[446+12:], uint32(len(b)/512-1))
	h := b[512:1024]
	copy(h, "EFI PART")
	copy(h[8:], []byte{0, 0, 1, 0})
	copy(h[12:], []byte{0x5c, 0, 0, 0})
	binary.LittleEndian.PutUint64(h[24:], 1)
	binary.LittleEndian.PutUint64(h[32:], uint64(len(b)/512-1))
	binary.LittleEndian.PutUint64(h[40:], 34)
	binary.LittleEndian.PutUint64(h[48:], uint64(len(b)/512-34))
	binary.LittleEndian.PutUint64(h[72:], 2)
	binary.LittleEndian.PutUint32(h[80:], count)
	binary.LittleEndian.PutUint32(h[84:], size)
	binary.LittleEndian.PutUint32(h[16:], crc32.ChecksumIEEE(h[:92]))
	p := filepath.Join(t.TempDir(), "crafted.img")
	require.NoError(t, os.WriteFile(p, b, 0o644))
	return p
}

// A GPT header whose entry array cannot be sized (a crafted or corrupt
// disk, or one a replacing hook wrote) is an error, never a panic or a
// multi-GiB allocation, for every function that reads a table.
func TestACraftedGPTHeaderIsAnError(t *testing.T) {
	for _, c := range []struct{ count, size uint32 }{{0xffffffff, 0xffffffff}, {1 << 24, 128}, {128, 100}, {128, 0}} {
		p := craftGPT(t, c.count, c.size)
		assert.NotPanics(t, func() {
			_, err := disk.ReadGPT(p)
			assert.ErrorIs(t, err, disk.ErrBadGPT, "%+v", c)
		})
		plan, err := disk.DefaultLayout(64*disk.MiB, 0, "zroot").Plan(2 * disk.MiB * 64)
		if err == nil {
			assert.NotPanics(t, func() { assert.Error(t, disk.WriteGPT(p, plan)) })
		}
	}
}

// A partition name is 36 UTF-16 units in a GPT: a name the planner
// accepts can always be written.
func TestPartitionNamesAreCountedInUTF16(t *testing.T) {
	l := disk.Layout{Partitions: []disk.PartitionSpec{
		{Name: strings.Repeat("😀", 19), Role: disk.RoleESP, Size: 64 * disk.MiB},
		{Name: "zroot", Role: disk.RoleZFS},
	}}
	_, err := l.Plan(256 * disk.MiB)
	assert.ErrorIs(t, err, disk.ErrLayout, "19 astral characters are 38 units")
	l.Partitions[0].Name = strings.Repeat("😀", 18)
	plan, err := l.Plan(256 * disk.MiB)
	require.NoError(t, err)
	p := filepath.Join(t.TempDir(), "d.img")
	_, err = disk.CreateImage(p, 256*disk.MiB, disk.ImageOptions{})
	require.NoError(t, err)
	assert.NotPanics(t, func() { assert.NoError(t, disk.WriteGPT(p, plan)) })
	back, err := disk.ReadGPT(p)
	require.NoError(t, err)
	assert.Equal(t, l.Partitions[0].Name, back.Partitions[0].Name)
}

// An ESP that takes the rest of the disk is held to the FAT32 minimum
// like one with a size.
func TestARestOfDiskESPBelowTheMinimumIsRefused(t *testing.T) {
	l := disk.Layout{Partitions: []disk.PartitionSpec{
		{Name: "zroot", Role: disk.RoleZFS, Size: 64 * disk.MiB},
		{Name: "esp", Role: disk.RoleESP},
	}}
	_, err := l.Plan(68 * disk.MiB)
	assert.ErrorIs(t, err, disk.ErrTooSmall)
	_, err = l.Plan(200 * disk.MiB)
	assert.NoError(t, err)
}

package disk_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/paczfs/paczfs/disk"
	"github.com/paczfs/paczfs/internal/testutil"
)

func newImage(t *testing.T, size disk.Size, seed string) (string, disk.Plan) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "disk.img")
	plan, err := disk.DefaultLayout(512*disk.MiB, 0, "zroot").Plan(size)
	require.NoError(t, err)
	if seed != "" {
		plan = plan.SeededGUIDs(seed)
	}
	_, err = disk.CreateImage(path, size, disk.ImageOptions{})
	require.NoError(t, err)
	require.NoError(t, disk.WriteGPT(path, plan))
	return path, plan
}

func TestCreateImageIsSparseAndRefusesExisting(t *testing.T) {
	path := filepath.Join(t.TempDir(), "disk.img")
	tgt, err := disk.CreateImage(path, 4*disk.GiB, disk.ImageOptions{})
	require.NoError(t, err)
	assert.True(t, tgt.Created)
	st, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, int64(4*disk.GiB), st.Size())
	assert.Less(t, st.Sys().(*syscall.Stat_t).Blocks*512, int64(disk.MiB), "image must be sparse")

	require.NoError(t, os.WriteFile(path, []byte("precious"), 0o644))
	_, err = disk.CreateImage(path, disk.GiB, disk.ImageOptions{})
	assert.True(t, errors.Is(err, disk.ErrExists), "got %v", err)
	b, _ := os.ReadFile(path)
	assert.Equal(t, "precious", string(b), "a refused image must be left untouched")
	assert.True(t, errors.Is(disk.CheckImagePath(path, disk.ImageOptions{}), disk.ErrExists))
	assert.NoError(t, disk.CheckImagePath(path, disk.ImageOptions{Overwrite: true}))
	assert.ErrorContains(t, disk.CheckImagePath(filepath.Join(t.TempDir(), "no/such/dir/x.img"), disk.ImageOptions{}), "does not exist")

	_, err = disk.CreateImage(path, disk.GiB, disk.ImageOptions{Overwrite: true})
	require.NoError(t, err)
	st, _ = os.Stat(path)
	assert.Equal(t, int64(disk.GiB), st.Size())
	head := make([]byte, 8)
	f, _ := os.Open(path)
	f.Read(head)
	f.Close()
	assert.Equal(t, make([]byte, 8), head, "overwrite must not keep old data")

	_, err = disk.CreateImage(path+"2", 1000, disk.ImageOptions{})
	assert.ErrorContains(t, err, "multiple of 1 MiB")
}

func TestWriteGPTReadBack(t *testing.T) {
	path, plan := newImage(t, 2*disk.GiB, "read-back")
	got, err := disk.ReadGPT(path)
	require.NoError(t, err)
	require.Len(t, got.Partitions, 2)
	assert.True(t, strings.EqualFold(plan.DiskGUID, got.DiskGUID))
	for i := range plan.Partitions {
		w, g := plan.Partitions[i], got.Partitions[i]
		assert.Equal(t, w.Start, g.Start)
		assert.Equal(t, w.End, g.End)
		assert.Equal(t, w.Role, g.Role)
		assert.Equal(t, w.Name, g.Name)
		assert.True(t, strings.EqualFold(w.GUID, g.GUID), "%s vs %s", w.GUID, g.GUID)
	}

	sgdisk := testutil.RequireTool(t, "sgdisk", "gdisk")
	out, err := exec.Command(sgdisk, "-v", path).CombinedOutput()
	require.NoError(t, err, string(out))
	assert.Contains(t, string(out), "No problems found")
	out, err = exec.Command(sgdisk, "-p", path).CombinedOutput()
	require.NoError(t, err, string(out))
	assert.Regexp(t, `1\s+2048\s+1050623\s+512\.0 MiB\s+EF00`, string(out))
	assert.Regexp(t, `2\s+1050624\s+\d+\s+[\d.]+ GiB\s+BF00\s+zroot`, string(out))
}

func TestSeededImagesAreByteIdentical(t *testing.T) {
	sum := func() [32]byte {
		path := filepath.Join(t.TempDir(), "disk.img")
		plan, err := disk.DefaultLayout(64*disk.MiB, 0, "zroot").Plan(256 * disk.MiB)
		require.NoError(t, err)
		_, err = disk.CreateImage(path, 256*disk.MiB, disk.ImageOptions{})
		require.NoError(t, err)
		require.NoError(t, disk.WriteGPT(path, plan.SeededGUIDs("same-seed")))
		b, err := os.ReadFile(path)
		require.NoError(t, err)
		return sha256.Sum256(b)
	}
	assert.Equal(t, sum(), sum())
}

// espTree is what a boot stage writes: nested directories, long names,
// and a file larger than one cluster chain segment.
func espTree() fstest.MapFS {
	big := bytes.Repeat([]byte("0123456789abcdef"), 300_000) // 4.8 MB
	return fstest.MapFS{
		"EFI/BOOT/BOOTX64.EFI":                       {Data: []byte("MZ fake efi binary")},
		"EFI/systemd/systemd-bootx64.efi":            {Data: []byte("MZ systemd-boot")},
		"loader/loader.conf":                         {Data: []byte("default default.conf\ntimeout 3\n")},
		"loader/entries/arch-linux-zfs-default.conf": {Data: []byte("title Arch Linux (ZFS)\nlinux /env/default/vmlinuz-linux\n")},
		"env/default/vmlinuz-linux":                  {Data: big},
		"env/default/initramfs-linux.img":            {Data: big[:123457]},
	}
}

func writeESP(t *testing.T, path string, plan disk.Plan) {
	t.Helper()
	esp, err := disk.FormatESP(path, plan, "esp")
	require.NoError(t, err)
	require.NoError(t, esp.CopyFS("/", espTree()))
	require.NoError(t, esp.MkdirAll("/EFI/Linux"))
	require.NoError(t, esp.Close())
}

func TestESPWrittenWithoutMountingReadsBack(t *testing.T) {
	path, plan := newImage(t, disk.GiB, "esp")
	writeESP(t, path, plan)
	esp, err := disk.OpenESP(path, plan)
	require.NoError(t, err)
	defer esp.Close()
	for name, f := range espTree() {
		got, err := esp.ReadFile(name)
		require.NoError(t, err, name)
		assert.Equal(t, sha256.Sum256(f.Data), sha256.Sum256(got), name)
	}
}

func TestESPPassesFsckFat(t *testing.T) {
	fsck := testutil.RequireTool(t, "fsck.fat", "dosfstools")
	path, plan := newImage(t, disk.GiB, "fsck")
	writeESP(t, path, plan)
	// fsck.fat has no offset option: check a copy of the partition.
	part, _ := plan.Find(disk.RoleESP)
	img, err := os.Open(path)
	require.NoError(t, err)
	defer img.Close()
	buf := make([]byte, part.Size())
	_, err = img.ReadAt(buf, int64(part.Offset()))
	require.NoError(t, err)
	esp := filepath.Join(t.TempDir(), "esp.fat")
	require.NoError(t, os.WriteFile(esp, buf, 0o644))
	out, err := exec.Command(fsck, "-n", "-v", esp).CombinedOutput()
	assert.NoError(t, err, "fsck.fat -n must exit 0:\n%s", out)
	assert.NotContains(t, string(out), "Invalid '..'")
	assert.Contains(t, string(out), "ESP")
}

func TestESPPathEscapesAreRefused(t *testing.T) {
	path, plan := newImage(t, disk.GiB, "")
	esp, err := disk.FormatESP(path, plan, "ESP")
	require.NoError(t, err)
	defer esp.Close()
	assert.ErrorContains(t, esp.WriteFile("../../etc/passwd", strings.NewReader("x")), "must not contain ..")
	_, err = disk.FormatESP(path, plan, "way too long label")
	assert.ErrorContains(t, err, "at most 11")
}

// TestLegacyBIOSBootableESPAndBootCode: the ESP carries GPT attribute bit
// 2 (what gptmbr.bin looks for), sgdisk reads it, and boot code written
// into sector 0 keeps the protective MBR's entry and signature.
func TestLegacyBIOSBootableESPAndBootCode(t *testing.T) {
	l := disk.DefaultLayout(512*disk.MiB, 0, "zroot")
	l.Partitions[0].LegacyBIOSBootable = true
	plan, err := l.Plan(2 * disk.GiB)
	require.NoError(t, err)
	assert.Equal(t, disk.AttrLegacyBIOSBootable, plan.Partitions[0].Attributes)
	assert.Zero(t, plan.Partitions[1].Attributes)
	assert.Contains(t, plan.String(), "EFI system partition (legacy BIOS bootable)")
	path := filepath.Join(t.TempDir(), "disk.img")
	_, err = disk.CreateImage(path, 2*disk.GiB, disk.ImageOptions{})
	require.NoError(t, err)

	code := bytes.Repeat([]byte{0xfa}, disk.MBRBootCodeSize)
	assert.ErrorIs(t, disk.WriteMBRBootCode(path, code), disk.ErrNotGPT, "no partition table yet")
	require.NoError(t, disk.WriteGPT(path, plan))
	assert.ErrorContains(t, disk.WriteMBRBootCode(path, make([]byte, 441)), "1 to 440 bytes")
	require.NoError(t, disk.WriteMBRBootCode(path, code))

	got, err := disk.ReadGPT(path)
	require.NoError(t, err)
	assert.Equal(t, disk.AttrLegacyBIOSBootable, got.Partitions[0].Attributes)
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	mbr := make([]byte, 512)
	_, err = f.ReadAt(mbr, 0)
	require.NoError(t, err)
	assert.Equal(t, code, mbr[:440])
	assert.Equal(t, byte(0xee), mbr[450], "protective entry kept")
	assert.Equal(t, []byte{0x55, 0xaa}, mbr[510:])

	sgdisk := testutil.RequireTool(t, "sgdisk", "gdisk")
	out, err := exec.Command(sgdisk, "-v", path).CombinedOutput()
	require.NoError(t, err, string(out))
	assert.Contains(t, string(out), "No problems found")
	out, err = exec.Command(sgdisk, "-A", "1:show", path).CombinedOutput()
	require.NoError(t, err, string(out))
	assert.Contains(t, string(out), "legacy BIOS bootable")
}

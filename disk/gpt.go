package disk

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	diskfs "github.com/diskfs/go-diskfs"
	dfs "github.com/diskfs/go-diskfs/disk"
	"github.com/diskfs/go-diskfs/partition/gpt"
)

// openDisk opens path with go-diskfs, which reads the partition table as
// it opens: a header whose entry array go-diskfs cannot size (a crafted
// or corrupt one) is refused first, and a panic in it is an error.
func openDisk(path string, mode diskfs.OpenModeOption) (d *dfs.Disk, err error) {
	if err := checkGPTHeaders(path); err != nil {
		return nil, err
	}
	defer func() {
		if r := recover(); r != nil {
			d, err = nil, fmt.Errorf("%w: %s: reading its partition table failed: %v", ErrBadGPT, path, r)
		}
	}()
	return diskfs.Open(path, diskfs.WithOpenMode(mode), diskfs.WithSectorSize(SectorSize))
}

// ErrBadGPT: a partition table header that cannot be read safely.
var ErrBadGPT = errors.New("bad GPT header")

// maxEntryArray bounds a GPT's partition entry array (the standard one is
// 128 entries of 128 bytes, 16 KiB).
const maxEntryArray = 1 << 20

// checkGPTHeaders checks the primary and the backup GPT header, where
// there is one ("EFI PART"), for an entry size and count go-diskfs can
// read: entries of 128 bytes or a multiple, an array of at most 1 MiB.
func checkGPTHeaders(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return nil // diskfs.Open says why
	}
	defer f.Close()
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil || size < 2*SectorSize {
		return nil
	}
	for _, at := range []int64{SectorSize, size - SectorSize} {
		var h [92]byte
		if _, err := f.ReadAt(h[:], at); err != nil || string(h[:8]) != "EFI PART" {
			continue
		}
		count := uint64(binary.LittleEndian.Uint32(h[80:84]))
		entry := uint64(binary.LittleEndian.Uint32(h[84:88]))
		if entry < 128 || entry%128 != 0 || count*entry > maxEntryArray {
			return fmt.Errorf("%w: %s: %d entries of %d bytes (at byte %d)", ErrBadGPT, path, count, entry, at)
		}
	}
	return nil
}

// WriteGPT writes the plan's partition table, with a protective MBR, to
// path: an image file or a block device that exists and is at least
// plan.DiskSize bytes. GUIDs left empty in the plan are drawn at random;
// use Plan.SeededGUIDs first for a reproducible table.
//
// On a block device the kernel is asked to re-read the table; the caller
// should then wait for the partition nodes (see Loop.WaitPartitions for loop
// devices).
func WriteGPT(path string, plan Plan) error {
	if err := plan.Validate(); err != nil {
		return err
	}
	plan = plan.SeededGUIDs("") // fill blanks at random; keep given ones
	d, err := openDisk(path, diskfs.ReadWriteExclusive)
	if err != nil {
		return fmt.Errorf("write gpt: open %s: %w", path, err)
	}
	defer d.Close()
	if Size(d.Size) < plan.DiskSize {
		return fmt.Errorf("write gpt: %s has %d bytes, the plan needs %d: %w", path, d.Size, plan.DiskSize, ErrTooSmall)
	}
	table := &gpt.Table{
		LogicalSectorSize:  SectorSize,
		PhysicalSectorSize: SectorSize,
		ProtectiveMBR:      true, // without it sgdisk reports a corrupt MBR and some firmware ignores the disk
		GUID:               plan.DiskGUID,
	}
	for _, p := range plan.Partitions {
		table.Partitions = append(table.Partitions, &gpt.Partition{
			Index: p.Number, Start: p.Start, End: p.End, Type: gpt.Type(p.Type), Name: p.Name, GUID: p.GUID,
			Attributes: p.Attributes,
		})
	}
	if err := d.Partition(table); err != nil {
		return fmt.Errorf("write gpt to %s: %w", path, err)
	}
	return nil
}

// ReadGPT reads back the partition table of an image file or device.
func ReadGPT(path string) (Plan, error) {
	d, err := openDisk(path, diskfs.ReadOnly)
	if err != nil {
		return Plan{}, fmt.Errorf("read gpt: open %s: %w", path, err)
	}
	defer d.Close()
	t, err := d.GetPartitionTable()
	if err != nil {
		return Plan{}, fmt.Errorf("read gpt from %s: %w", path, err)
	}
	gt, ok := t.(*gpt.Table)
	if !ok {
		return Plan{}, fmt.Errorf("read gpt from %s: not a GPT (%s)", path, t.Type())
	}
	plan := Plan{DiskSize: Size(d.Size), DiskGUID: gt.GUID}
	for _, p := range gt.Partitions {
		if p.Type == gpt.Unused {
			continue
		}
		role := Role("")
		switch string(p.Type) {
		case TypeESP:
			role = RoleESP
		case TypeSwap:
			role = RoleSwap
		case TypeZFS:
			role = RoleZFS
		}
		plan.Partitions = append(plan.Partitions, Partition{
			Number: p.Index, Name: p.Name, Role: role, Type: string(p.Type), Start: p.Start, End: p.End, GUID: p.GUID,
			Attributes: p.Attributes,
		})
	}
	return plan, nil
}

// fileSize returns the size of an image file or block device.
func fileSize(f *os.File) (int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	if st.Mode().IsRegular() {
		return st.Size(), nil
	}
	return blockDeviceSize(f)
}

// DiskSize returns the size in bytes of an image file or a block device.
func DiskSize(path string) (Size, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	n, err := fileSize(f)
	return Size(n), err
}

// MBRBootCodeSize is the boot code area of sector 0: the bytes before the
// disk signature and the partition entries.
const MBRBootCodeSize = 440

// ErrNotGPT: the disk does not start with a GPT's protective MBR.
var ErrNotGPT = errors.New("no protective MBR of a GPT")

// WriteMBRBootCode puts code (at most 440 bytes, e.g. SYSLINUX's
// gptmbr.bin) at the start of sector 0 of a disk that already carries a
// GPT, so that a legacy BIOS runs it. The protective MBR's partition entry
// and signature are kept; UEFI firmware ignores the boot code. It checks
// the protective MBR first and writes nothing to another kind of disk.
func WriteMBRBootCode(path string, code []byte) error {
	if len(code) == 0 || len(code) > MBRBootCodeSize {
		return fmt.Errorf("mbr boot code: %d bytes: it must be 1 to %d bytes (gptmbr.bin is 440)", len(code), MBRBootCodeSize)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("mbr boot code: %w", err)
	}
	defer f.Close()
	var mbr [SectorSize]byte
	if _, err := f.ReadAt(mbr[:], 0); err != nil {
		return fmt.Errorf("mbr boot code: read %s: %w", path, err)
	}
	if mbr[510] != 0x55 || mbr[511] != 0xaa || mbr[446+4] != 0xee {
		return fmt.Errorf("mbr boot code: %s: %w: write the partition table first", path, ErrNotGPT)
	}
	if _, err := f.WriteAt(code, 0); err != nil {
		return fmt.Errorf("mbr boot code: write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("mbr boot code: %s: %w", path, err)
	}
	return f.Close()
}

package disk

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf16"
)

// Role says what a partition is for; it fixes the GPT type.
type Role string

// Partition roles.
const (
	RoleESP  Role = "esp"  // EFI System Partition, FAT32 (GPT type EF00)
	RoleSwap Role = "swap" // Linux swap (8200)
	RoleZFS  Role = "zfs"  // the ZFS pool's vdev (BF00, "Solaris root")
)

// GPT partition type GUIDs, as sgdisk knows them.
const (
	TypeESP  = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B" // EF00
	TypeSwap = "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F" // 8200
	TypeZFS  = "6A85CF4D-1DD2-11B2-99A6-080020736631" // BF00; ZFS ignores it, but tools and humans read it
)

// Type returns the GPT partition type GUID for the role.
func (r Role) Type() (string, error) {
	switch r {
	case RoleESP:
		return TypeESP, nil
	case RoleSwap:
		return TypeSwap, nil
	case RoleZFS:
		return TypeZFS, nil
	}
	return "", fmt.Errorf("unknown partition role %q: use esp, swap or zfs", string(r))
}

// Limits the planner enforces.
const (
	SectorSize = 512
	// Alignment of every partition start and size: 1 MiB, what every
	// partitioning tool has used since 2010 and right for 4K and SSD erase blocks.
	Alignment = MiB
	// MinESP keeps FAT32 above 65,525 clusters, below which FAT32 is not
	// valid and firmware may refuse it.
	MinESP = 64 * MiB
	// MinZFS is OpenZFS's smallest vdev (SPA_MINDEVSIZE).
	MinZFS = 64 * MiB
	// gptReserved is what the primary and backup GPT take at each end of
	// the disk, rounded to the alignment.
	gptReserved = MiB
)

// Errors the planner returns; each message says which field and how to fix it.
var (
	// ErrTooSmall: the partitions do not fit on the disk. Make the disk
	// (image size) larger or the partitions smaller.
	ErrTooSmall = errors.New("disk too small")
	// ErrOverlap: two partitions share sectors. Fix the explicit Start values.
	ErrOverlap = errors.New("partitions overlap")
	// ErrLayout: the layout itself is not valid (see the message).
	ErrLayout = errors.New("invalid partition layout")
)

// PartitionSpec declares one partition.
type PartitionSpec struct {
	// Name is the GPT partition name (at most 36 characters).
	Name string `json:"name"`
	// Role fixes the type: esp, swap or zfs.
	Role Role `json:"role"`
	// Size in bytes, a multiple of 1 MiB. Zero means the rest of the disk,
	// allowed for the last partition only.
	Size Size `json:"size"`
	// Start is an explicit byte offset, a multiple of 1 MiB. Zero places the
	// partition right after the previous one.
	Start Size `json:"start,omitempty"`
	// LegacyBIOSBootable sets the GPT attribute of that name (bit 2): the
	// partition a GPT-aware MBR boot code (SYSLINUX's gptmbr.bin) chains
	// to under legacy BIOS. UEFI firmware ignores it.
	LegacyBIOSBootable bool `json:"legacy_bios_bootable,omitempty"`
}

// Layout is an ordered list of partitions; partition numbers follow the order.
type Layout struct {
	Partitions []PartitionSpec `json:"partitions"`
}

// DefaultLayout is paczfs's disk: the ESP, optional swap (swapSize 0 means
// none) and ZFS on the rest of the disk.
func DefaultLayout(espSize, swapSize Size, poolName string) Layout {
	l := Layout{Partitions: []PartitionSpec{{Name: "EFI system partition", Role: RoleESP, Size: espSize}}}
	if swapSize > 0 {
		l.Partitions = append(l.Partitions, PartitionSpec{Name: "swap", Role: RoleSwap, Size: swapSize})
	}
	l.Partitions = append(l.Partitions, PartitionSpec{Name: poolName, Role: RoleZFS})
	return l
}

// Partition is a planned partition, in sectors of SectorSize bytes.
type Partition struct {
	Number int    // GPT entry number, from 1
	Name   string // GPT name
	Role   Role
	Type   string // GPT type GUID
	Start  uint64 // first sector
	End    uint64 // last sector, inclusive
	GUID   string // unique partition GUID; empty = random when written
	// Attributes are the GPT attribute bits (AttrLegacyBIOSBootable).
	Attributes uint64
}

// AttrLegacyBIOSBootable is GPT attribute bit 2, "legacy BIOS bootable"
// (UEFI specification 2.10, table 5.8).
const AttrLegacyBIOSBootable uint64 = 1 << 2

// Offset returns the partition's first byte.
func (p Partition) Offset() Size { return Size(p.Start) * SectorSize }

// Size returns the partition's length in bytes.
func (p Partition) Size() Size { return Size(p.End-p.Start+1) * SectorSize }

// Plan is a concrete GPT for a disk of a given size.
type Plan struct {
	DiskSize   Size
	DiskGUID   string
	Partitions []Partition
}

// Find returns the first partition with the role.
func (p Plan) Find(r Role) (Partition, bool) {
	for _, part := range p.Partitions {
		if part.Role == r {
			return part, true
		}
	}
	return Partition{}, false
}

// Plan places the layout on a disk of diskSize bytes. It is pure: it reads
// and writes nothing. Every problem is reported, joined, with the field.
func (l Layout) Plan(diskSize Size) (Plan, error) {
	var errs []error
	bad := func(err error, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%w: %s", err, fmt.Sprintf(format, a...)))
	}
	if len(l.Partitions) == 0 {
		return Plan{}, fmt.Errorf("%w: no partitions: declare at least an esp and a zfs partition", ErrLayout)
	}
	if len(l.Partitions) > 128 {
		bad(ErrLayout, "%d partitions: GPT holds at most 128", len(l.Partitions))
	}
	if diskSize <= 0 {
		return Plan{}, fmt.Errorf("%w: disk size %d: give a positive size such as 20G", ErrLayout, diskSize)
	}
	counts := map[Role]int{}
	for i, s := range l.Partitions {
		field := fmt.Sprintf("partitions[%d] (%q)", i, s.Name)
		if _, err := s.Role.Type(); err != nil {
			bad(ErrLayout, "%s: %v", field, err)
		}
		counts[s.Role]++
		// GPT names are 36 UTF-16 code units: a character outside the
		// Basic Multilingual Plane takes two.
		if len(utf16.Encode([]rune(s.Name))) > 36 || strings.ContainsRune(s.Name, 0) {
			bad(ErrLayout, "%s: name longer than 36 characters (UTF-16 units); shorten it", field)
		}
		if s.Size < 0 || s.Start < 0 {
			bad(ErrLayout, "%s: negative size or start", field)
		}
		if s.Size%Alignment != 0 {
			bad(ErrLayout, "%s: size %d is not a multiple of 1 MiB; use M or G units", field, int64(s.Size))
		}
		if s.Start%Alignment != 0 {
			bad(ErrLayout, "%s: start %d is not a multiple of 1 MiB", field, int64(s.Start))
		}
		if s.Size == 0 && i != len(l.Partitions)-1 {
			bad(ErrLayout, "%s: size 0 (rest of the disk) is allowed for the last partition only; give it a size", field)
		}
		if s.Role == RoleESP && s.Size != 0 && s.Size < MinESP {
			bad(ErrLayout, "%s: ESP of %v is below the FAT32 minimum of 64M; use at least 64M (512M recommended)", field, s.Size)
		}
		if s.Role == RoleZFS && s.Size != 0 && s.Size < MinZFS {
			bad(ErrLayout, "%s: ZFS partition of %v is below OpenZFS's minimum vdev of 64M", field, s.Size)
		}
	}
	if counts[RoleESP] != 1 {
		bad(ErrLayout, "%d esp partitions: a bootable disk needs exactly one", counts[RoleESP])
	}
	if counts[RoleZFS] != 1 {
		bad(ErrLayout, "%d zfs partitions: paczfs needs exactly one", counts[RoleZFS])
	}
	if len(errs) > 0 {
		return Plan{}, errors.Join(errs...)
	}

	sectors := uint64(diskSize / SectorSize)
	first := uint64(gptReserved / SectorSize)
	// Last usable sector, rounded down so the rest-of-disk partition ends on
	// an alignment boundary and clear of the backup GPT (33 sectors).
	align := uint64(Alignment / SectorSize)
	lastUsable := sectors - 34
	end := (lastUsable+1)/align*align - 1
	if sectors < 34 || end < first {
		return Plan{}, fmt.Errorf("%w: %d bytes cannot hold a GPT; give at least a few hundred MiB", ErrTooSmall, diskSize)
	}
	plan := Plan{DiskSize: diskSize}
	next := first
	for i, s := range l.Partitions {
		start := next
		if s.Start != 0 {
			start = uint64(s.Start) / SectorSize
		}
		var last uint64
		if s.Size == 0 {
			last = end
			if start > end {
				errs = append(errs, fmt.Errorf("%w: partitions[%d] (%q): no room left for the rest-of-disk partition; enlarge the disk", ErrTooSmall, i, s.Name))
				break
			}
		} else {
			last = start + uint64(s.Size)/SectorSize - 1
		}
		typ, _ := s.Role.Type()
		var attrs uint64
		if s.LegacyBIOSBootable {
			attrs |= AttrLegacyBIOSBootable
		}
		plan.Partitions = append(plan.Partitions, Partition{
			Number: i + 1, Name: s.Name, Role: s.Role, Type: typ, Start: start, End: last, Attributes: attrs,
		})
		next = last + 1
	}
	if len(errs) > 0 {
		return Plan{}, errors.Join(errs...)
	}
	if z, ok := plan.Find(RoleZFS); ok && z.Size() < MinZFS {
		return Plan{}, fmt.Errorf("%w: the zfs partition gets %v, below OpenZFS's minimum of 64M; enlarge the disk", ErrTooSmall, Size(z.Size()))
	}
	if e, ok := plan.Find(RoleESP); ok && e.Size() < MinESP {
		return Plan{}, fmt.Errorf("%w: the esp partition gets %v, below the FAT32 minimum of 64M; enlarge the disk", ErrTooSmall, Size(e.Size()))
	}
	if err := plan.Validate(); err != nil {
		return Plan{}, err
	}
	return plan, nil
}

// Validate checks a plan (one from Layout.Plan, or one built or edited by
// hand) against the disk: alignment, the usable range, overlaps.
func (p Plan) Validate() error {
	var errs []error
	sectors := uint64(p.DiskSize / SectorSize)
	if sectors < 68 {
		return fmt.Errorf("%w: disk of %d bytes", ErrTooSmall, p.DiskSize)
	}
	align := uint64(Alignment / SectorSize)
	firstUsable, lastUsable := uint64(34), sectors-34
	seen := map[int]bool{}
	for i, a := range p.Partitions {
		field := fmt.Sprintf("partition %d (%q)", a.Number, a.Name)
		if a.Number < 1 || a.Number > 128 || seen[a.Number] {
			errs = append(errs, fmt.Errorf("%w: %s: number must be unique and between 1 and 128", ErrLayout, field))
		}
		seen[a.Number] = true
		if a.End < a.Start {
			errs = append(errs, fmt.Errorf("%w: %s: ends before it starts", ErrLayout, field))
			continue
		}
		if a.Start%align != 0 {
			errs = append(errs, fmt.Errorf("%w: %s: start sector %d is not 1 MiB aligned", ErrLayout, field, a.Start))
		}
		if a.Start < firstUsable || a.End > lastUsable {
			errs = append(errs, fmt.Errorf("%w: %s: sectors %d-%d run outside the usable range %d-%d; enlarge the disk or shrink the partitions",
				ErrTooSmall, field, a.Start, a.End, firstUsable, lastUsable))
		}
		for _, b := range p.Partitions[i+1:] {
			if a.Start <= b.End && b.Start <= a.End {
				errs = append(errs, fmt.Errorf("%w: %s (sectors %d-%d) and partition %d (%q) (sectors %d-%d)",
					ErrOverlap, field, a.Start, a.End, b.Number, b.Name, b.Start, b.End))
			}
		}
	}
	return errors.Join(errs...)
}

// String renders the plan as a table, as --dry-run prints it.
func (p Plan) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "disk %v (%d sectors of %d bytes)\n", Size(p.DiskSize), p.DiskSize/SectorSize, SectorSize)
	fmt.Fprintf(&b, "%-3s %-5s %12s %12s %8s  %s\n", "#", "role", "start", "end", "size", "name")
	for _, q := range p.Partitions {
		name := q.Name
		if q.Attributes&AttrLegacyBIOSBootable != 0 {
			name += " (legacy BIOS bootable)"
		}
		fmt.Fprintf(&b, "%-3d %-5s %12d %12d %8v  %s\n", q.Number, q.Role, q.Start, q.End, Size(q.Size()), name)
	}
	return b.String()
}

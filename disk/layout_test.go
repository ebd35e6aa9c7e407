package disk_test

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/paczfs/paczfs/disk"
)

func TestParseSize(t *testing.T) {
	good := map[string]disk.Size{
		"550M": 550 * disk.MiB, "1G": disk.GiB, "20G": 20 * disk.GiB, "512MiB": 512 * disk.MiB,
		"2t": 2 * disk.TiB, "4096": 4096, "64K": 64 * disk.KiB, " 8G ": 8 * disk.GiB, "1B": 1,
	}
	for in, want := range good {
		got, err := disk.ParseSize(in)
		if assert.NoError(t, err, in) {
			assert.Equal(t, want, got, in)
		}
	}
	bad := map[string]string{
		"":                     "empty",
		"G":                    "whole number",
		"1.5G":                 "unknown unit",
		"20GB":                 "unknown unit",
		"10X":                  "unknown unit",
		"-1G":                  "whole number",
		"99999999999999999999": "out of range",
		"9000000000T":          "too large",
	}
	for in, want := range bad {
		_, err := disk.ParseSize(in)
		if assert.Error(t, err, in) {
			assert.Contains(t, err.Error(), want, in)
		}
	}
}

func TestSizeTextRoundTrip(t *testing.T) {
	for _, s := range []disk.Size{550 * disk.MiB, 20 * disk.GiB, 3 * disk.TiB, 1536 * disk.KiB, 1000} {
		b, err := s.MarshalText()
		require.NoError(t, err)
		var back disk.Size
		require.NoError(t, back.UnmarshalText(b))
		assert.Equal(t, s, back, string(b))
	}
}

func TestDefaultLayoutPlan(t *testing.T) {
	plan, err := disk.DefaultLayout(550*disk.MiB, 0, "zroot").Plan(20 * disk.GiB)
	require.NoError(t, err)
	require.Len(t, plan.Partitions, 2)
	esp, zfs := plan.Partitions[0], plan.Partitions[1]
	assert.Equal(t, uint64(2048), esp.Start)
	assert.Equal(t, 550*disk.MiB, esp.Size())
	assert.Equal(t, disk.TypeESP, esp.Type)
	assert.Equal(t, esp.End+1, zfs.Start)
	assert.Equal(t, disk.TypeZFS, zfs.Type)
	assert.Equal(t, "zroot", zfs.Name)
	// The ZFS partition takes the rest, ends 1 MiB-aligned, clear of the backup GPT.
	sectors := uint64(20 * disk.GiB / disk.SectorSize)
	assert.Equal(t, uint64(0), (zfs.End+1)%2048)
	assert.LessOrEqual(t, zfs.End, sectors-34)
	assert.Greater(t, zfs.End, sectors-34-2048)
}

func TestLayoutWithSwap(t *testing.T) {
	plan, err := disk.DefaultLayout(550*disk.MiB, 2*disk.GiB, "zroot").Plan(8 * disk.GiB)
	require.NoError(t, err)
	require.Len(t, plan.Partitions, 3)
	assert.Equal(t, disk.RoleSwap, plan.Partitions[1].Role)
	assert.Equal(t, 2*disk.GiB, plan.Partitions[1].Size())
	assert.Equal(t, 3, plan.Partitions[2].Number)
}

func TestLayoutRejections(t *testing.T) {
	esp := disk.PartitionSpec{Name: "esp", Role: disk.RoleESP, Size: 512 * disk.MiB}
	zfs := disk.PartitionSpec{Name: "zroot", Role: disk.RoleZFS}
	cases := []struct {
		name     string
		layout   disk.Layout
		disk     disk.Size
		sentinel error
		want     string
	}{
		{"no partitions", disk.Layout{}, 4 * disk.GiB, disk.ErrLayout, "no partitions"},
		{"disk too small for esp", disk.Layout{Partitions: []disk.PartitionSpec{esp, zfs}}, 256 * disk.MiB, disk.ErrTooSmall, "no room left"},
		{"zfs partition too small", disk.Layout{Partitions: []disk.PartitionSpec{esp, zfs}}, 560 * disk.MiB, disk.ErrTooSmall, "minimum"},
		{"tiny disk", disk.Layout{Partitions: []disk.PartitionSpec{esp, zfs}}, 8 * disk.KiB, disk.ErrTooSmall, "cannot hold a GPT"},
		{"zero disk", disk.Layout{Partitions: []disk.PartitionSpec{esp, zfs}}, 0, disk.ErrLayout, "positive size"},
		{"unknown role", disk.Layout{Partitions: []disk.PartitionSpec{esp, {Name: "x", Role: "ext4", Size: disk.GiB}, zfs}}, 4 * disk.GiB, disk.ErrLayout, "unknown partition role"},
		{"rest of disk not last", disk.Layout{Partitions: []disk.PartitionSpec{{Name: "esp", Role: disk.RoleESP}, zfs}}, 4 * disk.GiB, disk.ErrLayout, "last partition only"},
		{"unaligned size", disk.Layout{Partitions: []disk.PartitionSpec{{Name: "esp", Role: disk.RoleESP, Size: 100*disk.MiB + 512}, zfs}}, 4 * disk.GiB, disk.ErrLayout, "multiple of 1 MiB"},
		{"unaligned start", disk.Layout{Partitions: []disk.PartitionSpec{{Name: "esp", Role: disk.RoleESP, Size: 100 * disk.MiB, Start: 4096}, zfs}}, 4 * disk.GiB, disk.ErrLayout, "not a multiple of 1 MiB"},
		{"esp below fat32 minimum", disk.Layout{Partitions: []disk.PartitionSpec{{Name: "esp", Role: disk.RoleESP, Size: 32 * disk.MiB}, zfs}}, 4 * disk.GiB, disk.ErrLayout, "FAT32 minimum"},
		{"zfs below minimum", disk.Layout{Partitions: []disk.PartitionSpec{esp, {Name: "z", Role: disk.RoleZFS, Size: 32 * disk.MiB}}}, 4 * disk.GiB, disk.ErrLayout, "minimum vdev"},
		{"no esp", disk.Layout{Partitions: []disk.PartitionSpec{zfs}}, 4 * disk.GiB, disk.ErrLayout, "0 esp partitions"},
		{"two zfs", disk.Layout{Partitions: []disk.PartitionSpec{esp, {Name: "a", Role: disk.RoleZFS, Size: disk.GiB}, zfs}}, 4 * disk.GiB, disk.ErrLayout, "2 zfs partitions"},
		{"long name", disk.Layout{Partitions: []disk.PartitionSpec{{Name: "a name that is far too long for a GPT entry", Role: disk.RoleESP, Size: 512 * disk.MiB}, zfs}}, 4 * disk.GiB, disk.ErrLayout, "longer than 36"},
		{"overlap", disk.Layout{Partitions: []disk.PartitionSpec{esp, {Name: "zroot", Role: disk.RoleZFS, Start: 100 * disk.MiB}}}, 4 * disk.GiB, disk.ErrOverlap, "sectors 2048-1050623"},
		{"past the end", disk.Layout{Partitions: []disk.PartitionSpec{esp, {Name: "zroot", Role: disk.RoleZFS, Size: 8 * disk.GiB}}}, 4 * disk.GiB, disk.ErrTooSmall, "outside the usable range"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := c.layout.Plan(c.disk)
			require.Error(t, err)
			assert.True(t, errors.Is(err, c.sentinel), "want %v, got %v", c.sentinel, err)
			assert.Contains(t, err.Error(), c.want)
		})
	}
}

func TestLayoutReportsEveryProblem(t *testing.T) {
	_, err := disk.Layout{Partitions: []disk.PartitionSpec{
		{Name: "esp", Role: disk.RoleESP, Size: 10 * disk.MiB},
		{Name: "x", Role: "btrfs"},
	}}.Plan(4 * disk.GiB)
	require.Error(t, err)
	for _, want := range []string{"FAT32 minimum", "unknown partition role", "0 zfs partitions"} {
		assert.Contains(t, err.Error(), want)
	}
}

func TestSeededGUIDsAreStable(t *testing.T) {
	plan, err := disk.DefaultLayout(512*disk.MiB, 0, "zroot").Plan(4 * disk.GiB)
	require.NoError(t, err)
	a, b := plan.SeededGUIDs("seed-1"), plan.SeededGUIDs("seed-1")
	c := plan.SeededGUIDs("seed-2")
	assert.Equal(t, a, b)
	assert.NotEqual(t, a.DiskGUID, c.DiskGUID)
	assert.NotEqual(t, a.Partitions[0].GUID, a.Partitions[1].GUID)
	assert.Regexp(t, `^[0-9A-F]{8}-[0-9A-F]{4}-4[0-9A-F]{3}-[89AB][0-9A-F]{3}-[0-9A-F]{12}$`, a.DiskGUID)
	r1, r2 := plan.SeededGUIDs(""), plan.SeededGUIDs("")
	assert.NotEqual(t, r1.DiskGUID, r2.DiskGUID, "empty seed draws random GUIDs")
}

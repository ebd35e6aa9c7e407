package disk_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/paczfs/paczfs/disk"
)

func TestMountedDevices(t *testing.T) {
	mi := `22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
35 22 0:32 / /src rw,relatime - 9p src rw
40 22 7:1 / /mnt/with\040space rw - vfat /dev/loop0p1 rw
41 22 7:1 / /mnt/again rw - vfat /dev/loop0p1 rw
`
	m := disk.MountedDevices(strings.NewReader(mi))
	assert.Equal(t, "/", m["254:0"])
	assert.Equal(t, "/mnt/with space", m["7:1"], "first mount point wins, octal escapes decoded")
	assert.Equal(t, "/src", m["0:32"])
	assert.NotContains(t, m, "7:2")
}

func TestSwapDevices(t *testing.T) {
	swaps := "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n/dev/vdb2                               partition\t4194300\t\t0\t\t-2\n/swap\\040file file 1024 0 -3\n"
	assert.Equal(t, []string{"/dev/vdb2", "/swap file"}, disk.SwapDevices(swaps))
	assert.Empty(t, disk.SwapDevices("Filename\tType\tSize\tUsed\tPriority\n"))
}

func TestPoolVdevs(t *testing.T) {
	// zpool list -v -H -P -o name, as OpenZFS 2.3 prints it.
	out := "rpool\n\tmirror-0\n\t/dev/sda2\n\t/dev/sdb2\nlogs\n\t/dev/nvme0n1p1\nbuild\n\t/dev/loop3p2\n"
	got := disk.PoolVdevs(out)
	assert.Equal(t, []string{"/dev/sda2", "/dev/sdb2"}, got["rpool"])
	assert.Equal(t, []string{"/dev/loop3p2"}, got["build"])
	assert.Equal(t, []string{"/dev/nvme0n1p1"}, got["logs"], "a class line is taken for a pool name: harmless, its vdevs are still found")
}

package ovmf

import (
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestArgsBootTheImageReadOnlyUnderUEFI(t *testing.T) {
	args := strings.Join(Args(Options{Image: "/x/lab.vdi", Format: "vdi"}, "/fw/code.fd", "/tmp/vars.fd"), " ")
	assert.Contains(t, args, "-drive if=pflash,format=raw,unit=0,readonly=on,file=/fw/code.fd")
	assert.Contains(t, args, "-drive if=pflash,format=raw,unit=1,file=/tmp/vars.fd")
	assert.Contains(t, args, "-drive file=/x/lab.vdi,format=vdi,if=virtio,snapshot=on")
	assert.Contains(t, args, "-serial stdio")
	assert.Contains(t, args, "-no-reboot")
	// One machine over several boots: its disk keeps what the guest wrote.
	args = strings.Join(Args(Options{Image: "/x/m.raw", Format: "raw", Writable: true}, "/fw/code.fd", "/m/vars.fd"), " ")
	assert.Contains(t, args, "-drive file=/x/m.raw,format=raw,if=virtio -netdev")
	// A release handed to the guest as a disk.
	args = strings.Join(Args(Options{Image: "/x/m.raw", Format: "raw", Disks: []Disk{{Path: "/x/r.tar", Serial: "release"}}}, "/fw/code.fd", "/m/vars.fd"), " ")
	assert.Contains(t, args, "-drive file=/x/r.tar,format=raw,if=none,readonly=on,id=extra0 -device virtio-blk-pci,drive=extra0,serial=release")
}

func TestArgsUnderSeaBIOSHaveNoFlash(t *testing.T) {
	args := strings.Join(Args(Options{Image: "/x/lab.raw", Format: "raw", BIOS: true}, "", ""), " ")
	assert.NotContains(t, args, "pflash", "qemu's own SeaBIOS boots when no flash is given")
	assert.Contains(t, args, "-drive file=/x/lab.raw,format=raw,if=virtio,snapshot=on")
}

func TestExpecterSendsEachStepAfterItsText(t *testing.T) {
	r, w := io.Pipe()
	e := &expecter{steps: []Step{{Wait: "login:", Send: "root\n"}, {Wait: "# ", Send: "zpool status\n"}}, input: w}
	got := make(chan string, 2)
	go func() {
		buf := make([]byte, 64)
		for i := 0; i < 2; i++ {
			n, _ := r.Read(buf)
			got <- string(buf[:n])
		}
	}()
	e.Write([]byte("booting...\n# not yet\nlab log"))
	e.Write([]byte("in: "))
	assert.Equal(t, "root\n", <-got)
	e.Write([]byte("Password ok\nroot@lab:~# "))
	assert.Equal(t, "zpool status\n", <-got)
	assert.Empty(t, e.steps)
}

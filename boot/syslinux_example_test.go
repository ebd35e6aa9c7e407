package boot_test

import (
	"fmt"

	"github.com/paczfs/paczfs/boot"
)

// The legacy BIOS side of an ESP: SYSLINUX's main configuration and one
// environment's fragment, made from the same loader entry systemd-boot
// reads.
func ExampleSyslinuxLabel() {
	env := boot.Environment{Name: "default", Dataset: "zroot/system/default", Kernel: "vmlinuz-linux-lts",
		Initrds: []string{"initramfs-linux-lts.img"}, RootOptions: []string{"root=zfs:{dataset}", "rw"}}
	frag, _ := boot.SyslinuxLabel("default", env.Entry("Arch Linux on ZFS (default)"))
	main, _ := boot.Syslinux{Default: "default", Timeout: 3, Serial: true, Environments: []string{"default", "bootable"}}.MarshalText()
	fmt.Print(string(main), "--- ", boot.SyslinuxFragmentPath("default"), "\n", string(frag))
	// Output:
	// # Written by paczfs: legacy BIOS boot of the environments whose entries are in
	// # /loader/entries. The DEFAULT and INCLUDE lines are rewritten on every change.
	// SERIAL 0 115200
	// PROMPT 1
	// TIMEOUT 30
	// DEFAULT default
	// INCLUDE /env/default/syslinux.cfg
	// INCLUDE /env/bootable/syslinux.cfg
	// --- /env/default/syslinux.cfg
	// LABEL default
	//   MENU LABEL Arch Linux on ZFS (default)
	//   LINUX /env/default/vmlinuz-linux-lts
	//   INITRD /env/default/initramfs-linux-lts.img
	//   APPEND root=zfs:zroot/system/default rw
}

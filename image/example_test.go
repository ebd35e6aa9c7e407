package image_test

import (
	"errors"
	"fmt"

	"github.com/paczfs/paczfs/image"
)

// New reports every problem of a configuration at once, each with the
// field to change and how, before anything is written.
func ExampleNew_invalidConfiguration() {
	cfg := image.ArchProfile()
	cfg.ImageFile = ""
	cfg.PoolName = "1pool"
	cfg.System.Timezone = "Mars/Olympus" // a zone name, but no zone
	_, err := image.New(cfg)
	var ce *image.ConfigError
	if errors.As(err, &ce) {
		for _, p := range ce.Problems {
			// Root, tools and the Arch keyring package depend on the machine.
			if p.Field != "host" && p.Field != "pacman.keyring_dir" {
				fmt.Printf("%s: %s\n", p.Field, p.Fix)
			}
		}
	}
	// Output:
	// image_file: set image_file (a new sparse file) or block_device (a whole disk)
	// pool_name: use letters, digits, _ - . : starting with a letter, e.g. zroot
	// manage.tool: set it to a static build of the device tool (CGO_ENABLED=0 go build -o paczfs-bootenv ./examples/bootenv), or set manage.off
	// system.timezone: use a zoneinfo name such as UTC or Europe/Berlin
}

// The profiles differ in data only: packages, repositories, how the
// initramfs is made and how the kernel command line names the root.
func ExampleArchProfile() {
	cfg := image.ArchProfile()
	fmt.Println(cfg.Packages.Bootable)
	fmt.Println(cfg.Boot.InitramfsCommand)
	fmt.Println(cfg.Boot.RootOptions)
	fmt.Println(cfg.PoolName+"/"+cfg.RootDataset, cfg.BootEnvironments)
	// Output:
	// [linux-lts zfs-linux-lts zfs-utils mkinitcpio linux-firmware intel-ucode amd-ucode openssh syslinux mtools]
	// [mkinitcpio -k {kver} -g {initrd}]
	// [zfs={dataset} rw]
	// zroot/system/default [bootable workstation]
}

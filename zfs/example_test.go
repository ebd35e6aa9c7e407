package zfs_test

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/paczfs/paczfs/hooks/hookstest"
	"github.com/paczfs/paczfs/zfs"
)

// The argv of a pool for an image: a temporary in-core name, so the
// on-disk name "zroot" can equal a pool the build host already has.
func ExampleCreatePoolArgs() {
	args, err := zfs.CreatePoolArgs(zfs.PoolSpec{
		Name: "zroot", TempName: "paczfs-build", AltRoot: "/mnt/paczfs",
		Vdevs:      []string{"/dev/loop0p2"},
		Properties: map[string]string{"compatibility": "openzfs-2.3-linux"},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	for i := 0; i < len(args); i++ {
		if strings.HasPrefix(args[i], "-") && i+1 < len(args) {
			fmt.Println(args[i], args[i+1])
			i++
		} else {
			fmt.Println(args[i])
		}
	}
	// Output:
	// zpool
	// create
	// -t paczfs-build
	// -R /mnt/paczfs
	// -o ashift=12
	// -o autoexpand=on
	// -o autotrim=on
	// -o cachefile=none
	// -o compatibility=openzfs-2.3-linux
	// -O acltype=posixacl
	// -O canmount=off
	// -O compression=lz4
	// -O dnodesize=auto
	// -O mountpoint=none
	// -O normalization=formD
	// -O relatime=on
	// -O xattr=sa
	// zroot
	// /dev/loop0p2
}

// Errors carry a sentinel to branch on.
func ExampleClient_CreateDataset() {
	fake := new(hookstest.FakeRunner)
	fake.On("zfs create", hookstest.Response{ExitCode: 1, Stderr: "cannot create 'zroot/data': dataset already exists\n"})
	c := zfs.New(zfs.WithRunner(fake))
	err := c.CreateDataset(context.Background(), "zroot/data", map[string]string{"mountpoint": "none"}, zfs.CreateOptions{})
	fmt.Println(errors.Is(err, zfs.ErrExists))
	fmt.Println(fake.Calls()[0])
	// Output:
	// true
	// zfs create -o mountpoint=none zroot/data
}

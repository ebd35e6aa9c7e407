package disk_test

import (
	"fmt"

	"github.com/paczfs/paczfs/disk"
)

// Plan the default disk: a 550 MiB ESP, 1 GiB swap and ZFS on the rest.
func ExampleLayout_Plan() {
	plan, err := disk.DefaultLayout(550*disk.MiB, disk.GiB, "zroot").Plan(20 * disk.GiB)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Print(plan)
	// Output:
	// disk 20G (41943040 sectors of 512 bytes)
	// #   role         start          end     size  name
	// 1   esp           2048      1128447     550M  EFI system partition
	// 2   swap       1128448      3225599       1G  swap
	// 3   zfs        3225600     41940991   18904M  zroot
}

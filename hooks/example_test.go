package hooks_test

import (
	"context"
	"fmt"

	"github.com/paczfs/paczfs/hooks"
	"github.com/paczfs/paczfs/hooks/hookstest"
)

// A FakeRunner scripts answers and records what would have run.
func ExampleRunner() {
	fake := new(hookstest.FakeRunner)
	fake.On("zpool list", hookstest.Response{Stdout: "rpool\n"})
	var r hooks.Runner = fake
	out, err := r.Run(context.Background(), hooks.Cmd{Args: []string{"zpool", "list", "-H", "-o", "name"}})
	fmt.Printf("%q %v\n", out, err)
	fmt.Println(fake.Calls())
	// Output:
	// "rpool\n" <nil>
	// [zpool list -H -o name]
}

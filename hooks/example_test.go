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

// A hook that writes a dracut module of its own, outside /etc, names
// that module's version as its cache key: builds with a cache_dir keep
// reusing their initramfs until the version changes.
func ExampleWithCacheKey() {
	const version = "2"
	h := hooks.WithCacheKey(hooks.Func("dracut-module", hooks.StageSystem, hooks.After,
		func(ctx context.Context, s *hooks.State) error {
			// write usr/lib/dracut/modules.d/99site/ under s.Root
			return nil
		}), "99site "+version)
	fmt.Println(h.Name(), h.Stage(), h.When(), h.CacheKey())
	// Output:
	// dracut-module system after 99site 2
}

package image_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/paczfs/paczfs/disk"
	"github.com/paczfs/paczfs/image"
)

// PruneCache bounds a build cache that no build is writing, from a timer
// say: the least recently used entries go first.
func ExamplePruneCache() {
	dir, _ := os.MkdirTemp("", "cache")
	defer os.RemoveAll(dir)
	// Three initramfs entries of 1 MiB, last used 3, 2 and 1 days ago.
	for i, name := range []string{"aa", "bb", "cc"} {
		p := filepath.Join(dir, "initramfs", strings.Repeat(name, 32))
		_ = os.MkdirAll(p, 0o700)
		_ = os.WriteFile(filepath.Join(p, "image"), make([]byte, disk.MiB), 0o600)
		used := time.Now().Add(-time.Duration(3-i) * 24 * time.Hour)
		_ = os.Chtimes(p, used, used)
	}
	res, err := image.PruneCache(context.Background(), dir, 2*disk.MiB)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, p := range res.Removed {
		fmt.Println("removed", filepath.Base(p)[:8])
	}
	fmt.Println("kept", disk.Size(res.Kept))
	// Output:
	// removed aaaaaaaa
	// kept 2M
}

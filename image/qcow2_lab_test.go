//go:build lab

package image_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/paczfs/paczfs/disk"
	"github.com/paczfs/paczfs/hooks"
	"github.com/paczfs/paczfs/image"
)

// TestLabQCOW2FromBlockDevice: a build on a whole disk writes its outputs
// from the device itself. The in-process QCOW2 writer reads a loop
// device's size from its end (a device has no file size) and every
// cluster of it (it has no holes to skip); qemu-img compares the result
// with the device.
func TestLabQCOW2FromBlockDevice(t *testing.T) {
	dir := t.TempDir()
	backing := filepath.Join(dir, "disk.raw")
	f, err := os.Create(backing)
	require.NoError(t, err)
	require.NoError(t, f.Truncate(96<<20))
	_, err = f.WriteAt([]byte(strings.Repeat("a block device, not a file ", 40000)), 7<<20)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	loop, err := disk.Attach(context.Background(), backing, disk.LoopOptions{ReadOnly: true})
	require.NoError(t, err)
	t.Cleanup(func() { _ = loop.Detach(context.Background(), 10*time.Second) })

	dst := filepath.Join(dir, "disk.qcow2")
	require.NoError(t, image.WriteOutput(context.Background(), &hooks.ExecRunner{}, loop.Path, image.Output{Format: image.QCOW2, Path: dst}))
	out, err := exec.Command("qemu-img", "compare", "-f", "raw", "-F", "qcow2", loop.Path, dst).CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), "Images are identical")
	out, err = exec.Command("qemu-img", "info", dst).CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), "virtual size: 96 MiB")
	out, err = exec.Command("qemu-img", "check", dst).CombinedOutput()
	require.NoError(t, err, "%s", out)
}

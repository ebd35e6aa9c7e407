package image_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/paczfs/paczfs/hooks"
	"github.com/paczfs/paczfs/image"
	"github.com/paczfs/paczfs/internal/testutil"
)

func TestConvertArgs(t *testing.T) {
	cases := map[image.Format]string{
		image.QCOW2: "qemu-img convert -p -f raw -c -W -O qcow2 in.img out",
		image.QCOW:  "qemu-img convert -p -f raw -O qcow in.img out",
		image.VDI:   "qemu-img convert -p -f raw -O vdi in.img out",
		image.VMDK:  "qemu-img convert -p -f raw -O vmdk -o subformat=streamOptimized in.img out",
		image.VHDX:  "qemu-img convert -p -f raw -O vhdx -o subformat=dynamic in.img out",
		image.Raw:   "qemu-img convert -p -f raw -O raw -S 4k in.img out",
	}
	for f, want := range cases {
		args, err := image.ConvertArgs("in.img", "out", f)
		require.NoError(t, err)
		assert.Equal(t, want, strings.Join(args, " "))
	}
	_, err := image.ConvertArgs("a.img", "./a.img", image.Raw)
	assert.ErrorContains(t, err, "overwrite the input")
	_, err = image.ParseFormat("iso")
	assert.ErrorContains(t, err, "use one of raw, vdi, qcow, qcow2, vmdk, vhdx")
	f, err := image.ParseFormat("QCOW2")
	require.NoError(t, err)
	assert.Equal(t, image.QCOW2, f)
}

// Every format converts back to the same bytes (qemu-img compare).
func TestConvertRoundTrip(t *testing.T) {
	qemuImg := testutil.RequireTool(t, "qemu-img", "qemu-utils")
	dir := t.TempDir()
	src := filepath.Join(dir, "disk.img")
	require.NoError(t, os.WriteFile(src, nil, 0o644))
	require.NoError(t, os.Truncate(src, 64<<20))
	f, err := os.OpenFile(src, os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteAt([]byte(strings.Repeat("paczfs ", 100000)), 5<<20)
	require.NoError(t, err)
	f.Close()
	for _, fm := range []image.Format{image.Raw, image.VDI, image.QCOW, image.QCOW2, image.VMDK, image.VHDX} {
		dst := filepath.Join(dir, "out."+string(fm))
		require.NoError(t, image.Convert(context.Background(), &hooks.ExecRunner{}, src, dst, fm), fm)
		out, err := exec.Command(qemuImg, "compare", "-f", "raw", src, dst).CombinedOutput()
		assert.NoError(t, err, "%s: %s", fm, out)
		assert.Contains(t, string(out), "Images are identical", fm)
	}
	// The default QCOW2 is paczfs's own: zlib, and clean for qemu-img.
	info, err := exec.Command(qemuImg, "info", filepath.Join(dir, "out.qcow2")).CombinedOutput()
	require.NoError(t, err, "%s", info)
	assert.Contains(t, string(info), "compression type: zlib")
	check, err := exec.Command(qemuImg, "check", filepath.Join(dir, "out.qcow2")).CombinedOutput()
	require.NoError(t, err, "%s", check)
	assert.Contains(t, string(check), "No errors were found")
	// An output as a build writes it, compression included.
	dst := filepath.Join(dir, "zstd.qcow2")
	require.NoError(t, image.WriteOutput(context.Background(), &hooks.ExecRunner{}, src, image.Output{Format: image.QCOW2, Path: dst, Compression: image.CompressZstd}))
	out, err := exec.Command(qemuImg, "compare", "-f", "raw", src, dst).CombinedOutput()
	assert.NoError(t, err, "%s", out)
	info, err = exec.Command(qemuImg, "info", dst).CombinedOutput()
	require.NoError(t, err, "%s", info)
	assert.Contains(t, string(info), "compression type: zstd")
}

func TestOutputArgsCompression(t *testing.T) {
	args, err := image.OutputArgs("/a.raw", image.Output{Format: image.QCOW2, Path: "/b.qcow2", Compression: image.CompressZstd})
	require.NoError(t, err)
	assert.Equal(t, []string{"qemu-img", "convert", "-p", "-f", "raw", "-c", "-W", "-O", "qcow2", "-o", "compression_type=zstd", "/a.raw", "/b.qcow2"}, args)
	args, err = image.OutputArgs("/a.raw", image.Output{Format: image.QCOW2, Path: "/b.qcow2"})
	require.NoError(t, err)
	assert.Equal(t, []string{"qemu-img", "convert", "-p", "-f", "raw", "-c", "-W", "-O", "qcow2", "/a.raw", "/b.qcow2"}, args, "zlib, compressed on every CPU")
	args, err = image.OutputArgs("/a.raw", image.Output{Format: image.QCOW2, Path: "/b.qcow2", Compression: image.CompressNone})
	require.NoError(t, err)
	assert.NotContains(t, args, "-c")
	assert.NotContains(t, args, "-W", "uncompressed: in order, nothing to gain")
	_, err = image.OutputArgs("/a.raw", image.Output{Format: image.VDI, Path: "/b.vdi", Compression: image.CompressZstd})
	assert.ErrorContains(t, err, "qcow2 only")
	_, err = image.OutputArgs("/a.raw", image.Output{Format: image.QCOW2, Path: "/b.qcow2", Compression: "lzma"})
	assert.ErrorContains(t, err, "unknown compression")
}

package boot

import (
	"bytes"
	"compress/gzip"
	"io"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/paczfs/paczfs/internal/testutil"
)

func TestCompressInitramfs(t *testing.T) {
	early := testutil.Newc("early_cpio", "kernel/", "kernel/x86/", "kernel/x86/microcode/", "kernel/x86/microcode/GenuineIntel.bin")
	main := testutil.Newc("bin/", "init", "etc/", "etc/hostid")
	decode := map[string]func([]byte) []byte{
		CompressZstd: func(b []byte) []byte {
			d, err := zstd.NewReader(bytes.NewReader(b))
			require.NoError(t, err)
			defer d.Close()
			out, err := io.ReadAll(d)
			require.NoError(t, err)
			return out
		},
		CompressGzip: func(b []byte) []byte {
			d, err := gzip.NewReader(bytes.NewReader(b))
			require.NoError(t, err)
			out, err := io.ReadAll(d)
			require.NoError(t, err)
			return out
		},
	}
	for method, dec := range decode {
		t.Run(method, func(t *testing.T) {
			// Early microcode first: kept as it is, the rest compressed.
			var out bytes.Buffer
			ok, err := CompressInitramfs(&out, append(append([]byte{}, early...), main...), method)
			require.NoError(t, err)
			assert.True(t, ok)
			require.True(t, bytes.HasPrefix(out.Bytes(), early), "the early archive stays uncompressed at the start")
			assert.Equal(t, main, dec(out.Bytes()[len(early):]))
			missing, err := InitramfsMissing(bytes.NewReader(out.Bytes()), []string{"kernel/x86/microcode/GenuineIntel.bin", "etc/hostid", "init"})
			require.NoError(t, err)
			assert.Empty(t, missing)

			// Without early archives, all of it.
			out.Reset()
			ok, err = CompressInitramfs(&out, main, method)
			require.NoError(t, err)
			assert.True(t, ok)
			assert.Equal(t, main, dec(out.Bytes()))

			// A main archive that looks early too (only kernel/ members)
			// is early: nothing is left to compress.
			out.Reset()
			ok, err = CompressInitramfs(&out, early, method)
			require.NoError(t, err)
			assert.False(t, ok)
			assert.Equal(t, early, out.Bytes())
		})
	}

	// The generator compressed already: written unchanged.
	var z bytes.Buffer
	w, err := zstd.NewWriter(&z)
	require.NoError(t, err)
	_, err = w.Write(main)
	require.NoError(t, err)
	require.NoError(t, w.Close())
	img := append(append([]byte{}, early...), z.Bytes()...)
	var out bytes.Buffer
	ok, err := CompressInitramfs(&out, img, CompressZstd)
	require.NoError(t, err)
	assert.False(t, ok)
	assert.Equal(t, img, out.Bytes())

	// Refused: not a cpio at the start, a truncated one, another method.
	for name, in := range map[string][]byte{
		"compressed whole": z.Bytes(),
		"empty":            nil,
		"truncated":        early[:200],
		"cut name":         early[:112],
	} {
		_, err := CompressInitramfs(io.Discard, in, CompressZstd)
		assert.ErrorIs(t, err, ErrInitramfsFormat, name)
	}
	// Every cut of an image is an error or a result, never a panic.
	whole := append(append([]byte{}, early...), main...)
	for n := range whole {
		_, _ = CompressInitramfs(io.Discard, whole[:n], CompressGzip)
	}
	_, err = CompressInitramfs(io.Discard, main, "lz4")
	assert.ErrorContains(t, err, `"lz4": use zstd or gzip`)
}

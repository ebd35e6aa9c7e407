package qcow2

import (
	"bytes"
	"compress/flate"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// The test decoder itself, against the standard library's encoder: every
// block type, and a distance it must see.
func TestInflateDecodesWhatCompressFlateWrites(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	noise := make([]byte, 20000)
	for i := range noise {
		noise[i] = byte(r.IntN(256))
	}
	text := bytes.Repeat([]byte("the quick brown fox jumps over the lazy dog "), 500)
	far := append(append(bytes.Clone(noise[:100]), noise[100:20000]...), noise[:100]...) // a match 20000 back
	for name, level := range map[string]int{"stored": flate.NoCompression, "huffman": flate.HuffmanOnly, "best": flate.BestCompression, "fast": flate.BestSpeed} {
		for _, in := range [][]byte{noise, text, far} {
			var z bytes.Buffer
			w, err := flate.NewWriter(&z, level)
			require.NoError(t, err)
			_, err = w.Write(in)
			require.NoError(t, err)
			require.NoError(t, w.Close())
			out, _, err := inflate(z.Bytes())
			require.NoError(t, err, name)
			require.Equal(t, in, out, name)
		}
	}
	var z bytes.Buffer
	w, _ := flate.NewWriter(&z, flate.BestCompression)
	w.Write(far)
	w.Close()
	_, farthest, err := inflate(z.Bytes())
	require.NoError(t, err)
	require.Equal(t, 20000, farthest, "the repeated first 100 bytes are found 20000 back")
}

package pacman

import (
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/paczfs/paczfs/hooks"
	"github.com/paczfs/paczfs/internal/alpm"
)

// gpgVerdict runs gpg --verify on the keyring the way gpgme does (status-fd)
// and reports whether gpg gives a good, fully trusted signature, which is
// what libalpm needs at Required TrustedOnly.
func gpgVerdict(t *testing.T, dir, file string, sig []byte) (bool, string) {
	t.Helper()
	sf := filepath.Join(t.TempDir(), "x.sig")
	require.NoError(t, os.WriteFile(sf, sig, 0o644))
	cmd := exec.Command("gpg", "--homedir", dir, "--batch", "--no-tty", "--status-fd", "1", "--verify", sf, file)
	out, _ := cmd.CombinedOutput()
	s := string(out)
	ok := strings.Contains(s, "[GNUPG:] GOODSIG") && (strings.Contains(s, "TRUST_FULLY") || strings.Contains(s, "TRUST_ULTIMATE"))
	return ok, s
}

// sigBody returns the body of the single new-format packet in b.
func sigBody(t *testing.T, b []byte) []byte {
	t.Helper()
	require.Equal(t, byte(0xc2), b[0], "new-format signature packet")
	switch {
	case b[1] < 192:
		return b[2 : 2+int(b[1])]
	case b[1] < 224:
		n := int(b[1]-192)<<8 + int(b[2]) + 192
		return b[3 : 3+n]
	}
	t.Fatal("unexpected length")
	return nil
}

func newFormat(body []byte) []byte {
	var out bytes.Buffer
	out.WriteByte(0xc2)
	n := len(body)
	switch {
	case n < 192:
		out.WriteByte(byte(n))
	case n < 8384:
		n -= 192
		out.WriteByte(byte(n>>8) + 192)
		out.WriteByte(byte(n))
	default:
		panic("long")
	}
	out.Write(body)
	return out.Bytes()
}

// The fast path passes only the encodings gpg reads as one signature: the
// same genuine signature re-encoded with a partial or indeterminate
// length, or with an unknown critical subpacket in its unhashed area
// (which anyone can add), is refused by gpg, so libalpm decides it; the
// old-format definite length gpg itself writes passes both.
func TestSigCheckPassesOnlyEncodingsGpgReads(t *testing.T) {
	k := newSigKeyring(t)
	c, err := loadSigChecker(t.Context(), &hooks.ExecRunner{}, k.dir)
	require.NoError(t, err)
	required, err := alpm.ParseSigLevel("Required", alpm.DefaultSigLevel)
	require.NoError(t, err)
	dir := t.TempDir()
	good := signed(t, dir, "good", k.packager, nil)
	orig := mustRead(t, good+".sig")
	body := sigBody(t, orig)

	ok, out := gpgVerdict(t, k.dir, good, orig)
	require.True(t, ok, out)
	require.NoError(t, c.check(good, orig, required, sumOf(t, good)))

	cases := map[string][]byte{}
	// 1. new-format partial body lengths: first chunk 2^5=32 bytes, then the rest.
	{
		var b bytes.Buffer
		b.WriteByte(0xc2)
		b.WriteByte(224 + 5) // partial, 32 bytes
		b.Write(body[:32])
		rest := body[32:]
		require.Less(t, len(rest), 192)
		b.WriteByte(byte(len(rest)))
		b.Write(rest)
		cases["partial body length"] = b.Bytes()
	}
	// 2. old-format indeterminate length (length type 3).
	{
		b := append([]byte{0x80 | 2<<2 | 3}, body...)
		cases["old-format indeterminate length"] = b
	}
	// 3. an unknown critical subpacket added to the unhashed area (anyone can).
	{
		hl := int(binary.BigEndian.Uint16(body[4:6]))
		uOff := 6 + hl
		ul := int(binary.BigEndian.Uint16(body[uOff : uOff+2]))
		sub := []byte{2, 0x80 | 101, 0x00} // length 2: type 101 critical, one data byte
		nb := append([]byte{}, body[:uOff]...)
		var l [2]byte
		binary.BigEndian.PutUint16(l[:], uint16(ul+len(sub)))
		nb = append(nb, l[:]...)
		nb = append(nb, body[uOff+2:uOff+2+ul]...)
		nb = append(nb, sub...)
		nb = append(nb, body[uOff+2+ul:]...)
		cases["unknown critical unhashed subpacket"] = newFormat(nb)
	}
	for name, sig := range cases {
		gok, gout := gpgVerdict(t, k.dir, good, sig)
		require.False(t, gok, "%s: gpg accepts it:\n%s", name, gout)
		assert.ErrorIs(t, c.check(good, sig, required, sumOf(t, good)), errSigSlowPath, name)
	}
	// Old format, two-byte length: what gpg writes.
	old := []byte{0x80 | 2<<2 | 1, byte(len(body) >> 8), byte(len(body))}
	old = append(old, body...)
	gok, gout := gpgVerdict(t, k.dir, good, old)
	require.True(t, gok, gout)
	assert.NoError(t, c.check(good, old, required, sumOf(t, good)))
	// Trailing bytes after the packet.
	assert.ErrorIs(t, c.check(good, append(slices.Clone(orig), 0), required, sumOf(t, good)), errSigSlowPath)
}

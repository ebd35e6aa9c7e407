package pacman

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestTrustedKeyFilesAreCheckedBeforeABuild(t *testing.T) {
	e, err := openpgp.NewEntity("test", "", "test@paczfs.invalid", nil)
	require.NoError(t, err)
	want := strings.ToUpper(hexString(e.PrimaryKey.Fingerprint))
	dir := t.TempDir()
	var bin, arm, sec bytes.Buffer
	require.NoError(t, e.Serialize(&bin))
	w, err := armor.Encode(&arm, openpgp.PublicKeyType, nil)
	require.NoError(t, err)
	require.NoError(t, e.Serialize(w))
	require.NoError(t, w.Close())
	require.NoError(t, e.SerializePrivate(&sec, nil))
	files := map[string][]byte{"key.gpg": bin.Bytes(), "key.asc": arm.Bytes(), "secret.gpg": sec.Bytes(), "junk.asc": []byte("not a key\n")}
	for n, d := range files {
		require.NoError(t, os.WriteFile(filepath.Join(dir, n), d, 0o644))
	}
	for _, n := range []string{"key.gpg", "key.asc"} {
		got, err := KeyFileFingerprints(filepath.Join(dir, n))
		require.NoError(t, err, n)
		assert.Equal(t, []string{want}, got, n)
	}
	for n, msg := range map[string]string{"secret.gpg": "holds a secret key", "junk.asc": "not an OpenPGP public key", "missing.asc": "no such file"} {
		_, err := KeyFileFingerprints(filepath.Join(dir, n))
		assert.ErrorIs(t, err, ErrKeyFile, n)
		assert.ErrorContains(t, err, msg, n)
	}
	c := Config{KeyringDir: filepath.Join(dir, "nope"), TrustedKeys: []TrustedKey{{ID: "ABCD"}, {File: filepath.Join(dir, "key.asc")}, {File: filepath.Join(dir, "junk.asc")}}}
	fprs, err := c.CheckFiles()
	assert.ErrorContains(t, err, "keyring_dir")
	assert.ErrorContains(t, err, "trusted_keys[2].file")
	assert.NotContains(t, err.Error(), "trusted_keys[1]")
	assert.Equal(t, []string{want}, fprs[filepath.Join(dir, "key.asc")])
}

func hexString(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}

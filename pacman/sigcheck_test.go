package pacman

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/paczfs/paczfs/hooks"
	"github.com/paczfs/paczfs/internal/alpm"
	"github.com/paczfs/paczfs/internal/testutil"
)

func TestParseValidity(t *testing.T) {
	colons := strings.Join([]string{
		"tru::1:1796321138:0:3:1:5",
		"pub:u:255:22:9A7FEC2B21F2333A:1796321133:::u:::scSC:::::ed25519:::0:",
		"fpr:::::::::1E3CC1EDBD262C0729C840C99A7FEC2B21F2333A:",
		"uid:u::::1796321133::79311EDEA01302E0DBBB2F33AE799F8BB677652F::Master <m@x>::::::::::0:",
		"pub:f:4096:1:AB19BB33A6629AB4:1796321002:::m:::scSC:::::::0:",
		"fpr:::::::::722b1f93a13b14a4dc768ab1ab19bb33a6629ab4:",
		"uid:f::::1796321002::16E3::Packager <p@x>::::::::::0:",
		"sub:r:4096:1:1111111111111111:1796321002::::::s:::::::0:",
		"fpr:::::::::AAAA1111111111111111111111111111111111111:",
		"sub:f:4096:1:2222222222222222:1796321002::::::s:::::::0:",
		"fpr:::::::::BBBB2222222222222222222222222222222222222:",
		"pub:f:255:22:CCCCCCCCCCCCCCCC:1796321002:::-:::scSCD:::::ed25519:::0:",
		"fpr:::::::::CCCC3333333333333333333333333333333333333:",
		"pub:-:255:22:DDDDDDDDDDDDDDDD:1796321002:::-:::scSC:::::ed25519:::0:",
		"fpr:::::::::DDDD4444444444444444444444444444444444444:",
		"",
	}, "\n")
	v := parseValidity(colons)
	assert.Equal(t, map[string]keyValidity{
		"1E3CC1EDBD262C0729C840C99A7FEC2B21F2333A":  {own: 'u', primary: 'u'},
		"722B1F93A13B14A4DC768AB1AB19BB33A6629AB4":  {own: 'f', primary: 'f'},
		"AAAA1111111111111111111111111111111111111": {own: 'r', primary: 'f'},
		"BBBB2222222222222222222222222222222222222": {own: 'f', primary: 'f'},
		"CCCC3333333333333333333333333333333333333": {own: 'f', primary: 'f', disabled: true},
		"DDDD4444444444444444444444444444444444444": {own: '-', primary: '-'},
	}, v)
}

func TestTrustedFollowsTheSigLevel(t *testing.T) {
	trustedOnly, err := alpm.ParseSigLevel("Required TrustedOnly", alpm.DefaultSigLevel)
	require.NoError(t, err)
	trustAll, err := alpm.ParseSigLevel("Required TrustAll", alpm.DefaultSigLevel)
	require.NoError(t, err)
	for _, c := range []struct {
		v             byte
		only, evenAll bool
	}{
		{'u', true, true}, {'f', true, true},
		{'m', false, true}, {'-', false, true}, {'q', false, true}, {'o', false, true},
		{'n', false, false}, {'r', false, false}, {'e', false, false}, {'i', false, false},
		{'d', false, false}, {0, false, false},
	} {
		assert.Equal(t, c.only, trusted(c.v, trustedOnly), "%q TrustedOnly", c.v)
		assert.Equal(t, c.evenAll, trusted(c.v, trustAll), "%q TrustAll", c.v)
	}
}

// sigKeyring is a gpg keyring as a pacman keyring is: a master key of
// ultimate trust, a packager key it certified (full validity), a key
// nobody certified (unknown), a certified key that was revoked, and a
// key the keyring lacks.
type sigKeyring struct {
	dir                                       string
	master, packager, stranger, revoked, away *openpgp.Entity
	subsigner                                 *openpgp.Entity // certified, signs with a subkey, as many Arch packagers do
	revokedFile                               string          // signed by revoked before it was
}

func newSigKeyring(t *testing.T) *sigKeyring {
	testutil.RequireTool(t, "gpg", "gnupg")
	// A short home: gpg's sockets must fit a unix socket path.
	dir, err := os.MkdirTemp("", "pzsig")
	require.NoError(t, err)
	t.Cleanup(func() {
		exec.Command("gpgconf", "--homedir", dir, "--kill", "all").Run()
		os.RemoveAll(dir)
	})
	require.NoError(t, os.Chmod(dir, 0o700))
	k := &sigKeyring{dir: dir}
	made := time.Now().Add(-72 * time.Hour) // before the expired signature below
	cfg := &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA, Time: func() time.Time { return made }}
	ent := func(name string) *openpgp.Entity {
		e, err := openpgp.NewEntity(name, "", name+"@paczfs.invalid", cfg)
		require.NoError(t, err)
		return e
	}
	k.master, k.packager, k.stranger, k.revoked, k.away = ent("master"), ent("packager"), ent("stranger"), ent("revoked"), ent("away")
	k.subsigner = ent("subsigner")
	require.NoError(t, k.subsigner.AddSigningSubkey(cfg))
	for _, e := range []*openpgp.Entity{k.packager, k.revoked, k.subsigner} {
		for id := range e.Identities {
			require.NoError(t, e.SignIdentity(id, k.master, cfg))
		}
	}
	k.revokedFile = signed(t, t.TempDir(), "revoked", k.revoked, nil)
	require.NoError(t, k.revoked.RevokeKey(packet.KeyCompromised, "test", nil))
	var pub bytes.Buffer
	for _, e := range []*openpgp.Entity{k.master, k.packager, k.stranger, k.revoked, k.subsigner} {
		require.NoError(t, e.Serialize(&pub))
	}
	gpg := func(stdin []byte, args ...string) {
		cmd := exec.Command("gpg", append([]string{"--homedir", dir, "--batch", "--no-tty"}, args...)...)
		cmd.Stdin = bytes.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, string(out))
	}
	gpg(pub.Bytes(), "--import")
	gpg([]byte(strings.ToUpper(fmtFpr(k.master.PrimaryKey.Fingerprint))+":6:\n"), "--import-ownertrust")
	gpg(nil, "--check-trustdb")
	return k
}

func fmtFpr(b []byte) string {
	const hexd = "0123456789ABCDEF"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, hexd[c>>4], hexd[c&15])
	}
	return string(out)
}

// signed writes a package file and its .sig by e, returning the file.
func signed(t *testing.T, dir, name string, e *openpgp.Entity, cfg *packet.Config) string {
	file := filepath.Join(dir, name)
	data := bytes.Repeat([]byte(name), 1000)
	require.NoError(t, os.WriteFile(file, data, 0o644))
	var sig bytes.Buffer
	require.NoError(t, openpgp.DetachSign(&sig, e, bytes.NewReader(data), cfg))
	require.NoError(t, os.WriteFile(file+".sig", sig.Bytes(), 0o644))
	return file
}

// TestSigCheckAcceptsOnlyWhatLibalpmWould runs the fast check on a real
// gpg keyring: it passes what libalpm accepts at each level and leaves
// everything else to libalpm (errSigSlowPath), never failing outright.
func TestSigCheckAcceptsOnlyWhatLibalpmWould(t *testing.T) {
	k := newSigKeyring(t)
	c, err := loadSigChecker(t.Context(), &hooks.ExecRunner{}, k.dir)
	require.NoError(t, err)
	// gpg's view of the keys, which the check trusts for validity.
	assert.Equal(t, byte('u'), c.validity[fmtFpr(k.master.PrimaryKey.Fingerprint)].own)
	assert.Equal(t, byte('f'), c.validity[fmtFpr(k.packager.PrimaryKey.Fingerprint)].own)
	assert.Equal(t, byte('r'), c.validity[fmtFpr(k.revoked.PrimaryKey.Fingerprint)].own)
	assert.NotContains(t, []byte{'f', 'u', 'm'}, c.validity[fmtFpr(k.stranger.PrimaryKey.Fingerprint)].own)

	level := func(s string) int {
		l, err := alpm.ParseSigLevel(s, alpm.DefaultSigLevel)
		require.NoError(t, err)
		return l
	}
	required, trustAll, optional := level("Required"), level("Required TrustAll"), level("Optional")
	dir := t.TempDir()
	pass := func(file string, lvl int) {
		t.Helper()
		sig, err := os.ReadFile(file + ".sig")
		require.NoError(t, err)
		assert.NoError(t, c.check(file, sig, lvl))
	}
	slow := func(file string, sig []byte, lvl int, why string) {
		t.Helper()
		if sig == nil {
			var err error
			sig, err = os.ReadFile(file + ".sig")
			require.NoError(t, err)
		}
		err := c.check(file, sig, lvl)
		require.Error(t, err, why)
		assert.ErrorIs(t, err, errSigSlowPath, why)
		assert.Contains(t, err.Error(), filepath.Base(file), "the error names the file")
	}

	good := signed(t, dir, "good", k.packager, nil)
	pass(good, required)
	pass(signed(t, dir, "bymaster", k.master, nil), required)
	bysub := signed(t, dir, "bysub", k.subsigner, nil)
	sigp, err := packet.Read(bytes.NewReader(mustRead(t, bysub+".sig")))
	require.NoError(t, err)
	require.NotEqual(t, k.subsigner.PrimaryKey.KeyId, *sigp.(*packet.Signature).IssuerKeyId, "signed by the subkey")
	sub := k.subsigner.Subkeys[len(k.subsigner.Subkeys)-1].PublicKey
	assert.Equal(t, keyValidity{own: 'f', primary: 'f'}, c.validity[fmtFpr(sub.Fingerprint)], "gpg's view of the signing subkey")
	pass(bysub, required)

	tampered := signed(t, dir, "tampered", k.packager, nil)
	require.NoError(t, os.WriteFile(tampered, []byte("something else"), 0o644))
	slow(tampered, nil, trustAll, "a file that does not match its signature")

	stranger := signed(t, dir, "stranger", k.stranger, nil)
	slow(stranger, nil, required, "a key of unknown validity under TrustedOnly")
	pass(stranger, trustAll)

	slow(k.revokedFile, nil, trustAll, "a revoked key")
	slow(signed(t, dir, "away", k.away, nil), nil, trustAll, "a key the keyring lacks")

	// Two signatures in one file: gpg checks both, so the check does not
	// take the first good one alone.
	two := signed(t, dir, "two", k.packager, nil)
	first, err := os.ReadFile(two + ".sig")
	require.NoError(t, err)
	var other bytes.Buffer
	require.NoError(t, openpgp.DetachSign(&other, k.away, bytes.NewReader(mustRead(t, two)), nil))
	slow(two, append(first, other.Bytes()...), trustAll, "two signatures, one by an unknown key")

	var text bytes.Buffer
	require.NoError(t, openpgp.DetachSignText(&text, k.packager, bytes.NewReader(mustRead(t, good)), nil))
	slow(good, text.Bytes(), required, "a text-mode signature")

	past := time.Now().Add(-48 * time.Hour)
	expired := signed(t, dir, "expired", k.stranger, &packet.Config{Time: func() time.Time { return past }, SigLifetimeSecs: 3600})
	slow(expired, nil, trustAll, "an expired signature")

	slow(good, []byte("not a signature"), required, "garbage")

	// checkAll: the database's signature (base64) comes before the file's,
	// as in libalpm; a missing .sig passes only when signatures are
	// optional; every accepted package is counted.
	var n atomic.Int64
	count := func(int) { n.Add(1) }
	goodSig := base64.StdEncoding.EncodeToString(mustRead(t, good+".sig"))
	nosig := filepath.Join(dir, "nosig")
	require.NoError(t, os.WriteFile(nosig, []byte("x"), 0o644))
	require.NoError(t, c.checkAll(t.Context(), []sigJob{
		{file: good, level: required},
		{file: stranger, level: trustAll},
		{file: good, b64: goodSig, level: required},
		{file: nosig, level: optional},
	}, count))
	assert.Equal(t, int64(4), n.Load())
	strangerSig := base64.StdEncoding.EncodeToString(mustRead(t, stranger+".sig"))
	for name, jobs := range map[string][]sigJob{
		"a missing required signature":               {{file: good, level: required}, {file: nosig, level: required}},
		"the database's signature is another file's": {{file: good, b64: strangerSig, level: trustAll}},
		"the database's signature is not base64":     {{file: good, b64: "!!", level: required}},
		"an untrusted key among good ones":           {{file: good, level: required}, {file: stranger, level: required}},
	} {
		err := c.checkAll(t.Context(), jobs, func(int) {})
		assert.ErrorIs(t, err, errSigSlowPath, name)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err = c.checkAll(ctx, []sigJob{{file: good, level: required}}, func(int) {})
	assert.Error(t, err)
	assert.False(t, errors.Is(err, errSigSlowPath), "a cancelled check is not left to libalpm: %v", err)
}

func mustRead(t *testing.T, file string) []byte {
	t.Helper()
	b, err := os.ReadFile(file)
	require.NoError(t, err)
	return b
}

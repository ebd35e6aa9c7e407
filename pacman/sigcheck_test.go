package pacman

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
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
		"pub:f:255:22:EEEEEEEEEEEEEEEE:1796321002:::-:::scSC:::::ed25519:::0:",
		"fpr:::::::::EEEE5555555555555555555555555555555555555:",
		"pub:f:255:22:EEEEEEEEEEEEEEEE:1796321002:::-:::scSC:::::ed25519:::0:",
		"fpr:::::::::EEEE5555555555555555555555555555555555555:",
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
		"EEEE5555555555555555555555555555555555555": {}, // listed twice
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
	gpg([]byte(fmtFpr(k.master.PrimaryKey.Fingerprint)+":6:\n"), "--import-ownertrust")
	gpg(nil, "--check-trustdb")
	return k
}

func fmtFpr(b []byte) string { return strings.ToUpper(hex.EncodeToString(b)) }

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
		assert.NoError(t, c.check(file, sig, lvl, sumOf(t, file)))
	}
	slow := func(file string, sig []byte, lvl int, why string) {
		t.Helper()
		if sig == nil {
			var err error
			sig, err = os.ReadFile(file + ".sig")
			require.NoError(t, err)
		}
		err := c.check(file, sig, lvl, sumOf(t, file))
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

	// Packets go-crypto's reader would skip, which libalpm does not take:
	// a marker (gpg ignores it, but libalpm 15's check hangs on it, as
	// pacman -S does in the lab), a packet of an unknown type, a
	// signature with an unknown hash (gpg: "invalid digest algorithm"),
	// before or after a good one.
	goodBytes := mustRead(t, good+".sig")
	marker := []byte{0xa8, 0x03, 'P', 'G', 'P'}
	unknown := []byte{0xfc, 0x01, 0x00}
	require.Less(t, goodBytes[1], byte(192), "a one-octet packet length")
	badHash := bytes.Clone(goodBytes)
	badHash[2+3] = 100 // version, type, public-key algorithm, hash algorithm
	for name, extra := range map[string][]byte{"a marker packet": marker, "an unknown packet": unknown, "a signature with an unknown hash": badHash} {
		slow(good, append(bytes.Clone(goodBytes), extra...), trustAll, name+" after the signature")
		slow(good, append(bytes.Clone(extra), goodBytes...), trustAll, name+" before the signature")
	}

	// A signature older than its key: gpg's "time conflict".
	pk := k.packager.PrimaryKey
	early := &packet.Signature{Version: 4, SigType: packet.SigTypeBinary, PubKeyAlgo: pk.PubKeyAlgo, Hash: crypto.SHA256,
		CreationTime: pk.CreationTime.Add(-time.Hour), IssuerKeyId: &pk.KeyId, IssuerFingerprint: pk.Fingerprint}
	h, err := early.PrepareSign(nil)
	require.NoError(t, err)
	h.Write(mustRead(t, good))
	require.NoError(t, early.Sign(h, k.packager.PrivateKey, nil))
	var earlyBytes bytes.Buffer
	require.NoError(t, early.Serialize(&earlyBytes))
	slow(good, earlyBytes.Bytes(), trustAll, "a signature older than its key")

	// The file must be the one the database describes.
	for _, sum := range []string{"", strings.Repeat("0", 64)} {
		err := c.check(good, goodBytes, required, sum)
		assert.ErrorIs(t, err, errSigSlowPath, "SHA-256 %q", sum)
	}

	// checkAll: the database's signature (base64) comes before the file's,
	// as in libalpm; a missing .sig passes only when signatures are
	// optional; every accepted package is counted.
	var n atomic.Int64
	count := func(int) { n.Add(1) }
	job := func(file, b64 string, level int) sigJob {
		return sigJob{file: file, b64: b64, level: level, sha256: sumOf(t, file)}
	}
	goodSig := base64.StdEncoding.EncodeToString(mustRead(t, good+".sig"))
	nosig := filepath.Join(dir, "nosig")
	require.NoError(t, os.WriteFile(nosig, []byte("x"), 0o644))
	require.NoError(t, c.checkAll(t.Context(), []sigJob{
		job(good, "", required),
		job(stranger, "", trustAll),
		job(good, goodSig, required),
		job(nosig, "", optional),
	}, count))
	assert.Equal(t, int64(4), n.Load())
	strangerSig := base64.StdEncoding.EncodeToString(mustRead(t, stranger+".sig"))
	for name, jobs := range map[string][]sigJob{
		"a missing required signature":               {job(good, "", required), job(nosig, "", required)},
		"the database's signature is another file's": {job(good, strangerSig, trustAll)},
		"the database's signature is not base64":     {job(good, "!!", required)},
		"an untrusted key among good ones":           {job(good, "", required), job(stranger, "", required)},
	} {
		err := c.checkAll(t.Context(), jobs, func(int) {})
		assert.ErrorIs(t, err, errSigSlowPath, name)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err = c.checkAll(ctx, []sigJob{job(good, "", required)}, func(int) {})
	assert.Error(t, err)
	assert.False(t, errors.Is(err, errSigSlowPath), "a cancelled check is not left to libalpm: %v", err)
}

func mustRead(t *testing.T, file string) []byte {
	t.Helper()
	b, err := os.ReadFile(file)
	require.NoError(t, err)
	return b
}

func sumOf(t *testing.T, file string) string {
	t.Helper()
	sum := sha256.Sum256(mustRead(t, file))
	return hex.EncodeToString(sum[:])
}

// TestCheckSignaturesFollowsEachRepository runs a session's check: each
// package at its repository's level, found in the first cache that has
// it; a repository the session has no level for, or a package missing
// from the cache, goes to libalpm.
func TestCheckSignaturesFollowsEachRepository(t *testing.T) {
	k := newSigKeyring(t)
	level := func(s string) int {
		l, err := alpm.ParseSigLevel(s, alpm.DefaultSigLevel)
		require.NoError(t, err)
		return l
	}
	empty, dir := t.TempDir(), t.TempDir()
	signed(t, dir, "good", k.packager, nil)
	stranger := signed(t, dir, "stranger", k.stranger, nil)
	require.NoError(t, os.Remove(stranger+".sig"))
	var events []Event
	s := &session{in: &Installer{run: &hooks.ExecRunner{}, emit: func(e Event) { events = append(events, e) }},
		ctx: t.Context(), gpgdir: k.dir, cache: []string{empty, dir},
		pkgLevels: map[string]int{"core": level("Required"), "extra": level("Optional TrustAll"), "local": level("Never")}}
	pkg := func(name, repo string) alpm.Package {
		p := alpm.Package{Name: name, Version: "1-1", Repo: repo, Filename: name}
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			p.SHA256 = sumOf(t, filepath.Join(dir, name))
		}
		return p
	}
	got, err := s.checkSignatures([]alpm.Package{pkg("good", "core"), pkg("stranger", "extra"), pkg("absent", "local")})
	require.NoError(t, err)
	require.Len(t, got, 1, "only the package whose signature was checked: the unsigned optional one and the Never one were not")
	assert.Equal(t, "good", got[0].Name)
	require.NotEmpty(t, events)
	assert.Equal(t, Event{Kind: EventCheck, Message: "checking package signatures", Current: 2, Count: 2, Percent: 100}, events[len(events)-1])

	for name, pkgs := range map[string][]alpm.Package{
		"a repository without a level": {pkg("good", "elsewhere")},
		"a package not in the cache":   {pkg("absent", "core")},
		"a required signature missing": {pkg("stranger", "core")},
	} {
		_, err := s.checkSignatures(pkgs)
		assert.ErrorIs(t, err, errSigSlowPath, name)
	}
	none := &session{}
	got, err = none.checkSignatures([]alpm.Package{pkg("good", "core")})
	assert.NoError(t, err)
	assert.Empty(t, got, "a libalpm session checks nothing here")
}

func TestRecordSignatures(t *testing.T) {
	desc := "%NAME%\nless\n\n%VALIDATION%\nsha256\n\n%DEPENDS%\nglibc\n\n"
	out, ok := setValidation(desc, []string{"sha256", "pgp"})
	assert.True(t, ok)
	assert.Equal(t, "%NAME%\nless\n\n%VALIDATION%\nsha256\npgp\n\n%DEPENDS%\nglibc\n\n", out)
	out, ok = setValidation(desc, []string{"pgp"})
	assert.True(t, ok)
	assert.Equal(t, "%NAME%\nless\n\n%VALIDATION%\npgp\n\n%DEPENDS%\nglibc\n\n", out)
	for _, d := range []string{"%NAME%\nless\n\n", "%VALIDATION%\nsha256\npgp\n\n", "%VALIDATION%\nnone\n\n", "%VALIDATION%\nsha256"} {
		out, ok := setValidation(d, []string{"pgp"})
		assert.False(t, ok, d)
		assert.Equal(t, d, out)
	}

	dbpath := t.TempDir()
	for _, name := range []string{"less-668-1", "bash-5.3-1"} {
		require.NoError(t, os.MkdirAll(filepath.Join(dbpath, "local", name), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dbpath, "local", name, "desc"), []byte(desc), 0o644))
	}
	require.NoError(t, recordSignatures(dbpath, []alpm.Package{{Name: "less", Version: "668-1"}, {Name: "bash", Version: "5.3-1", Base64Sig: "iQ=="}}))
	assert.Contains(t, string(mustRead(t, filepath.Join(dbpath, "local/less-668-1/desc"))), "%VALIDATION%\nsha256\npgp\n\n")
	assert.Contains(t, string(mustRead(t, filepath.Join(dbpath, "local/bash-5.3-1/desc"))), "%VALIDATION%\npgp\n\n")
	assert.Error(t, recordSignatures(dbpath, []alpm.Package{{Name: "zsh", Version: "1-1"}}), "a package not installed")
}

package release

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/paczfs/paczfs/bootenv"
	"github.com/paczfs/paczfs/hooks/hookstest"
)

func key(t *testing.T) (secret, public []byte) {
	s, p, err := GenerateKey("paczfs test releases", "releases@example.invalid")
	require.NoError(t, err)
	assert.Contains(t, string(s), "BEGIN PGP PRIVATE KEY BLOCK")
	assert.Contains(t, string(p), "BEGIN PGP PUBLIC KEY BLOCK")
	return s, p
}

func manifest(stream []byte) *Manifest {
	sum := sha256.Sum256(stream)
	return &Manifest{
		Format: FormatVersion, Name: "paczfs-test", Version: "2", Previous: "1",
		Created:  time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC),
		Snapshot: "v2", GUID: "1234567890123", BaseGUID: "999", Kernel: "6.12.1",
		Packages: []Package{{"linux", "6.12.1"}, {"tmux", "3.5"}},
		Changes:  Diff([]Package{{"linux", "6.12.0"}}, []Package{{"linux", "6.12.1"}, {"tmux", "3.5"}}),
		Streams:  []Stream{{Kind: Incremental, File: "v1-v2.zstream", Size: int64(len(stream)), SHA256: hex.EncodeToString(sum[:])}},
	}
}

func TestSignVerifyAndTamper(t *testing.T) {
	secret, public := key(t)
	_, other := key(t)
	data, err := manifest([]byte("stream")).Marshal()
	require.NoError(t, err)
	sig, err := Sign(data, secret)
	require.NoError(t, err)
	assert.Contains(t, string(sig), "BEGIN PGP SIGNATURE")
	fpr, err := Verify(data, sig, public)
	require.NoError(t, err)
	assert.Len(t, fpr, 40)

	flipped := append([]byte(nil), data...)
	flipped[len(flipped)/2] ^= 1
	_, err = Verify(flipped, sig, public)
	assert.ErrorIs(t, err, ErrSignature, "one flipped byte")
	_, err = Verify(data, sig, other)
	assert.ErrorIs(t, err, ErrSignature, "signed by a key the device does not trust")
	_, err = Verify(data, sig)
	assert.ErrorIs(t, err, ErrSignature, "no trusted keys")
	_, err = Verify(data, sig, secret)
	assert.ErrorContains(t, err, "secret key", "a secret key is not a trusted key")
}

// A person checks a release with gpg: the format is pacman's.
func TestGPGVerifiesTheSignature(t *testing.T) {
	gpg, err := exec.LookPath("gpg")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("gpg is not installed (make deps installs gnupg)")
		}
		t.Skip("gpg is not installed")
	}
	secret, public := key(t)
	dir := t.TempDir()
	data, err := manifest([]byte("stream")).Marshal()
	require.NoError(t, err)
	sig, err := Sign(data, secret)
	require.NoError(t, err)
	for name, content := range map[string][]byte{"key.asc": public, ManifestFile: data, SignatureFile: sig} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), content, 0o600))
	}
	home := filepath.Join(dir, "gnupg")
	require.NoError(t, os.Mkdir(home, 0o700))
	gpgRun := func(args ...string) (string, error) {
		cmd := exec.Command(gpg, append([]string{"--homedir", home, "--batch"}, args...)...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	t.Cleanup(func() { exec.Command("gpgconf", "--homedir", home, "--kill", "all").Run() })
	out, err := gpgRun("--import", filepath.Join(dir, "key.asc"))
	require.NoError(t, err, out)
	out, err = gpgRun("--verify", filepath.Join(dir, SignatureFile), filepath.Join(dir, ManifestFile))
	require.NoError(t, err, out)
	assert.Contains(t, out, "Good signature")
	require.NoError(t, os.WriteFile(filepath.Join(dir, ManifestFile), append(data, ' '), 0o600))
	out, err = gpgRun("--verify", filepath.Join(dir, SignatureFile), filepath.Join(dir, ManifestFile))
	assert.Error(t, err, "a changed manifest: %s", out)
	assert.Contains(t, out, "BAD signature")
}

func TestManifestValidateAndDiff(t *testing.T) {
	m := manifest([]byte("x"))
	data, err := m.Marshal()
	require.NoError(t, err)
	back, err := ParseManifest(data)
	require.NoError(t, err)
	assert.Equal(t, m, back)
	assert.Equal(t, Changes{Added: []Package{{"tmux", "3.5"}}, Upgraded: []Upgrade{{"linux", "6.12.0", "6.12.1"}}}, m.Changes)
	for name, edit := range map[string]func(*Manifest){
		"format":      func(m *Manifest) { m.Format = 9 },
		"version":     func(m *Manifest) { m.Version = "" },
		"guid":        func(m *Manifest) { m.GUID = "abc" },
		"no base":     func(m *Manifest) { m.BaseGUID = "" },
		"file path":   func(m *Manifest) { m.Streams[0].File = "../etc/shadow" },
		"no streams":  func(m *Manifest) { m.Streams = nil },
		"no checksum": func(m *Manifest) { m.Streams[0].SHA256 = "" },
		"huge size":   func(m *Manifest) { m.Streams[0].Size = 1<<63 - 1 },
		"version ..":  func(m *Manifest) { m.Version = ".." },
		"version tab": func(m *Manifest) { m.Version = "2\t" },
	} {
		m := manifest([]byte("x"))
		edit(m)
		assert.ErrorIs(t, m.Validate(), ErrManifest, name)
	}
	_, err = ParseManifest([]byte(`{"format":1,"unknown":true}`))
	assert.ErrorIs(t, err, ErrManifest, "an empty manifest")

	// A field a later paczfs adds is skipped by this one; a newer format
	// is refused.
	m = manifest([]byte("x"))
	data, err = m.Marshal()
	require.NoError(t, err)
	var raw map[string]any
	require.NoError(t, json.Unmarshal(data, &raw))
	raw["added_later"] = map[string]any{"x": 1}
	later, err := json.Marshal(raw)
	require.NoError(t, err)
	got, err := ParseManifest(later)
	require.NoError(t, err)
	assert.Equal(t, m.Version, got.Version)
	raw["format"] = FormatVersion + 1
	newer, err := json.Marshal(raw)
	require.NoError(t, err)
	_, err = ParseManifest(newer)
	assert.ErrorIs(t, err, ErrManifest)
	assert.ErrorContains(t, err, "format 2")
}

// surveyCmd is the one zfs list Apply reads the pool with.
const surveyCmd = "zfs list -H -p -o name,type,guid,org.paczfs:version,available,org.paczfs:state -t filesystem,snapshot -r zroot/system"

// pool is surveyCmd's answer: v1 with version 1 and its snapshot (guid
// 999), and avail bytes free.
func pool(avail int64) string {
	return "zroot/system\tfilesystem\t11\t-\t" + strconv.FormatInt(avail, 10) + "\t-\n" +
		"zroot/system/v1\tfilesystem\t12\t1\t" + strconv.FormatInt(avail, 10) + "\tgood\n" +
		"zroot/system/v1@v1\tsnapshot\t999\t1\t-\t-\n"
}

// device is a booted system with version 1 and the base snapshot (guid
// 999), as far as the commands Apply runs before receive see it.
func device(t *testing.T) (*bootenv.Manager, *hookstest.FakeRunner) {
	f := &hookstest.FakeRunner{}
	f.On(surveyCmd, hookstest.Response{Stdout: pool(10000000000)})
	esp := t.TempDir()
	m, err := bootenv.New(context.Background(), bootenv.WithRunner(f), bootenv.WithBooted("zroot/system/v1", ""), bootenv.WithESP(esp), bootenv.WithEFIVars(""))
	require.NoError(t, err)
	return m, f
}

// release writes a signed release directory.
func release(t *testing.T, secret []byte, stream []byte, edit func(*Manifest)) string {
	dir := t.TempDir()
	m := manifest(stream)
	if edit != nil {
		edit(m)
	}
	data, err := m.Marshal()
	require.NoError(t, err)
	sig, err := Sign(data, secret)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, ManifestFile), data, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, SignatureFile), sig, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, m.Streams[0].File), stream, 0o644))
	return dir
}

func received(f *hookstest.FakeRunner) bool {
	for _, c := range f.Calls() {
		if strings.HasPrefix(c, "zfs receive") {
			return true
		}
	}
	return false
}

// Every refusal comes before zfs receive runs, and creates nothing.
func TestApplyRefusesBeforeReceive(t *testing.T) {
	secret, public := key(t)
	_, other := key(t)
	stream := []byte("a send stream")
	for name, c := range map[string]struct {
		dir     func() string
		trusted []byte
		want    error
	}{
		"one flipped byte in the stream": {func() string {
			d := release(t, secret, stream, nil)
			require.NoError(t, os.WriteFile(filepath.Join(d, "v1-v2.zstream"), []byte("a send strean"), 0o644))
			return d
		}, public, ErrStream},
		"a manifest signed by an unknown key": {func() string { return release(t, secret, stream, nil) }, other, ErrSignature},
		"a changed manifest": {func() string {
			d := release(t, secret, stream, nil)
			data, _ := os.ReadFile(filepath.Join(d, ManifestFile))
			require.NoError(t, os.WriteFile(filepath.Join(d, ManifestFile), []byte(strings.Replace(string(data), `"version": "2"`, `"version": "9"`, 1)), 0o644))
			return d
		}, public, ErrSignature},
		"a valid manifest for a different base": {func() string {
			return release(t, secret, stream, func(m *Manifest) { m.BaseGUID = "777" })
		}, public, ErrNoBase},
		"an older version replayed": {func() string {
			return release(t, secret, stream, func(m *Manifest) { m.Version = "1" })
		}, public, ErrDowngrade},
		"a full pool": {func() string {
			return release(t, secret, make([]byte, 100), nil)
		}, public, nil},
	} {
		t.Run(name, func(t *testing.T) {
			m, f := device(t)
			if name == "a full pool" {
				f.On(surveyCmd, hookstest.Response{Stdout: pool(1000)})
				c.want = ErrSpace
			}
			_, err := Apply(context.Background(), m, ApplyOptions{Dir: c.dir(), Trusted: [][]byte{c.trusted}, Runner: f})
			assert.ErrorIs(t, err, c.want)
			assert.False(t, received(f), "zfs receive must not run: %v", f.Calls())
		})
	}
}

// On an image (not a running system) the default environment's version
// decides what is a downgrade.
func TestApplyOnAnImageComparesWithTheDefault(t *testing.T) {
	secret, public := key(t)
	f := &hookstest.FakeRunner{}
	f.On(surveyCmd, hookstest.Response{Stdout: pool(10000000000)})
	f.On("zpool get -H -p -o property,value,source bootfs zroot", hookstest.Response{Stdout: "bootfs\tzroot/system/v1\tlocal\n"})
	m, err := bootenv.New(context.Background(), bootenv.WithRunner(f), bootenv.WithImage(), bootenv.WithPool("zroot"), bootenv.WithESP(t.TempDir()))
	require.NoError(t, err)
	dir := release(t, secret, []byte("a send stream"), func(m *Manifest) { m.Version = "1" })
	_, err = Apply(context.Background(), m, ApplyOptions{Dir: dir, Trusted: [][]byte{public}, Runner: f})
	assert.ErrorIs(t, err, ErrDowngrade)
	assert.False(t, received(f))
}

// A good release: received as a clone of its base, unmounted, new, with
// its version; then its boot files and the trial.
func TestApplyReceivesIncrementalAsACloneOfItsBase(t *testing.T) {
	secret, public := key(t)
	m, f := device(t)
	dir := release(t, secret, []byte("a send stream"), nil)
	_, err := Apply(context.Background(), m, ApplyOptions{Dir: dir, Trusted: [][]byte{public}, Runner: f})
	// Installing the boot files mounts the received root, which the fake
	// runner does not provide: the receive is what this test checks.
	require.Error(t, err)
	var recv string
	for i, c := range f.Calls() {
		if strings.HasPrefix(c, "zfs receive") {
			recv = c
			assert.Equal(t, "a send stream", f.Stdin()[i], "the verified file is what zfs reads")
		}
	}
	assert.Equal(t, "zfs receive -u -o canmount=noauto -o mountpoint=/ -o org.paczfs:state=new -o org.paczfs:version=2 -o origin=zroot/system/v1@v1 zroot/system/release-2", recv)
}

// Before zfs receive, apply on a booted device runs one zfs command: the
// survey that gives the snapshots by guid, the booted version, an
// existing environment of the name and the space (each command is a
// process and a pool walk, the bulk of apply's cost beside the receive).
func TestApplyReadsThePoolOnceBeforeReceiving(t *testing.T) {
	secret, public := key(t)
	m, f := device(t)
	dir := release(t, secret, []byte("a send stream"), nil)
	_, _ = Apply(context.Background(), m, ApplyOptions{Dir: dir, Trusted: [][]byte{public}, Runner: f})
	var before []string
	for _, c := range f.Calls() {
		if strings.HasPrefix(c, "zfs receive") {
			break
		}
		before = append(before, c)
	}
	assert.Equal(t, []string{surveyCmd}, before)
}

// An environment of the release's name that is not the release is
// refused, not received over.
func TestApplyRefusesAnEnvironmentOfTheSameName(t *testing.T) {
	secret, public := key(t)
	f := &hookstest.FakeRunner{}
	f.On(surveyCmd, hookstest.Response{Stdout: pool(10000000000) + "zroot/system/release-2\tfilesystem\t13\t-\t10000000000\tnew\n"})
	m, err := bootenv.New(context.Background(), bootenv.WithRunner(f), bootenv.WithBooted("zroot/system/v1", ""), bootenv.WithESP(t.TempDir()), bootenv.WithEFIVars(""))
	require.NoError(t, err)
	_, err = Apply(context.Background(), m, ApplyOptions{Dir: release(t, secret, []byte("a send stream"), nil), Trusted: [][]byte{public}, Runner: f})
	assert.ErrorIs(t, err, bootenv.ErrExists)
	assert.False(t, received(f))
}

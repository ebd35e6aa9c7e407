package pacman_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/paczfs/paczfs/hooks/hookstest"
	"github.com/paczfs/paczfs/pacman"
)

// programs reduces recorded command lines to their program and last
// argument, which is what the order test is about.
func programs(calls []string) []string {
	var out []string
	for _, c := range calls {
		f := strings.Fields(c)
		out = append(out, f[0]+" "+f[len(f)-1])
	}
	return out
}

func bareKeyringInstaller(t *testing.T, r *hookstest.FakeRunner) *pacman.Installer {
	c := pacman.ArchConfig(false)
	c.Keyrings, c.TrustedKeys = nil, nil
	in, err := pacman.New(c, pacman.WithRunner(r))
	require.NoError(t, err)
	return in
}

// The master key is made as ed25519 before pacman-key --init, which then
// keeps it (pacman-key's own RSA 4096 key costs up to a minute under
// emulation); the lab tests check the keyring works.
func TestInitKeyringMakesAnEd25519MasterKeyFirst(t *testing.T) {
	r := &hookstest.FakeRunner{}
	in := bareKeyringInstaller(t, r)
	require.NoError(t, in.InitKeyring(t.Context(), t.TempDir()))
	assert.Equal(t, []string{"gpg --list-secret-keys", "gpg --gen-key", "pacman-key --init", "gpgconf all"}, programs(r.Calls()))
	assert.Contains(t, r.Stdin()[1], "Key-Curve: ed25519\n")
	assert.Contains(t, r.Stdin()[1], "%no-protection\n")
}

func TestInitKeyringKeepsAnExistingMasterKey(t *testing.T) {
	r := (&hookstest.FakeRunner{}).On("gpg ", hookstest.Response{Stdout: "sec:u:255:22:0123456789ABCDEF:1700000000:::u:::scSC:::+:::ed25519:::0:\n"})
	in := bareKeyringInstaller(t, r)
	require.NoError(t, in.InitKeyring(t.Context(), t.TempDir()))
	assert.Equal(t, []string{"gpg --list-secret-keys", "pacman-key --init", "gpgconf all"}, programs(r.Calls()))
}

func TestInitKeyringMasterKeyFailureStopsTheAgent(t *testing.T) {
	r := (&hookstest.FakeRunner{}).On("gpg --homedir", hookstest.Response{ExitCode: 2, Stderr: "gpg: agent_genkey failed"})
	in := bareKeyringInstaller(t, r)
	err := in.InitKeyring(t.Context(), t.TempDir())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "master key")
	assert.Equal(t, "gpgconf all", programs(r.Calls())[len(r.Calls())-1], "any agent gpg started is stopped")
}

// PopulateKeyring imports the keyrings from the target's own keyring
// package files, as the package's install script does when the keyring
// exists, and does nothing without a keyring or without those files.
func TestPopulateKeyringFromTheTargetsFiles(t *testing.T) {
	c := pacman.ArchConfig(false)
	c.TrustedKeys = nil
	r := &hookstest.FakeRunner{}
	in, err := pacman.New(c, pacman.WithRunner(r))
	require.NoError(t, err)
	root := t.TempDir()
	require.NoError(t, in.PopulateKeyring(t.Context(), root))
	assert.Empty(t, r.Calls(), "no keyring: nothing to populate")

	gpg := pacman.GPGDir(root)
	require.NoError(t, os.MkdirAll(gpg, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(gpg, "pubring.kbx"), nil, 0o644))
	require.NoError(t, in.PopulateKeyring(t.Context(), root))
	assert.Empty(t, r.Calls(), "no keyring package files in the target: nothing to populate")

	files := filepath.Join(root, "usr/share/pacman/keyrings")
	require.NoError(t, os.MkdirAll(files, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(files, "archlinux.gpg"), nil, 0o644))
	require.NoError(t, in.PopulateKeyring(t.Context(), root))
	calls := r.Calls()
	require.Len(t, calls, 2)
	assert.Contains(t, calls[0], "--populate-from "+files+" --populate archlinux")
	assert.True(t, strings.HasPrefix(calls[1], "gpgconf "), "its agent is stopped: %v", calls)
}

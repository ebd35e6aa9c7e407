package pacman_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/paczfs/paczfs/pacman"
)

func TestArchConfigIsValidAndHTTPS(t *testing.T) {
	c := pacman.ArchConfig(true)
	require.NoError(t, c.Validate())
	for _, r := range c.Repos {
		for _, s := range r.Servers {
			assert.True(t, strings.HasPrefix(s, "https://"), s)
		}
	}
	assert.Equal(t, "Required DatabaseOptional", c.SigLevel)
	assert.Equal(t, []string{"core", "extra", "archzfs"}, []string{c.Repos[0].Name, c.Repos[1].Name, c.Repos[2].Name})
	assert.Equal(t, pacman.ArchZFSKey, c.TrustedKeys[0].ID)
}

func TestRenderConfHasNoBuildHostPaths(t *testing.T) {
	c := pacman.ArchConfig(true)
	c.CacheDirs = []string{"/srv/build-cache/pkg"}
	c.KeyringDir = "/srv/keys"
	conf := string(c.RenderConf("alpm"))
	assert.NotContains(t, conf, "/srv/")
	assert.NotContains(t, conf, "RootDir")
	assert.NotContains(t, conf, "DBPath")
	assert.Contains(t, conf, "[core]\nInclude = /etc/pacman.d/mirrorlist\n")
	assert.Contains(t, conf, "[archzfs]\nServer = "+pacman.ArchZFSServer+"\n")
	assert.Contains(t, conf, "DownloadUser = alpm\n")
	assert.Contains(t, conf, "Architecture = x86_64\n")
	assert.NotContains(t, string(c.RenderConf("")), "DownloadUser")

	ml := c.RenderMirrorlists()
	require.Contains(t, ml, "mirrorlist")
	assert.Equal(t, "# Mirrors written by paczfs, tried in order.\nServer = "+pacman.ArchMirror+"\n", string(ml["mirrorlist"]))
}

func TestValidateNamesEveryField(t *testing.T) {
	c := pacman.Config{
		Repos: []pacman.Repo{
			{Name: "core", Servers: []string{"ftp://x/y"}},
			{Name: "core", SigLevel: "Sometimes"},
			{Name: "bad name", Servers: []string{"https://m/$repo"}, Mirrorlist: "../etc/x", RefreshRetries: -1},
		},
		SigLevel:          "Required Maybe",
		ParallelDownloads: 0,
		TrustedKeys:       []pacman.TrustedKey{{}},
	}
	err := c.Validate()
	require.Error(t, err)
	for _, want := range []string{
		"pacman.architecture: empty",
		`pacman.repos[0].servers[0]: "ftp://x/y" is not an http(s)`,
		`pacman.repos[1].name: "core" is listed twice`,
		`pacman.repos[1].servers: repository "core" has no server`,
		`pacman.repos[1].sig_level: unknown word "Sometimes"`,
		`pacman.repos[2].name: "bad name" is not a valid`,
		`pacman.repos[2].mirrorlist`,
		`pacman.repos[2].refresh_retries: -1: want 0 to 30`,
		`pacman.sig_level: unknown word "Maybe"`,
		"pacman.parallel_downloads: 0",
		"pacman.trusted_keys[0]: give exactly one",
	} {
		assert.Contains(t, err.Error(), want)
	}
}

func TestExpandServer(t *testing.T) {
	assert.Equal(t, "https://m/core/os/x86_64", pacman.ExpandServer("https://m/$repo/os/$arch", "core", "x86_64"))
}

func TestParseFingerprints(t *testing.T) {
	out := "pub:-:4096:1:ABEC0A1208037BE9:1588186624:::-:::scSC::::::23::0:\n" +
		"fpr:::::::::3A9917BF0DED5C13F69AC68FABEC0A1208037BE9:\n" +
		"uid:-::::1588186624::hash::ArchZFS Bot <buildbot@archzfs.com>::::::::::0:\n" +
		"sub:-:4096:1:1111111111111111:1588186624::::::e::::::23:\n" +
		"fpr:::::::::00000000000000000000000000001111111111111111:\n" +
		"pub:-:255:22:2222222222222222:1700000000:::-:::scSC::::::ed25519:::0:\n" +
		"fpr:::::::::AAAABBBBCCCCDDDDEEEEFFFF2222222222222222:\n"
	assert.Equal(t, []string{"3A9917BF0DED5C13F69AC68FABEC0A1208037BE9", "AAAABBBBCCCCDDDDEEEEFFFF2222222222222222"}, pacman.ParseFingerprints(out))
}

func TestDownloadUserFor(t *testing.T) {
	root := t.TempDir()
	c := pacman.ArchConfig(false)
	user, note := c.DownloadUserFor(root)
	assert.Empty(t, user)
	assert.Contains(t, note, `no user "alpm"`)
	require.NoError(t, os.MkdirAll(filepath.Join(root, "etc"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(root, "etc/passwd"), []byte("root:x:0:0::/root:/bin/bash\nalpm:x:946:946:Arch Linux Package Management:/:/usr/bin/nologin\n"), 0o644))
	user, note = c.DownloadUserFor(root)
	assert.Equal(t, "alpm", user)
	assert.Empty(t, note)
}

package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/paczfs/paczfs/disk"
	"github.com/paczfs/paczfs/image"
	"github.com/paczfs/paczfs/pacman"
)

var testNow = time.Unix(1700000000, 0)

// envMap is a fake environment.
func envMap(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

// load parses text as a -c file named test.conf and loads it with env.
func load(t *testing.T, text string, env map[string]string) *settings {
	t.Helper()
	s, err := loadErr(text, env)
	require.NoError(t, err)
	return s
}

func loadErr(text string, env map[string]string) (*settings, error) {
	l := loader{Lookup: envMap(env), Now: testNow}
	if text != "" {
		a, err := parseConfig("test.conf", []byte(text))
		if err != nil {
			return nil, err
		}
		l.File = a
	}
	return l.load()
}

func config(t *testing.T, s *settings) image.Config {
	t.Helper()
	c, err := s.config(os.ReadFile)
	require.NoError(t, err)
	return c
}

func TestParseConfigQuotesListsAndComments(t *testing.T) {
	text := `# a comment
CONFIG_VERSION='v0.0.1'   # trailing comment

HOSTNAME=bare
TIMEZONE="Europe/Berlin"
IMAGE_FILE='./my image.img'
VDI_FILE="./say \"hi\" \$x \\ 'q'.vdi"
QCOW_FILE='it'\''s'"ok"
KEYMAP=
LOCALES=( 'en_US.UTF-8 UTF-8' "de_DE.UTF-8 UTF-8" )
WORKSTATION_PKGS=(
    vim   # the editor
    'tmux'
)
BASE_EXCLUDE_PKGS=()
`
	a, err := parseConfig("test.conf", []byte(text))
	require.NoError(t, err)
	got := map[string]value{}
	for _, x := range a {
		got[x.Name] = x.Value
	}
	assert.Equal(t, "v0.0.1", got["CONFIG_VERSION"].Text)
	assert.Equal(t, "test.conf:2", got["CONFIG_VERSION"].From)
	assert.Equal(t, "bare", got["HOSTNAME"].Text)
	assert.Equal(t, "Europe/Berlin", got["TIMEZONE"].Text)
	assert.Equal(t, "./my image.img", got["IMAGE_FILE"].Text)
	assert.Equal(t, `./say "hi" $x \ 'q'.vdi`, got["VDI_FILE"].Text)
	assert.Equal(t, "it'sok", got["QCOW_FILE"].Text)
	assert.Equal(t, value{Text: "", From: "test.conf:9"}, got["KEYMAP"])
	assert.Equal(t, []string{"en_US.UTF-8 UTF-8", "de_DE.UTF-8 UTF-8"}, got["LOCALES"].Items)
	assert.True(t, got["LOCALES"].List)
	assert.Equal(t, []string{"vim", "tmux"}, got["WORKSTATION_PKGS"].Items)
	assert.Equal(t, "test.conf:11", got["WORKSTATION_PKGS"].From)
	assert.True(t, got["BASE_EXCLUDE_PKGS"].List)
	assert.Empty(t, got["BASE_EXCLUDE_PKGS"].Items)
}

func TestParseConfigErrorsNameFileAndLine(t *testing.T) {
	for _, tc := range []struct {
		name, text, want string
	}{
		{"command substitution", "\nSUFFIX=$( date +%s )\n", "test.conf:2: command substitution"},
		{"in double quotes", "HOSTNAME=\"$(hostname)\"\n", "test.conf:1: command substitution"},
		{"in single quotes", "\n\nSUFFIX='$( date +%s )'\n", "test.conf:3: SUFFIX: command substitution"},
		{"hint for the original SUFFIX", "SUFFIX='$( date +%s )'\n", "${EPOCHSECONDS}"},
		{"backticks", "HOSTNAME=`hostname`\n", "test.conf:1: command substitution"},
		{"backticks in a list", "BASE_PKGS=( base\n  \"`x`\" )\n", "test.conf:2: command substitution"},
		{"unknown name", "# c\nPOOLNAME='x'\n", "test.conf:2: unknown variable POOLNAME"},
		{"lower case", "hostname=x\n", "unknown variable hostname"},
		{"spaces around =", "HOSTNAME = 'x'\n", "test.conf:1: expected NAME='value'"},
		{"unquoted space", "IMAGE_FILE=./my image.img\n", `test.conf:1: unexpected "image.img" after the value of IMAGE_FILE`},
		{"unterminated quote", "\nHOSTNAME='x\n", "test.conf:2: unterminated ' quote"},
		{"unclosed list", "BASE_PKGS=( a b\n", "test.conf:1: the list BASE_PKGS=( is not closed"},
		{"shell function", "prepare-cache () { :; }\n", "test.conf:1: shell functions are not supported"},
		{"shell syntax", "HOSTNAME=a;b\n", `test.conf:1: unquoted ';'`},
		{"export", "export HOSTNAME=x\n", "test.conf:1: expected NAME='value'"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseConfig("test.conf", []byte(tc.text))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestParseConfigReportsEveryBadLine(t *testing.T) {
	_, err := parseConfig("x.conf", []byte("FOO=1\nHOSTNAME=ok\nBAR=2\n"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "x.conf:1: unknown variable FOO")
	assert.Contains(t, err.Error(), "x.conf:3: unknown variable BAR")
}

func TestPrecedenceFileThenEnvironmentThenDefaults(t *testing.T) {
	env := map[string]string{"VDI_FILE": "env.vdi", "HOSTNAME": "fromenv", "POOL_NAME": "envpool"}
	s := load(t, "VDI_FILE='file.vdi'\nHOSTNAME='fromfile'\n", env)
	assert.Equal(t, "file.vdi", s.str("VDI_FILE"))
	assert.Equal(t, "fromfile", s.str("HOSTNAME"))
	assert.Equal(t, "envpool", s.str("POOL_NAME"))
	assert.Equal(t, "UTC", s.str("TIMEZONE"))
	assert.Equal(t, "test.conf:1", s.from("VDI_FILE"))
	assert.Equal(t, "environment", s.from("POOL_NAME"))
	assert.Equal(t, "default", s.from("TIMEZONE"))

	c := config(t, s)
	assert.Equal(t, []image.Output{{Format: image.VDI, Path: "file.vdi"}}, c.Outputs)
	assert.Equal(t, "fromfile", c.System.Hostname)
	assert.Equal(t, "envpool", c.PoolName)
}

func TestProfileFlagBeatsFileAndEnvironment(t *testing.T) {
	_, err := loadErr("PROFILE='nope'\n", nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `test.conf:1: PROFILE: unknown profile "nope"`)

	l := loader{Lookup: envMap(map[string]string{"PROFILE": "nope"}), Now: testNow, Profile: "arch"}
	s, err := l.load()
	require.NoError(t, err)
	assert.Equal(t, "arch", s.Profile)
	assert.Equal(t, "--profile", s.from("PROFILE"))

	_, err = loadErr("", map[string]string{"PROFILE": "lab"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), `environment variable PROFILE: unknown profile "lab"`)
}

// A profile can be a file: an image.Config as JSON (what a built image
// records in /etc/paczfs/config.json, or a profile of one's own such as
// the lab's), with the variables applied on top as for a named profile.
func TestProfileFromAJSONConfig(t *testing.T) {
	base := image.ArchProfile()
	base.Profile = "mine"
	base.Size = 4 * disk.GiB
	base.SwapSize = 0
	base.Pacman.Repos = []pacman.Repo{{Name: "local", Servers: []string{"file:///srv/repo"}}}
	base.Packages.Bootable = []string{"linux-image-6.12.9-amd64"}
	data, err := json.Marshal(base)
	require.NoError(t, err)
	file := filepath.Join(t.TempDir(), "mine.json")
	require.NoError(t, os.WriteFile(file, data, 0o644))
	s := load(t, "PROFILE='"+file+"'\nHOSTNAME=box\n", nil)
	c := config(t, s)
	assert.Equal(t, "mine", c.Profile)
	require.Len(t, c.Pacman.Repos, 1)
	assert.Equal(t, []string{"file:///srv/repo"}, c.Pacman.Repos[0].Servers)
	assert.Contains(t, c.Packages.Bootable, "linux-image-6.12.9-amd64")
	assert.Equal(t, "box", c.System.Hostname)
	assert.Equal(t, "4G", s.str("IMAGE_SIZE"))
	assert.Equal(t, "0", s.str("SWAP_SIZE"))

	require.NoError(t, os.WriteFile(file, []byte(`{"no_such_field": 1}`), 0o644))
	_, err = loadErr("PROFILE='"+file+"'\n", nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "not an image configuration")
	_, err = loadErr("PROFILE=/nonexistent/p.json\n", nil)
	assert.ErrorContains(t, err, "profile file")
}

func TestSuffixAndVariableExpansion(t *testing.T) {
	s := load(t, `POOL_NAME='tank'
TIMEZONE='${POOL_NAME}'
`, map[string]string{"QCOW2_FILE": "/out/${SUFFIX}/${BLOCK_DEV}img.qcow2", "HOSTNAME": "h${SUFFIX}"})
	assert.Equal(t, "1700000000", s.str("SUFFIX"))
	assert.Equal(t, "./paczfs-1700000000.img", s.str("IMAGE_FILE"))
	assert.Equal(t, "/out/1700000000/img.qcow2", s.str("QCOW2_FILE"))
	assert.Equal(t, "h1700000000", s.str("HOSTNAME"))
	assert.Equal(t, "tank", s.str("TIMEZONE"))
	// the template is kept for -C
	assert.Equal(t, "./paczfs-${SUFFIX}.img", s.raw["IMAGE_FILE"].Text)
	assert.Equal(t, "${EPOCHSECONDS}", s.raw["SUFFIX"].Text)

	// VDI_FILE comes before POOL_NAME: its value cannot use it.
	require.Contains(t, errOf(loadErr("POOL_NAME='tank'\nVDI_FILE='./${POOL_NAME}.vdi'\n", nil)),
		"test.conf:2: VDI_FILE: ${POOL_NAME}: POOL_NAME is set after this variable")

	s = load(t, "SUFFIX='v1'\nHOSTNAME='${POOL_NAME}'\nBASE_PKGS=( 'base-${SUFFIX}' )\n", nil)
	assert.Equal(t, "zroot", s.str("HOSTNAME"))
	assert.Equal(t, []string{"base-v1"}, s.list("BASE_PKGS"))

	for text, want := range map[string]string{
		"HOSTNAME='${HOME}'\n":         "${HOME}: not a paczfs variable",
		"HOSTNAME='$SUFFIX'\n":         "write ${SUFFIX} with braces",
		"HOSTNAME='${SUFFIX'\n":        "${ is not closed",
		"HOSTNAME='${SUFFIX:-x}'\n":    "only ${NAME} is understood",
		"HOSTNAME='${TRUSTED_KEYS}'\n": "TRUSTED_KEYS is a list",
		"HOSTNAME='${HOOKS_DIR}'\n":    "HOOKS_DIR is set after",
	} {
		assert.Contains(t, errOf(loadErr(text, nil)), want, text)
	}
	// A lone $ stays, and ROOT_PASSWORD_HASH is never expanded.
	s = load(t, "HOSTID='$'\nROOT_PASSWORD_HASH='$6$salt$${SUFFIX}'\n", nil)
	assert.Equal(t, "$", s.str("HOSTID"))
	assert.Equal(t, "$6$salt$${SUFFIX}", s.str("ROOT_PASSWORD_HASH"))
}

func errOf(_ *settings, err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestEnvironmentRejectsCommandSubstitution(t *testing.T) {
	_, err := loadErr("", map[string]string{"SUFFIX": "$(date +%s)"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "environment variable SUFFIX: command substitution")
	_, err = loadErr("", map[string]string{"BASE_PKGS": "base `id`"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "environment variable BASE_PKGS: command substitution")
}

func TestImageFileDefaultDependsOnBlockDev(t *testing.T) {
	s := load(t, "", nil)
	c := config(t, s)
	assert.Equal(t, "./paczfs-1700000000.img", c.ImageFile)
	assert.Empty(t, c.BlockDevice)
	assert.Equal(t, 20*disk.GiB, c.Size)
	assert.Empty(t, c.Outputs)

	// With BLOCK_DEV, no image file and no size by default...
	s = load(t, "", map[string]string{"BLOCK_DEV": "/dev/sdx"})
	c = config(t, s)
	assert.Equal(t, "/dev/sdx", c.BlockDevice)
	assert.Empty(t, c.ImageFile)
	assert.Empty(t, s.str("IMAGE_SIZE"))
	assert.Empty(t, c.Outputs)

	// ...and IMAGE_FILE means a raw copy, before the conversions.
	s = load(t, "BLOCK_DEV='/dev/sdx'\nIMAGE_FILE='./copy-${SUFFIX}.img'\nQCOW2_FILE='x.qcow2'\nVHDX_FILE='x.vhdx'\nVMDK_FILE='x.vmdk'\n", nil)
	c = config(t, s)
	assert.Empty(t, c.ImageFile)
	assert.Equal(t, []image.Output{
		{Format: image.Raw, Path: "./copy-1700000000.img"},
		{Format: image.QCOW2, Path: "x.qcow2"},
		{Format: image.VMDK, Path: "x.vmdk"},
		{Format: image.VHDX, Path: "x.vhdx"},
	}, c.Outputs)
}

func TestEmptyValuesAreEmptyNotDefaults(t *testing.T) {
	s := load(t, "WORKSTATION_PKGS=''\nKEYMAP=''\n", map[string]string{"SWAP_SIZE": "", "BASE_EXCLUDE_PKGS": ""})
	c := config(t, s)
	assert.Empty(t, c.Packages.Workstation)
	assert.NotContains(t, c.BootEnvironments, image.LayerWorkstation)
	assert.Contains(t, c.BootEnvironments, image.LayerBootable)
	assert.Empty(t, c.System.Keymap)
	assert.Equal(t, disk.Size(0), c.SwapSize)

	s = load(t, "WORKSTATION_PKGS=( )\n", nil)
	assert.Empty(t, config(t, s).Packages.Workstation)
}

func TestListsFromTheEnvironmentAndScalarsSplit(t *testing.T) {
	s := load(t, "BOOTABLE_PKGS='linux zfs-linux'\n", map[string]string{
		"WORKSTATION_PKGS": "  vim\ttmux\n htop ",
		"LOCALES":          `'en_US.UTF-8 UTF-8' "de_DE.UTF-8 UTF-8"`,
		"BASE_PKGS":        "( base less )",
	})
	c := config(t, s)
	assert.Equal(t, []string{"vim", "tmux", "htop"}, c.Packages.Workstation)
	assert.Equal(t, []string{"en_US.UTF-8 UTF-8", "de_DE.UTF-8 UTF-8"}, c.System.Locales)
	assert.Equal(t, []string{"base", "less"}, c.Packages.Base)
	assert.Equal(t, []string{"linux", "zfs-linux"}, c.Packages.Bootable)

	_, err := loadErr("HOSTNAME=( a b )\n", nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "test.conf:1: HOSTNAME: takes one value, not a list")
	_, err = loadErr("", map[string]string{"LOCALES": "'en_US.UTF-8 UTF-8"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "environment variable LOCALES: unterminated ' quote")
}

func TestVariablesMapToTheConfig(t *testing.T) {
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys")
	require.NoError(t, os.WriteFile(keys, []byte("# root's keys\nssh-ed25519 AAAAC3Nza a@b\n\n  ssh-rsa AAAAB3Nza c@d  \n"), 0o644))
	s := load(t, `IMAGE_FILE='/tmp/x.img'
IMAGE_SIZE='8G'
SWAP_SIZE='1G'
ESP_SIZE='300M'
CHROOT_PATH='/srv/build'
CACHE_PATH='/var/cache/pacman/pkg'
POOL_NAME='tank'
TRUSTED_KEYS=( 'ABCDEF0123456789' './archzfs.asc' 'my.gpg' /etc/k.pub )
BASE_EXCLUDE_PKGS=( linux )
TIMEZONE='Europe/Berlin'
ROOT_PASSWORD_HASH='$6$x$y'
AUTHORIZED_KEYS_FILE='`+keys+`'
HOSTID='0a1b2c3d'
`, nil)
	c := config(t, s)
	assert.Equal(t, "/tmp/x.img", c.ImageFile)
	assert.Equal(t, 8*disk.GiB, c.Size)
	assert.Equal(t, 1*disk.GiB, c.SwapSize)
	assert.Equal(t, 300*disk.MiB, c.ESPSize)
	assert.Equal(t, "/srv/build", c.WorkDir)
	assert.Equal(t, []string{"/var/cache/pacman/pkg"}, c.Pacman.CacheDirs)
	assert.Equal(t, "tank", c.PoolName)
	assert.Equal(t, []pacman.TrustedKey{{ID: "ABCDEF0123456789"}, {File: "./archzfs.asc"}, {File: "my.gpg"}, {File: "/etc/k.pub"}}, c.Pacman.TrustedKeys)
	assert.Equal(t, []string{"linux"}, c.Pacman.IgnorePkgs)
	assert.Equal(t, "Europe/Berlin", c.System.Timezone)
	assert.Equal(t, "$6$x$y", c.System.RootPasswordHash)
	assert.Equal(t, []string{"ssh-ed25519 AAAAC3Nza a@b", "ssh-rsa AAAAB3Nza c@d"}, c.System.AuthorizedKeys)
	assert.Equal(t, "0a1b2c3d", c.System.HostID)

	// A release derived from the previous one.
	c = config(t, load(t, `RELEASE_KEYS=( /etc/rel.asc )
RELEASE_DIR='/srv/rel/2'
RELEASE_VERSION='2'
RELEASE_SIGNING_KEY='/srv/rel.key'
RELEASE_FROM='/srv/rel/1'
RELEASE_NAME='lab'
`, nil))
	assert.Equal(t, []string{"/etc/rel.asc"}, c.Manage.ReleaseKeys)
	assert.Equal(t, image.Release{Dir: "/srv/rel/2", Version: "2", SigningKey: "/srv/rel.key", From: "/srv/rel/1", Name: "lab"}, c.Release)
	assert.Empty(t, c.BootEnvironments, "a derived build has the root environment only")
	assert.Empty(t, c.MinirootClone)

	// Encrypted data datasets, the passphrase asked for at boot.
	c = config(t, load(t, "ENCRYPT_DATASETS=( data/home data/srv )\nENCRYPT_KEY_FILE='/root/home.key'\nENCRYPT_PROMPT='yes'\nENCRYPT_ROOT='yes'\n", nil))
	assert.Equal(t, image.Encryption{Datasets: []string{"data/home", "data/srv"}, KeyFile: "/root/home.key", Prompt: true, Root: true}, c.Encryption)
	_, err := load(t, "ENCRYPT_PROMPT='maybe'\n", nil).config(os.ReadFile)
	assert.ErrorContains(t, err, `ENCRYPT_PROMPT: "maybe": use yes or no`)

	// Legacy BIOS boot: the profile's by default, off on request.
	c = config(t, load(t, "", nil))
	require.NotNil(t, c.Boot.BIOS)
	assert.Equal(t, "/usr/lib/syslinux/bios/gptmbr.bin", c.Boot.BIOS.MBR)
	c = config(t, load(t, "BIOS_BOOT='no'\n", nil))
	assert.Nil(t, c.Boot.BIOS)
	_, err = load(t, "BIOS_BOOT='sometimes'\n", nil).config(os.ReadFile)
	assert.ErrorContains(t, err, `BIOS_BOOT: "sometimes": use yes or no`)

	_, err = load(t, "IMAGE_SIZE='20X'\nAUTHORIZED_KEYS_FILE='/nonexistent/keys'\n", nil).config(os.ReadFile)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "test.conf:1: IMAGE_SIZE: size \"20X\"")
	assert.Contains(t, err.Error(), "test.conf:2: AUTHORIZED_KEYS_FILE: open /nonexistent/keys")
}

func TestRemoteCacheDetection(t *testing.T) {
	for p, want := range map[string]bool{
		"build-host:/var/cache/pacman/pkg": true,
		"user@host:cache":                  true,
		"host:":                            false,
		":path":                            false,
		"/var/cache/pacman/pkg":            false,
		"./dir:with-colon":                 false,
		"/srv/a:b":                         false,
		"a:b:c":                            false,
		"[::1]:/cache":                     false,
		"":                                 false,
	} {
		assert.Equal(t, want, isRemoteCache(p), p)
	}
	s := load(t, "CACHE_PATH='cachehost:/var/cache/pacman/pkg'\n", nil)
	remote, ok := s.remoteCache()
	assert.True(t, ok)
	assert.Equal(t, "cachehost:/var/cache/pacman/pkg", remote)
	assert.Empty(t, config(t, s).Pacman.CacheDirs, "the caller mounts a remote cache")

	// Meant for sshfs but not host:path: refused, naming the variable.
	for _, p := range []string{"host:", "a:b:c"} {
		_, err := load(t, "CACHE_PATH='"+p+"'\n", nil).config(os.ReadFile)
		require.Error(t, err, p)
		assert.Contains(t, err.Error(), "CACHE_PATH", p)
		assert.Contains(t, err.Error(), "neither host:path", p)
	}
	// A relative local directory becomes absolute.
	wd, _ := os.Getwd()
	assert.Equal(t, []string{filepath.Join(wd, "cache")}, config(t, load(t, "CACHE_PATH=cache\n", nil)).Pacman.CacheDirs)
	assert.Equal(t, filepath.Join(wd, "built"), config(t, load(t, "BUILD_CACHE=built\n", nil)).CacheDir, "BUILD_CACHE is made absolute too")
	assert.Empty(t, config(t, load(t, "", nil)).CacheDir)
	assert.Equal(t, 20*disk.GiB, config(t, load(t, "BUILD_CACHE_MAX=20G\n", nil)).CacheMax)
	assert.Zero(t, config(t, load(t, "", nil)).CacheMax, "empty: the library's default")
}

func TestPrintedConfigLoadsBackToTheSameConfig(t *testing.T) {
	dir := t.TempDir()
	keys := filepath.Join(dir, "authorized keys")
	require.NoError(t, os.WriteFile(keys, []byte("ssh-ed25519 AAAAC3Nza a@b\n"), 0o644))
	for name, tc := range map[string]struct {
		file string
		env  map[string]string
	}{
		"defaults": {},
		"file and environment": {
			file: `SUFFIX='${EPOCHSECONDS}-test'
VDI_FILE='./it'\''s ${SUFFIX}.vdi'
HOSTNAME="web1"
WORKSTATION_PKGS=()
LOCALES=( 'en_US.UTF-8 UTF-8' 'de_DE ISO-8859-1' )
ROOT_PASSWORD_HASH='$6$salt$hash'
AUTHORIZED_KEYS_FILE='` + keys + `'
`,
			env: map[string]string{"POOL_NAME": "tank", "BASE_EXCLUDE_PKGS": "linux  linux-firmware", "KEYMAP": ""},
		},
		"block device": {env: map[string]string{"BLOCK_DEV": "/dev/sdz", "IMAGE_FILE": "/srv/${SUFFIX}.img", "CACHE_PATH": "h:/c"}},
	} {
		t.Run(name, func(t *testing.T) {
			s1 := load(t, tc.file, tc.env)
			var out bytes.Buffer
			require.NoError(t, s1.print(&out))

			// Loaded back, with the environment still set: the file wins.
			s2 := load(t, out.String(), tc.env)
			assert.Equal(t, config(t, s1), config(t, s2))
			var again bytes.Buffer
			require.NoError(t, s2.print(&again))
			assert.Equal(t, out.String(), again.String())
			// And without the environment.
			assert.Equal(t, config(t, s1), config(t, load(t, out.String(), nil)))
			// A later run makes new names.
			l := loader{File: mustParse(t, out.String()), Now: testNow.Add(time.Hour)}
			s3, err := l.load()
			require.NoError(t, err)
			assert.NotEqual(t, s1.str("SUFFIX"), s3.str("SUFFIX"))
		})
	}
}

func mustParse(t *testing.T, text string) []assignment {
	t.Helper()
	a, err := parseConfig("printed", []byte(text))
	require.NoError(t, err)
	return a
}

func TestPrintedConfigKeepsTemplates(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, load(t, "", map[string]string{"QCOW2_FILE": "./x-${SUFFIX}.qcow2"}).print(&out))
	text := out.String()
	assert.Contains(t, text, "SUFFIX='${EPOCHSECONDS}'\n")
	assert.Contains(t, text, "IMAGE_FILE='./paczfs-${SUFFIX}.img'\n")
	assert.Contains(t, text, "QCOW2_FILE='./x-${SUFFIX}.qcow2'\n")
	assert.Contains(t, text, "LOCALES=( 'en_US.UTF-8 UTF-8' )\n")
	assert.Contains(t, text, "CONFIG_VERSION='"+configVersion+"'\n")
	for _, v := range variables {
		assert.Contains(t, text, "\n"+v.Name+"=", v.Name)
	}
}

func TestConfigVersionMismatchOnlyWarns(t *testing.T) {
	assert.Empty(t, load(t, "", nil).versionWarning())
	w := load(t, "CONFIG_VERSION='v0.0.1'\n", nil).versionWarning()
	assert.Contains(t, w, "paczfs v0.0.1")
	assert.True(t, strings.Contains(w, "not necessarily a problem"))
}

// What a real shell parser adds: $NAME is ${NAME}, other expansions and
// quotings are refused by name, and escapes follow bash.
func TestParseConfigShellForms(t *testing.T) {
	a, err := parseConfig("t.conf", []byte("IMAGE_FILE=/srv/$HOSTNAME.img\nVDI_FILE=a\\ b\nQCOW_FILE=\"x\\ny\"\n"))
	require.NoError(t, err)
	assert.Equal(t, "/srv/${HOSTNAME}.img", a[0].Value.Text)
	assert.Equal(t, "a b", a[1].Value.Text)
	assert.Equal(t, `x\ny`, a[2].Value.Text, "in double quotes only $ ` \" \\ escape")
	for text, want := range map[string]string{
		"HOSTNAME=${X:-y}\n":    "only ${NAME} expansions",
		"HOSTNAME=$'a\\tb'\n":   "$'...' quoting is not supported",
		"HOSTNAME=a > /tmp/x\n": "redirections are not supported",
		"HOSTNAME=a &\n":        "unquoted ';' or '&'",
		"HOSTNAME+=a\n":         "expected NAME='value' or NAME=( ... )",
		"if true; then :; fi\n": "only assignments are read",
		"HOSTNAME=ok\nBAD=(\n":  "t.conf:2:",
	} {
		_, err := parseConfig("t.conf", []byte(text))
		require.Error(t, err, text)
		assert.Contains(t, err.Error(), want, text)
	}
}

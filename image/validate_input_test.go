package image

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/paczfs/paczfs/disk"
	"github.com/paczfs/paczfs/pacman"
)

// validArch is ArchProfile with a target, a keyring directory and no
// device tool: New accepts it without the host.
func validArch(t *testing.T) Config {
	c := ArchProfile()
	c.ImageFile = filepath.Join(t.TempDir(), "test.img")
	c.Pacman.KeyringDir = t.TempDir()
	c.Manage.Off = true
	return c
}

// Input that would write outside the target, break a file the build
// generates (pacman.conf, loader entries, locale.gen, the kernel command
// line) or fail only after the disk is written is refused by New, naming
// the field, before anything is written.
func TestNewRefusesInputThatWouldFailLateOrBreakAFile(t *testing.T) {
	cases := []struct {
		name, field string
		edit        func(*Config)
	}{
		{"initramfs file out of the target", "boot.initramfs_files", func(c *Config) { c.Boot.InitramfsFiles = map[string]string{"/../../escaped": "x"} }},
		{"initramfs file not clean", "boot.initramfs_files", func(c *Config) { c.Boot.InitramfsFiles = map[string]string{"/etc/.": "x"} }},
		{"initramfs file empty path", "boot.initramfs_files", func(c *Config) { c.Boot.InitramfsFiles = map[string]string{"": "x"} }},
		{"system file with NUL", "system.files", func(c *Config) { c.System.Files = map[string]string{"/etc/a\x00b": "x"} }},
		{"system file /etc/.", "system.files", func(c *Config) { c.System.Files = map[string]string{"/etc/.": "x"} }},
		{"architecture with a line", "pacman", func(c *Config) { c.Pacman.Architecture = "x86_64\nXferCommand = /bin/sh -c evil" }},
		{"ignore_pkgs with a line", "pacman", func(c *Config) { c.Pacman.IgnorePkgs = []string{"foo\nXferCommand = evil"} }},
		{"no_extract with a repository", "pacman", func(c *Config) { c.Pacman.NoExtract = []string{"x\n[evil]\nServer = http://evil/"} }},
		{"mirrorlist with a line", "pacman", func(c *Config) { c.Pacman.Repos[0].Mirrorlist = "mirrorlist\n[evil]" }},
		{"mirrorlist ..", "pacman", func(c *Config) { c.Pacman.Repos[0].Mirrorlist = ".." }},
		{"sig_level with a line", "pacman", func(c *Config) { c.Pacman.SigLevel = "Required\nTrustAll" }},
		{"trusted key id", "pacman", func(c *Config) { c.Pacman.TrustedKeys = []pacman.TrustedKey{{ID: "not-a-key"}} }},
		{"pool name with a space", "pool_name", func(c *Config) { c.PoolName = "my pool" }},
		{"pool name too long for GPT", "pool_name", func(c *Config) { c.PoolName = "p" + strings.Repeat("o", 39) }},
		{"root with a colon", "root_dataset", func(c *Config) {
			c.Datasets = append(c.Datasets, c.Datasets[len(c.Datasets)-1])
			c.Datasets[len(c.Datasets)-1].Name = "system/de:fault"
			c.RootDataset = "system/de:fault"
		}},
		{"root at the top", "root_dataset", func(c *Config) {
			c.Datasets = append(c.Datasets, c.Datasets[len(c.Datasets)-1])
			c.Datasets[len(c.Datasets)-1].Name = "default"
			c.RootDataset = "default"
		}},
		{"root named like a boot environment", "root_dataset", func(c *Config) {
			c.Datasets = append(c.Datasets, c.Datasets[len(c.Datasets)-1])
			c.Datasets[len(c.Datasets)-1].Name = "system/bootable"
			c.RootDataset = "system/bootable"
		}},
		{"option with a line", "boot.extra_options[0]", func(c *Config) { c.Boot.ExtraOptions = []string{"quiet\ninitrd /evil"} }},
		{"option with a space", "boot.root_options[2]", func(c *Config) { c.Boot.RootOptions = append(c.Boot.RootOptions, "a b") }},
		{"size not in MiB", "size", func(c *Config) { c.Size = 20*disk.GiB + 1 }},
		{"locale with a line", "system.locales[0]", func(c *Config) { c.System.Locales = []string{"en_US.UTF-8\nUTF-8"} }},
		{"unit read as an option", "system.units[0]", func(c *Config) { c.System.Units = []string{"--global.service"} }},
		{"hold tag read as an option", "hold_tag", func(c *Config) { c.HoldTag = "-r" }},
		{"timeout past SYSLINUX's", "boot.timeout", func(c *Config) { c.Boot.Timeout = 1 << 60 }},
		{"kernel path with a line", "boot.kernel", func(c *Config) { c.Boot.Kernel = "/boot/vmlinuz-{kver}\nTarget = x" }},
		{"systemd-boot path with a line", "boot.systemd_boot_efi", func(c *Config) { c.Boot.SystemdBootEFI = "/usr/lib/x.efi\nExec = /bin/evil" }},
		{"hook target with a space", "boot.initramfs_hook_targets[0]", func(c *Config) { c.Boot.InitramfsHookTargets = []string{"usr/lib/a b"} }},
	}
	ok := validArch(t)
	_, err := New(ok, WithHostChecks(false))
	require.NoError(t, err, "the base configuration is valid")
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := validArch(t)
			tc.edit(&c)
			_, err := New(c, WithHostChecks(false))
			var ce *ConfigError
			require.True(t, errors.As(err, &ce), "%v", err)
			var fields []string
			for _, p := range ce.Problems {
				fields = append(fields, p.Field)
			}
			assert.Contains(t, fields, tc.field, "%v", err)
			assert.NoFileExists(t, c.ImageFile)
		})
	}
}

// A nil option or hook is an error naming it, not a panic.
func TestNewRefusesNilOptionsAndHooks(t *testing.T) {
	_, err := New(validArch(t), WithHostChecks(false), nil)
	assert.ErrorContains(t, err, "options[1]")
	_, err = New(validArch(t), WithHostChecks(false), WithHooks(nil))
	assert.ErrorContains(t, err, "hooks[0]")
	assert.ErrorIs(t, err, ErrHook)
}

// A system file is written inside the target's root, whatever its name
// says: New refuses the names that would not be, and the names it takes
// stay inside (a link in the target is another matter: see fsx).
func TestNewKeepsConfiguredFilesInTheTarget(t *testing.T) {
	for _, name := range []string{"/a/../../x", "relative", "/", "/etc/x/", "/etc//x"} {
		c := validArch(t)
		c.System.Files = map[string]string{name: "x"}
		_, err := New(c, WithHostChecks(false))
		assert.ErrorContains(t, err, "system.files", "%q", name)
	}
}

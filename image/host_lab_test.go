//go:build lab

package image_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/paczfs/paczfs/disk"
	"github.com/paczfs/paczfs/image"
	"github.com/paczfs/paczfs/internal/labtest"
)

// hostEnv is one build host's shell: its umask and environment, and its
// own /etc/pacman.conf.
type hostEnv struct {
	name       string
	umask      int
	env        map[string]string
	pacmanConf string
}

// TestLabImageIndependentOfHost builds the same configuration (fixed
// hostid and GUID seed) twice in one VM, from two host shells that differ
// in umask, locale, time zone, HOME, PATH order and /etc/pacman.conf, and
// compares /etc, /usr/local and the data mount points of both roots
// (mode, owner, checksum; links by target). Only the keyring's secret
// material may differ (README: per-build values).
func TestLabImageIndependentOfHost(t *testing.T) {
	labtest.Require(t)
	cfg := standInProfile(t, "hostpool", "00c0ffee", "host-independence")
	// One path for both builds: the image path is recorded in
	// /etc/paczfs/config.json, a documented per-build value.
	cfg.ImageFile = filepath.Join(t.TempDir(), "host.img")

	path := os.Getenv("PATH")
	dirs := strings.Split(path, ":")
	slices.Reverse(dirs)
	other := t.TempDir()
	envs := []hostEnv{
		{name: "plain", umask: 0o022, env: map[string]string{"LANG": "C", "LC_ALL": "", "TZ": "UTC", "HOME": "/root", "PATH": path}},
		{name: "unusual", umask: 0o077, env: map[string]string{"LANG": "de_DE.UTF-8", "LC_ALL": "de_DE.UTF-8", "TZ": "America/New_York",
			"HOME": other, "PATH": strings.Join(dirs, ":")},
			pacmanConf: "[options]\nArchitecture = i686\nSigLevel = Never\nCacheDir = " + other + "\nNoExtract = etc/*\n[core]\nServer = http://127.0.0.1:1/\n"},
	}
	hostConf := "/etc/pacman.conf"
	orig, origErr := os.ReadFile(hostConf)
	t.Cleanup(func() {
		if origErr == nil {
			os.WriteFile(hostConf, orig, 0o644)
		} else {
			os.Remove(hostConf)
		}
	})
	lists := make([][]string, len(envs))
	for i, e := range envs {
		for k, v := range e.env {
			t.Setenv(k, v)
		}
		if e.pacmanConf != "" {
			require.NoError(t, os.WriteFile(hostConf, []byte(e.pacmanConf), 0o644))
		}
		old := syscall.Umask(e.umask)
		b, err := image.New(cfg, image.WithLogger(labtest.Logger(t)))
		require.NoError(t, err)
		_, err = b.Build(context.Background())
		assert.Equal(t, e.umask, syscall.Umask(old), "%s: Build left the caller's umask as it was", e.name)
		require.NoError(t, err, e.name)
		lists[i] = listRoot(t, cfg)
		require.NoError(t, os.Remove(cfg.ImageFile))
		t.Logf("%s: %d entries", e.name, len(lists[i]))
	}
	a, b := lists[0], lists[1]
	var onlyA, onlyB []string
	for _, l := range a {
		if !slices.Contains(b, l) {
			onlyA = append(onlyA, l)
		}
	}
	for _, l := range b {
		if !slices.Contains(a, l) {
			onlyB = append(onlyB, l)
		}
	}
	assert.Empty(t, onlyA, "only in the image built from the %s shell", envs[0].name)
	assert.Empty(t, onlyB, "only in the image built from the %s shell", envs[1].name)
	assert.Greater(t, len(a), 100, "entries listed")
	for _, want := range []string{"etc drwxr-xr-x 0:0", "home drwxr-xr-x 0:0", "etc/machine-id -r--r--r-- 0:0"} {
		assert.True(t, slices.ContainsFunc(a, func(l string) bool { return strings.HasPrefix(l, want) }), "%q listed", want)
	}
}

// standInProfile is the lab profile with the real base and system stage,
// the ssh drop-in and the ESP hook, a small disk, and a kernel and
// initramfs that stand in (the boot tests build real ones): a build of
// about two minutes. The hostid and GUID seed are set, so two builds of
// it differ only in what is random by design.
func standInProfile(t *testing.T, pool, hostID, seed string) image.Config {
	cfg := labProfile(t)
	cfg.Packages.Bootable = []string{"systemd-boot-efi", "openssh-server"}
	cfg.Packages.Workstation = []string{"tmux"}
	cfg.System.Units = []string{"ssh.service"}
	standInBoot(&cfg)
	cfg.Size = 2 * disk.GiB
	cfg.ESPSize = 64 * disk.MiB
	cfg.PoolName = pool
	cfg.System.HostID = hostID
	cfg.GUIDSeed = seed
	return cfg
}

// listRoot imports the image's pool read-only, mounts its root dataset
// alone (so the data datasets' mount points are the root's directories)
// and lists /etc, /usr/local and those mount points: path, mode, owner,
// and the file's sha256 or the link's target. In the keyring, the names
// and contents of secret material are per build: only modes and owners.
func listRoot(t *testing.T, cfg image.Config) []string {
	plan, err := disk.ReadGPT(cfg.ImageFile)
	require.NoError(t, err)
	loop := labtest.Attach(t, cfg.ImageFile, plan)
	alt := t.TempDir()
	tmp := labtest.Name("host")
	labtest.Run(t, "zpool", "import", "-d", "/dev", "-o", "readonly=on", "-N", "-R", alt, "-t", cfg.PoolName, tmp)
	defer func() {
		exec.Command("zpool", "export", tmp).Run()
		_ = loop.Detach(context.Background(), 0)
	}()
	mnt := t.TempDir()
	labtest.Run(t, "mount", "-t", "zfs", "-o", "ro,zfsutil", tmp+"/"+cfg.RootDataset, mnt)
	defer exec.Command("umount", mnt).Run()
	var out []string
	add := func(p string, fi fs.FileInfo) {
		rel, _ := filepath.Rel(mnt, p)
		st := fi.Sys().(*syscall.Stat_t)
		line := fmt.Sprintf("%s %s %d:%d", rel, fi.Mode(), st.Uid, st.Gid)
		keyring := strings.HasPrefix(rel, "etc/pacman.d/gnupg/")
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			line += " -> " + target
		case fi.Mode().IsRegular() && !keyring:
			data, err := os.ReadFile(p)
			require.NoError(t, err)
			sum := sha256.Sum256(data)
			line += " " + hex.EncodeToString(sum[:8])
		}
		if keyring && (strings.Contains(rel, "private-keys-v1.d/") || strings.Contains(rel, "openpgp-revocs.d/")) {
			line = strings.Replace(line, filepath.Base(rel), "*", 1)
		}
		out = append(out, line)
	}
	for _, top := range []string{"etc", "usr/local"} {
		require.NoError(t, filepath.Walk(filepath.Join(mnt, top), func(p string, fi fs.FileInfo, err error) error {
			if err != nil {
				return err
			}
			add(p, fi)
			return nil
		}))
	}
	for _, d := range []string{"home", "root", "srv", "var/lib/machines", "var/lib/postgres", "efi", "var/cache/pacman/pkg", "tmp", "var/tmp"} {
		fi, err := os.Lstat(filepath.Join(mnt, d))
		if err == nil {
			add(filepath.Join(mnt, d), fi)
		} else {
			out = append(out, d+" missing")
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

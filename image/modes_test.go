package image

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/paczfs/paczfs/hooks"
	"github.com/paczfs/paczfs/hooks/hookstest"
	"github.com/paczfs/paczfs/internal/testutil"
)

// fakeTarget is the least of an installed root the system stage reads:
// a shadow file, locale-gen, a skeleton, a zone and one package.
func fakeTarget(t *testing.T) string {
	root := t.TempDir()
	writeTree(t, root, map[string]string{
		"etc/shadow":                         "root:*:19000::::::\n",
		"usr/sbin/locale-gen":                "",
		"etc/skel/.bashrc":                   "# skel\n",
		"etc/skel/.config/app.conf":          "x=1\n",
		"usr/share/zoneinfo/Europe/Berlin":   "TZif",
		"var/lib/pacman/local/bash-5-1/desc": "%NAME%\nbash\n\n%VERSION%\n5-1\n",
		"usr/lib/modules/6.12.0/vmlinuz":     "kernel",
	}, 0o644)
	return root
}

// writeTree writes files (paths relative to dir) with their parents.
func writeTree(t *testing.T, dir string, files map[string]string, mode os.FileMode) {
	t.Helper()
	for name, data := range files {
		p := filepath.Join(dir, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(data), mode))
	}
}

// hostBuild is a build of cfg whose commands are faked, with root as its
// target and the layout's plan, for running stages on the host.
func hostBuild(t *testing.T, cfg Config, root string, fake hooks.Runner) *build {
	t.Helper()
	b, err := New(cfg, hostOK, WithRunner(fake))
	require.NoError(t, err)
	st := b.newBuild()
	st.state.Root = root
	plan, err := st.cfg.layout().Plan(cfg.Size)
	require.NoError(t, err)
	st.target = &targetInfo{plan: plan}
	return st
}

// modes lists every path under root that the test did not make, with its
// type and permission bits (symbolic links: their target).
func modes(t *testing.T, root string, before map[string]bool) map[string]string {
	out := map[string]string{}
	require.NoError(t, filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		require.NoError(t, err)
		rel, _ := filepath.Rel(root, p)
		if rel == "." || before[rel] {
			return nil
		}
		fi, err := os.Lstat(p)
		require.NoError(t, err)
		if fi.Mode()&fs.ModeSymlink != 0 {
			target, _ := os.Readlink(p)
			out[rel] = "-> " + target
		} else {
			out[rel] = fi.Mode().String()
		}
		return nil
	}))
	return out
}

func paths(root string) map[string]bool {
	m := map[string]bool{}
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		rel, _ := filepath.Rel(root, p)
		m[rel] = true
		return nil
	})
	return m
}

// TestWritersIgnoreTheUmask runs the system stage, the initramfs stage's
// files and the ESP hook's files (the writers of everything paczfs puts
// in a root; the ESP itself is FAT, without modes) on a fake target under
// umask 077 and 000: what they write has the same, intended modes.
func TestWritersIgnoreTheUmask(t *testing.T) {
	want := map[string]string{
		"efi":                               "drwx------",
		"etc/fstab":                         "-rw-r--r--",
		"etc/hostid":                        "-rw-r--r--",
		"etc/hostname":                      "-rw-r--r--",
		"etc/locale.conf":                   "-rw-r--r--",
		"etc/locale.gen":                    "-rw-r--r--",
		"etc/localtime":                     "-> ../usr/share/zoneinfo/Europe/Berlin",
		"etc/machine-id":                    "-r--r--r--",
		"etc/mkinitcpio.conf.d":             "drwxr-xr-x",
		"etc/mkinitcpio.conf.d/paczfs.conf": "-rw-r--r--",
		"etc/pacman.conf":                   "-rw-r--r--",
		"etc/pacman.d":                      "drwxr-xr-x",
		"etc/pacman.d/hooks":                "drwxr-xr-x",
		"etc/pacman.d/hooks/95-paczfs-update-esp.hook":        "-rw-r--r--",
		"etc/pacman.d/hooks/95-paczfs-update-bootloader.hook": "-rw-r--r--",
		"etc/pacman.d/mirrorlist":                             "-rw-r--r--",
		"etc/paczfs":                                          "drwxr-xr-x",
		"etc/paczfs/boot.env":                                 "-rw-r--r--",
		"etc/paczfs/config.json":                              "-rw-r--r--",
		"etc/paczfs/packages.txt":                             "-rw-r--r--",
		"etc/paczfs/version":                                  "-rw-r--r--",
		"etc/resolv.conf":                                     "-> ../run/systemd/resolve/stub-resolv.conf",
		"etc/systemd":                                         "drwxr-xr-x",
		"etc/systemd/network":                                 "drwxr-xr-x",
		"etc/systemd/network/20-ethernet.network":             "-rw-r--r--",
		"etc/systemd/system":                                  "drwxr-xr-x",
		"etc/systemd/system/x.service.d":                      "drwxr-xr-x",
		"etc/systemd/system/x.service.d/paczfs.conf":          "-rw-r--r--",
		"etc/vconsole.conf":                                   "-rw-r--r--",
		"root":                                                "drwx------",
		"root/.bashrc":                                        "-rw-------",
		"root/.config":                                        "drwx------",
		"root/.config/app.conf":                               "-rw-------",
		"root/.ssh":                                           "drwx------",
		"root/.ssh/authorized_keys":                           "-rw-------",
		"usr/local":                                           "drwxr-xr-x",
		"usr/local/sbin":                                      "drwxr-xr-x",
		"usr/local/sbin/paczfs-update-esp":                    "-rwxr-xr-x",
		"usr/local/sbin/paczfs-update-bootloader":             "-rwxr-xr-x",
		"usr/local/sbin/paczfs-health":                        "-rwxr-xr-x",
		"etc/paczfs/units":                                    "-rw-r--r--",
		"etc/initramfs-tools":                                 "drwxr-xr-x",
		"etc/initramfs-tools/hooks":                           "drwxr-xr-x",
		"etc/initramfs-tools/hooks/paczfs":                    "-rwxr-xr-x",
		"etc/systemd/system/multi-user.target.wants":          "drwxr-xr-x",
		"etc/systemd/system/multi-user.target.wants/x.svc":    "-rw-r--r--",
	}
	for _, mask := range []int{0o077, 0o000} {
		t.Run(fs.FileMode(mask).String(), func(t *testing.T) {
			old := syscall.Umask(mask)
			defer syscall.Umask(old)
			root := fakeTarget(t)
			before := paths(root)
			shadowBefore, err := os.Stat(filepath.Join(root, "etc/shadow"))
			require.NoError(t, err)
			cfg := ArchProfile()
			cfg.ImageFile = filepath.Join(t.TempDir(), "x.img")
			cfg.System.Timezone = "Europe/Berlin"
			cfg.Pacman.KeyringDir = t.TempDir()
			cfg.Manage.Tool = testutil.StaticTool(t)
			cfg.System.AuthorizedKeys = []string{"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIF3eCg5ZUjN1pmhJzqp1xNr4AhwyY5yjVB1ASf0sxpE2 test@paczfs"}
			cfg.System.Files = map[string]string{"/etc/systemd/system/x.service.d/paczfs.conf": "[Service]\n"}
			cfg.Boot.InitramfsFiles["/etc/initramfs-tools/hooks/paczfs"] = "#!/bin/sh\n"
			cfg.Boot.InitramfsCommand = []string{"true"}
			cfg.Boot.InitramfsMust = nil // the fake generator writes no image to list
			// The commands are faked; systemctl enable's link is made as
			// a stand-in for what it would write, by the runner's umask.
			fake := &hookstest.FakeRunner{}
			st := hostBuild(t, cfg, root, fake)
			st.cfg.Boot.Initrd = "/usr/lib/modules/{kver}/vmlinuz" // exists: the fake generator writes nothing
			ctx := context.Background()
			require.NoError(t, stageSystem(ctx, st))
			require.NoError(t, stageInitramfs(ctx, st))
			require.NoError(t, st.installESPHook())
			// What a chrooted command would make: under the chroot's
			// fixed umask, the same modes (checked in the lab for real).
			require.NoError(t, writeFile(root, "etc/systemd/system/multi-user.target.wants/x.svc", nil, 0o644))
			// The ESP waits longer than systemd's 90 s for its device,
			// and a boot without it mounted is not healthy.
			fstab, err := os.ReadFile(filepath.Join(root, "etc/fstab"))
			require.NoError(t, err)
			assert.Regexp(t, `(?m)^PARTUUID=[0-9a-f-]* /efi vfat \S*nofail,x-systemd\.device-timeout=5min 0 2$`, string(fstab))
			units, err := os.ReadFile(filepath.Join(root, "etc/paczfs/units"))
			require.NoError(t, err)
			assert.Regexp(t, `(?m)^efi\.mount$`, string(units))
			shadow, err := os.Stat(filepath.Join(root, "etc/shadow"))
			require.NoError(t, err)
			assert.Equal(t, shadowBefore.Mode(), shadow.Mode(), "/etc/shadow keeps the target's mode")
			got := modes(t, root, before)
			for _, ignore := range []string{"etc", "usr", "usr/lib", "var"} {
				delete(got, ignore) // made by fakeTarget
			}
			var missing, wrong []string
			for p, m := range want {
				if g, ok := got[p]; !ok {
					missing = append(missing, p)
				} else if g != m {
					wrong = append(wrong, p+": "+g+" want "+m)
				}
				delete(got, p)
			}
			sort.Strings(wrong)
			assert.Empty(t, missing, "not written")
			assert.Empty(t, wrong, "modes under umask %03o", mask)
			assert.Empty(t, got, "written but not expected")
			assert.Equal(t, mask, syscall.Umask(mask), "the caller's umask is unchanged")
			for _, c := range fake.Calls() {
				assert.True(t, strings.HasPrefix(c, "unshare --mount"), "chrooted: %s", c)
			}
			_ = hooks.StageSystem
		})
	}
}

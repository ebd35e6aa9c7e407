package image

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/paczfs/paczfs/pacman"
)

// The kernel/ZFS pair is chosen at plan time from what the repositories
// hold: archzfs's zfs-linux-lts depends on one exact linux-lts, and while
// archzfs has not rebuilt it for core's newer kernel, zfs-dkms with the
// headers takes its place (in it, not at the end), and the plan says why.
func TestModulePairFollowsTheRepositories(t *testing.T) {
	pair := ArchProfile().Packages.ModulePairs[0]
	assert.Equal(t, ModulePair{Kernel: "linux-lts", Module: "zfs-linux-lts", Fallback: []string{"zfs-dkms", "linux-lts-headers"}}, pair)
	bootable := []string{"linux-lts", "zfs-linux-lts", "zfs-utils", "mkinitcpio"}
	zfs := func(dep string) pacman.SyncPackage {
		return pacman.SyncPackage{Name: "zfs-linux-lts", Version: "2.3.3_6.12.40.1-1", Repo: "archzfs", Depends: []string{"zfs-utils=2.3.3", dep}}
	}
	kernel := func(v string) pacman.SyncPackage {
		return pacman.SyncPackage{Name: "linux-lts", Version: v, Repo: "core"}
	}
	for name, c := range map[string]struct {
		info     map[string]pacman.SyncPackage
		fallback bool
		bootable []string
		why      string
	}{
		"built for core's kernel": {map[string]pacman.SyncPackage{"zfs-linux-lts": zfs("linux-lts=6.12.40-1"), "linux-lts": kernel("6.12.40-1")},
			false, bootable, "zfs-linux-lts 2.3.3_6.12.40.1-1 is built for linux-lts 6.12.40-1, the version core has"},
		"a version without pkgrel matches any": {map[string]pacman.SyncPackage{"zfs-linux-lts": zfs("linux-lts=6.12.40"), "linux-lts": kernel("6.12.40-2")},
			false, bootable, "built for linux-lts 6.12.40,"},
		"archzfs lags core": {map[string]pacman.SyncPackage{"zfs-linux-lts": zfs("linux-lts=6.12.40-1"), "linux-lts": kernel("6.12.41-1")},
			true, []string{"linux-lts", "zfs-dkms", "linux-lts-headers", "zfs-utils", "mkinitcpio"},
			"zfs-linux-lts 2.3.3_6.12.40.1-1 (archzfs) is built for linux-lts 6.12.40-1, but core has linux-lts 6.12.41-1: installing zfs-dkms linux-lts-headers instead"},
		"no exact kernel": {map[string]pacman.SyncPackage{"zfs-linux-lts": zfs("linux-lts>=6.12"), "linux-lts": kernel("6.12.41-1")},
			false, bootable, "depends on no exact linux-lts version"},
		"no module in any repository": {map[string]pacman.SyncPackage{"linux-lts": kernel("6.12.41-1")},
			false, bootable, "no repository has zfs-linux-lts"},
	} {
		t.Run(name, func(t *testing.T) {
			choices, got := chooseModules([]ModulePair{pair}, bootable, c.info)
			assert.Equal(t, c.bootable, got)
			if assert.Len(t, choices, 1) {
				assert.Equal(t, c.fallback, choices[0].Fallback)
				assert.Contains(t, choices[0].Why, c.why)
			}
		})
	}
	// A pair whose module is not in the bootable set does nothing; the
	// configured set is never changed in place.
	choices, got := chooseModules([]ModulePair{pair}, []string{"linux-lts", "zfs-dkms"}, nil)
	assert.Empty(t, choices)
	assert.Equal(t, []string{"linux-lts", "zfs-dkms"}, got)
	_, _ = chooseModules([]ModulePair{pair}, bootable, map[string]pacman.SyncPackage{"zfs-linux-lts": zfs("linux-lts=1-1"), "linux-lts": kernel("2-1")})
	assert.Equal(t, []string{"linux-lts", "zfs-linux-lts", "zfs-utils", "mkinitcpio"}, bootable)
}

func TestModulePairsAreChecked(t *testing.T) {
	c := ArchProfile()
	c.ImageFile = "/var/tmp/x.img"
	c.Packages.ModulePairs = append(c.Packages.ModulePairs, ModulePair{Kernel: "linux"}, ModulePair{Kernel: "linux", Module: "zfs linux", Fallback: []string{"x"}})
	var msgs []string
	for _, p := range c.validate() {
		msgs = append(msgs, p.Error())
	}
	assert.Contains(t, msgs, "packages.module_pairs[1]: incomplete (name the kernel, the module package built for one version of it, and the packages that build it for any (e.g. linux-lts, zfs-linux-lts, zfs-dkms linux-lts-headers))")
	assert.Contains(t, msgs, `packages.module_pairs[2]: bad package name "zfs linux" (one package name per entry)`)
}

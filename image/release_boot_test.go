//go:build boot

package image_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/paczfs/paczfs/disk"
	"github.com/paczfs/paczfs/internal/ovmf"
	"github.com/paczfs/paczfs/release"
)

// mkrelScript defines mkrel NAME BASE VERSION PREVIOUS [FILE CONTENT]:
// a release made in the guest from BASE (a clone with a marker and an
// optional file, snapshotted, written by paczfs-release into
// /var/tmp/NAME, the build copy destroyed).
const mkrelScript = `mkrel() { # name base version previous [file content]
	run zfs clone -o canmount=noauto -o mountpoint=/ "$2" "$pool/build/$1"
	mkdir -p /run/b && mount -t zfs -o zfsutil "$pool/build/$1" /run/b
	[ -z "${5:-}" ] || { mkdir -p "$(dirname "/run/b/$5")"; printf '%s' "$6" > "/run/b/$5"; chmod 755 "/run/b/$5"; }
	echo "$3" > /run/b/etc/paczfs-release-marker
	umount /run/b
	run zfs snapshot "$pool/build/$1@$1"
	run "$P" write --snapshot "$pool/build/$1@$1" --base "$2" --version "$3" --previous "$4" --key /var/tmp/k.key --dir "/var/tmp/$1"
	run zfs destroy -r "$pool/build/$1"
}
`

// releaseDisk is the release TestLabDeriveRelease made from the lab
// image's release 1, as a disk for the guest: a tar archive (the format
// paczfs-release archive writes and apply - reads) of its manifest,
// signature and incremental stream, /dev/disk/by-id/virtio-release.
func releaseDisk(t *testing.T, dir string) ovmf.Disk {
	src := filepath.Join(dir, "release-2")
	m, _, err := release.Open(src, [][]byte{readBootFile(t, filepath.Join(dir, "release-key.asc"))})
	require.NoError(t, err, "release 2 is made by the image package's lab test (make labtest)")
	incr, ok := m.Stream(release.Incremental)
	require.True(t, ok, "release 2 has an incremental stream")
	_, err = os.Stat(filepath.Join(src, incr.File))
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "release-2.tar")
	f, err := os.Create(path)
	require.NoError(t, err)
	require.NoError(t, release.WriteArchive(f, src, release.Incremental))
	require.NoError(t, f.Close())
	return ovmf.Disk{Path: path, Serial: "release"}
}

func readBootFile(t *testing.T, name string) []byte {
	data, err := os.ReadFile(name)
	require.NoError(t, err)
	return data
}

// pkgsLine reports the versions of the two packages release 2 changes.
const pkgsLine = `r "pkgs $(pacman -Q tmux rsync 2>&1 | tr '\n' ' ')"
`

// A signed update as a ZFS stream, applied on a booted machine (make
// test, every stop: one case of each kind; TestBootReleasePowerCuts has
// every power cut):
//
//	1 default (release 1, the lab image): release 2 (built in the lab
//	  from release 1: rsync added, tmux upgraded) is on a disk; a copy
//	  with a flipped byte is refused; apply, the power cut halfway
//	  through zfs receive
//	2 default, by itself, nothing of release 2 on the pool; apply -
//	  --try 2 from the disk
//	3 release-2: it boots well (blessed, default); v3 is made in the
//	  guest from v2 with a check that fails, applied with --try 1
//	4 release-3: its check fails, it reboots itself
//	5 release-2 again, by itself; release-3 is bad
const releaseScenario = `P=/efi/paczfs-test/paczfs-release
REL=/dev/disk/by-id/virtio-release
` + mkrelScript + `
case $be in
default)
	if todo v2; then
		r "version $(zfs get -H -o value org.paczfs:version "$ds")"
		` + pkgsLine + `		mkdir -p /var/tmp/v2 && tar -xf "$REL" -C /var/tmp/v2
		cp -r /var/tmp/v2 /var/tmp/v2-bad && f=$(ls /var/tmp/v2-bad/1-2.zstream) && printf 'X' | dd of="$f" bs=1 seek=1000 conv=notrunc 2>/dev/null
		run bootenv apply /var/tmp/v2-bad --name tampered
		r "tampered $(zfs list -H -o name "$pool/system/tampered" 2>&1 | tail -n 1)"
		did v2
		r "CUT-AT receiving"
		PACZFS_TEST_PAUSE=receiving bootenv apply /var/tmp/v2 --try 2 > /dev/null 2>&1
		r "apply did not pause: rc=$?"; state; off
	fi
	if todo apply; then
		r "after-cut $(zfs list -H -o name "$pool/system/release-2" 2>&1 | tail -n 1)"
		r "hidden $(zfs list -H -t all -o name -r "$pool" | grep -c '%')"
		state
		run bootenv apply - --try 2 < "$REL"
		did apply; again
	fi
	state; off ;;
release-2)
	if todo v3; then
		` + pkgsLine + `		state
		# v3 is signed by a key made here, which the device is told to trust.
		run "$P" keygen "paczfs test releases" /var/tmp/k
		mkdir -p /etc/paczfs/release-keys && cp /var/tmp/k.asc /etc/paczfs/release-keys/
		run zfs create -o canmount=off -o mountpoint=none "$pool/build"
		mkrel v3 "$ds@v2" 3 2 etc/paczfs/health.d/50-test '#!/bin/sh
echo "problem: release 3 is bad"
exit 1
'
		run bootenv apply /var/tmp/v3 --try 1
		did v3; again
	fi
	` + pkgsLine + `	state; off ;;
release-3) r "trial release-3 booted"; state ;;
*) state; off ;;
esac
`

func TestBootReleaseUpdate(t *testing.T) {
	t.Parallel()
	dir := bootImages(t)
	m := newMachine(t, dir, "lab-release", releaseScenario)
	m.disks = []ovmf.Disk{releaseDisk(t, dir)}
	toolsOnESP(t, m.img, map[string]string{"paczfs-release": "./examples/release"})
	m.cuts = map[int]string{1: "PACZFS-PAUSE"}

	m.run(7)
	roots := m.roots()
	require.Equal(t, []string{"default", "default", "release-2", "release-3", "release-2"}, roots)
	b1, cut, b2, b4 := m.boots[0], m.boots[1], m.boots[2], m.boots[4]
	assert.Equal(t, "version 1", b1.line("version "), "the lab image is release 1")
	assert.Contains(t, b1.line("pkgs "), "tmux 3.")
	assert.Contains(t, b1.line("pkgs "), "'rsync' was not found")
	assert.Contains(t, b1.line("cmd bootenv apply /var/tmp/v2-bad"), "rc=1", "a flipped byte in the stream")
	assert.Contains(t, b1.line("cmd bootenv apply /var/tmp/v2-bad"), "does not match the manifest")
	assert.Contains(t, b1.line("tampered "), "does not exist", "nothing was received")
	assert.True(t, b1.cut, "the power was cut halfway through zfs receive")
	// After the cut: release 1 booted by itself, nothing half-received.
	assert.False(t, cut.cut)
	assert.Contains(t, cut.line("after-cut "), "does not exist")
	assert.Equal(t, "hidden 0", cut.line("hidden "), "no partial receive on the pool")
	assert.Equal(t, "good", cut.env("default")[1])
	assert.Contains(t, cut.line("cmd bootenv apply - "), "rc=0")
	assert.Contains(t, cut.line("cmd bootenv apply - "), "incremental stream")
	// Release 2 booted: the new package set, blessed, the default.
	assert.Contains(t, b2.line("pkgs "), "tmux 99.0-1")
	assert.Regexp(t, `rsync \S+`, b2.line("pkgs "))
	assert.NotContains(t, b2.line("pkgs "), "not found")
	assert.Equal(t, "good", b2.env("release-2")[1])
	assert.Contains(t, b2.env("release-2")[2], "default")
	assert.Equal(t, "labpool/system/default@v1", b2.env("release-2")[len(b2.env("release-2"))-1], "received as a clone of v1")
	assert.Equal(t, "good", b2.env("default")[1], "release 1 stays as the fallback")
	assert.Contains(t, b2.line("cmd bootenv apply /var/tmp/v3"), "rc=0")
	// Release 3 failed its check: back on release 2 by itself.
	assert.Contains(t, b4.line("pkgs "), "tmux 99.0-1", "back on v2 by itself")
	assert.Equal(t, "bad", b4.env("release-3")[1])
	assert.Equal(t, "bootfs labpool/system/release-2", b4.line("bootfs"))
	assert.True(t, strings.Contains(b4.line("entries "), "paczfs-release-3+0-1.conf"), b4.line("entries "))
}

// The power-cut matrix: the host cuts the machine's power while release 2
// is applied on release 1, at each step, and in the trial's first boot.
// After each cut the machine must boot a good environment by itself, and
// applying again must carry on. The device tool (built from this tree, on
// the ESP) pauses where PACZFS_TEST_PAUSE says and the host cuts there:
//
//	1 default: apply from the release disk on a pipe, cut halfway
//	  through fetching the stream
//	2 default: apply from a directory, cut halfway through zfs receive
//	3 default: nothing of release-2 on the pool; apply, cut once received
//	4 default: release-2 received and new, no entry; apply again (it
//	  carries on from the received snapshot), cut once the trial is set
//	5 release-2: the trial's first boot, cut as its kernel starts
//	6 release-2: the second try boots well: blessed, the default
const powerCutScenario = `B=/efi/paczfs-test/paczfs-bootenv
REL=/dev/disk/by-id/virtio-release
bootenv() { "$B" "$@"; }
cutat() { # STEP [SRC]: apply release 2 paused at STEP, where the host cuts the power
	did "cut-$1"
	r "CUT-AT $1"
	PACZFS_TEST_PAUSE=$1 "$B" apply "${2:-/var/tmp/v2}" --try 2 > /dev/null 2>&1
	r "apply did not pause at $1: rc=$?"; state; off
}
case $be in
default)
	if todo v2; then
		mkdir -p /var/tmp/v2 && tar -xf "$REL" -C /var/tmp/v2 && did v2
	fi
	r "release-2 $(zfs list -H -o name,org.paczfs:state "$pool/system/release-2" 2>&1 | tail -n 1)"
	r "hidden $(zfs list -H -t all -o name -r "$pool" | grep -c '%')"
	r "work $(ls -A /var/tmp/paczfs-release 2>/dev/null | tr '\n' ' ')"
	state
	if todo cut-fetching; then cutat fetching - < "$REL"
	elif todo cut-receiving; then cutat receiving
	elif todo cut-received; then cutat received
	elif todo cut-activated; then cutat activated
	fi
	r "default booted after every cut"; state; off ;;
release-2) ` + pkgsLine + `	state; off ;;
*) state; off ;;
esac
`

func TestBootReleasePowerCuts(t *testing.T) {
	t.Parallel()
	dir := bootImages(t)
	m := newMachine(t, dir, "lab-powercut", powerCutScenario)
	m.disks = []ovmf.Disk{releaseDisk(t, dir)}
	toolsOnESP(t, m.img, map[string]string{"paczfs-bootenv": "./examples/bootenv"})
	m.cuts = map[int]string{1: "PACZFS-PAUSE", 2: "PACZFS-PAUSE", 3: "PACZFS-PAUSE", 4: "PACZFS-PAUSE",
		5: "root=zfs:labpool/system/release-2"}

	m.run(8)
	require.Equal(t, []string{"default", "default", "default", "default", "release-2", "release-2"}, m.roots())
	for i, b := range m.boots {
		assert.Equal(t, i < 5, b.cut, "boot %d cut", i+1)
	}
	b := m.boots
	for i, step := range []string{"fetching", "receiving", "received", "activated"} {
		assert.Equal(t, "CUT-AT "+step, b[i].line("CUT-AT "), "boot %d", i+1)
		assert.Equal(t, "good", b[i].env("default")[1], "boot %d: default is good after every cut", i+1)
		assert.Contains(t, b[i].env("default")[2], "booted")
		assert.Equal(t, "hidden 0", b[i].line("hidden "), "boot %d: no partial receive on the pool", i+1)
	}
	// After the cuts while fetching and while receiving: nothing of it.
	assert.Contains(t, b[1].line("release-2 "), "does not exist", "cut while fetching")
	assert.Contains(t, b[2].line("release-2 "), "does not exist", "cut halfway through zfs receive")
	// After the cut once received: there, new, and no entry boots it.
	assert.Equal(t, "release-2 labpool/system/release-2\tnew", b[3].line("release-2 "))
	assert.NotContains(t, b[3].line("entries "), "release-2", "no entry before the trial is set")
	// The trial's first boot was cut; the second try boots it well.
	assert.Contains(t, b[5].line("pkgs "), "tmux 99.0-1")
	assert.Equal(t, "good", b[5].env("release-2")[1])
	assert.Contains(t, b[5].env("release-2")[2], "default")
	assert.Equal(t, "bootfs labpool/system/release-2", b[5].line("bootfs"))
	assert.Contains(t, b[5].line("entries "), "paczfs-release-2.conf", "blessed: no counter left")
	// What of the fetch survived the cut depends on what the guest had
	// written back when it lost power (the next apply fetches afresh).
	t.Logf("after the cut while fetching: %s", b[1].line("work "))
}

// toolsOnESP builds each named command of this tree (static, no cgo) and
// leaves it in /paczfs-test on img's ESP, for a scenario to run.
func toolsOnESP(t *testing.T, img string, tools map[string]string) {
	plan, err := disk.ReadGPT(img)
	require.NoError(t, err)
	esp, err := disk.OpenESP(img, plan)
	require.NoError(t, err)
	for name, pkg := range tools {
		tool := filepath.Join(t.TempDir(), name)
		build := exec.Command("go", "build", "-o", tool, pkg)
		build.Dir = ".."
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		out, err := build.CombinedOutput()
		require.NoError(t, err, "%s", out)
		f, err := os.Open(tool)
		require.NoError(t, err)
		require.NoError(t, esp.WriteFile("/paczfs-test/"+name, f))
		f.Close()
	}
	require.NoError(t, esp.Close())
}

//go:build boot

package image_test

// Boot environments on a running machine, over several boots: one
// writable copy of the lab image, a persistent EFI variable store, and a
// scenario the test leaves on the ESP that the image's test report unit
// runs at the end of every boot. The scenario acts only on boots that a
// person would act on; the trial boots it leaves alone, so the machine
// must come back by itself. Each qemu run is one boot: the guest's
// reboot ends qemu (-no-reboot) and the next run boots the same disk.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/paczfs/paczfs/disk"
	"github.com/paczfs/paczfs/internal/ovmf"
)

// scenarioPrelude is sourced by every scenario: r reports a line, state
// reports the environments, the entries on the ESP and bootfs.
const scenarioPrelude = `set -u
T=/efi/paczfs-test
r() { echo "<2>PACZFS-S $*" > /dev/kmsg; }
ds=$(findmnt -n -o SOURCE /); be=${ds##*/}; pool=${ds%%/*}
bootenv() { /usr/local/sbin/paczfs-bootenv "$@"; }
state() {
	bootenv list | while IFS= read -r l; do r "list $l"; done
	r "entries $(ls /efi/loader/entries | tr '\n' ' ')"
	r "bootfs $(zpool get -H -o value bootfs "$pool")"
	r "goodsnaps $(zfs list -H -t snapshot -o name -r "$pool/system" | grep @good- | sed 's|.*/||' | tr '\n' ' ')"
	r "esp env=$(du -sb "/efi/env/$be" | cut -f1) size=$(df -B1 --output=size /efi | tail -n 1 | tr -d ' ') avail=$(df -B1 --output=avail /efi | tail -n 1 | tr -d ' ')"
}
todo() { [ ! -e "$T/done-$1" ]; }
did() { touch "$T/done-$1"; sync; }
run() { out=$("$@" 2>&1); rc=$?; r "cmd $* => rc=$rc $(echo "$out" | tail -n 1)"; return $rc; }
off() { r "END poweroff"; sync; systemctl poweroff; exit 0; }
again() { r "END reboot"; sync; systemctl reboot; exit 0; }
# failing NAME: a new environment whose own health check always fails.
failing() {
	run bootenv create "$1"
	mkdir -p "/run/$1" && run bootenv mount "$1" "/run/$1"
	printf '#!/bin/sh\necho "problem: the test says this boot is bad"\nexit 1\n' > "/run/$1/etc/paczfs/health.d/50-test"
	chmod 755 "/run/$1/etc/paczfs/health.d/50-test"
	run bootenv umount "/run/$1"
}
r "boot be=$be"
`

// bootRecord is one boot of a machine.
type bootRecord struct {
	root  string   // the dataset the kernel command line named
	lines []string // the scenario's PACZFS-S lines
	took  time.Duration
	cut   bool // the host cut the power (machine.cuts)
}

func (b bootRecord) line(prefix string) string {
	for _, l := range b.lines {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}

// envState finds an environment's line of `paczfs-bootenv list`.
func (b bootRecord) env(name string) []string {
	for _, l := range b.lines {
		if f := strings.Fields(strings.TrimPrefix(l, "list ")); strings.HasPrefix(l, "list ") && len(f) > 2 && f[0] == name {
			return f
		}
	}
	return nil
}

type machine struct {
	t         *testing.T
	img, vars string
	console   *os.File
	boots     []bootRecord
	start     time.Time
	// cuts: boot number (from 1) -> the console text at which the host
	// cuts that boot's power.
	cuts map[int]string
	// disks are handed to every boot (ovmf.Options.Disks).
	disks []ovmf.Disk
	// bios boots with SeaBIOS instead of OVMF.
	bios bool
}

// newMachine copies the raw lab image and leaves the scenario on its ESP.
func newMachine(t *testing.T, dir, name, scenario string) *machine {
	img := copyRaw(t, dir, name+".raw")
	plan, err := disk.ReadGPT(img)
	require.NoError(t, err)
	esp, err := disk.OpenESP(img, plan)
	require.NoError(t, err)
	require.NoError(t, esp.MkdirAll("/paczfs-test"))
	require.NoError(t, esp.WriteFile("/paczfs-test/scenario.sh", strings.NewReader(scenarioPrelude+scenario)))
	require.NoError(t, esp.Close())
	console, err := os.Create(filepath.Join(dir, name+".console.log"))
	require.NoError(t, err)
	t.Cleanup(func() { console.Close() })
	return &machine{t: t, img: img, vars: filepath.Join(t.TempDir(), "vars.fd"), console: console, start: time.Now()}
}

// The kernel prints its command line early ("Command line:") and again
// ("Kernel command line:"): the first is there even in a boot cut short.
var cmdlineRoot = regexp.MustCompile(`[Cc]ommand line:.*root=zfs:(\S+)`)

// run boots the machine until it powers itself off, at most max boots.
func (m *machine) run(max int) {
	t := m.t
	for i := 1; i <= max; i++ {
		start := time.Now()
		transcript, err := ovmf.Boot(context.Background(), ovmf.Options{Image: m.img, Format: "raw", Writable: true,
			VarsFile: m.vars, CPUs: 1, Console: m.console, Timeout: 12 * time.Minute, CutPower: m.cuts[i], Disks: m.disks, BIOS: m.bios})
		cut := errors.Is(err, ovmf.ErrPowerCut)
		if !cut {
			require.NoError(t, err, "boot %d; console:\n%s", i, tail(transcript, 60))
		}
		rec := bootRecord{took: time.Since(start), cut: cut}
		if mt := cmdlineRoot.FindStringSubmatch(transcript); mt != nil {
			rec.root = mt[1]
		}
		for _, l := range strings.Split(transcript, "\n") {
			if j := strings.Index(l, "PACZFS-S "); j >= 0 {
				rec.lines = append(rec.lines, strings.TrimRight(l[j+len("PACZFS-S "):], "\r"))
			}
		}
		m.boots = append(m.boots, rec)
		t.Logf("boot %d: %s in %s", i, rec.root, rec.took.Round(time.Second))
		for _, l := range rec.lines {
			t.Logf("  %s", l)
		}
		if cut {
			t.Logf("  (power cut at %q)", m.cuts[i])
			continue
		}
		if strings.Contains(transcript, "reboot: Power down") {
			return
		}
		if strings.Contains(transcript, "Kernel panic") {
			t.Logf("  (boot %d ended in a kernel panic, rebooted by panic=)", i)
		}
	}
	t.Fatalf("the machine did not power itself off within %d boots", max)
}

func (m *machine) roots() []string {
	var out []string
	for _, b := range m.boots {
		out = append(out, strings.TrimPrefix(b.root, "labpool/system/"))
	}
	return out
}

// Lifecycle, good boot, one-shot, rollback, shared data, refusals:
//
//	1 default: create b, change a file in it, write /home, activate b --try 2
//	2 b (trial): it boots well, so it is blessed, the default, snapshotted;
//	  activate default --once
//	3 default (one-shot)
//	4 b (the default again): rollback b
//	5 b-rollback-<time>: from b's good snapshot
const lifecycleScenario = `case $be in
default)
	if todo setup; then
		run bootenv create b
		mkdir -p /run/b && run bootenv mount b /run/b && echo from-b > /run/b/etc/paczfs-test-marker && run bootenv umount /run/b
		echo shared-data > /home/paczfs-shared
		run bootenv destroy default
		run bootenv activate b --try 2
		date +%s > "$T/activated-at"
		state; did setup; again
	fi
	if todo once; then state; did once; again; fi
	state; off ;;
b)
	if todo trial; then
		r "marker $(cat /etc/paczfs-test-marker 2>/dev/null)"
		r "shared $(cat /home/paczfs-shared 2>/dev/null)"
		r "since-activate $(( $(date +%s) - $(cat "$T/activated-at") ))"
		state
		run bootenv destroy b
		run bootenv activate default --once
		did trial; again
	fi
	if todo rollback; then state; run bootenv rollback b; did rollback; again; fi
	state; off ;;
b-rollback-*)
	r "marker $(cat /etc/paczfs-test-marker 2>/dev/null)"
	r "shared $(cat /home/paczfs-shared 2>/dev/null)"
	state; off ;;
*) state; off ;;
esac
`

// Automatic fallback, two ways of failing, and the original README's
// bootfs workflow:
//
//	1 default: create t1 with a health check that fails, activate t1 --try 2
//	2, 3 t1: its check fails, it reboots itself (nobody acts)
//	4 default: t1 spent its tries; create t2, --try 1, then rename its
//	  dataset away (a trial whose root is gone: destroyed, or never
//	  received whole)
//	5 t2: dracut's initramfs cannot mount the root and, told by the
//	  trial's rd.shell=0 rd.emergency=reboot, reboots instead of waiting in
//	  an emergency shell
//	6 default: t2 is bad; snapshot, clone, zpool set bootfs (as the README)
//	7 clone
const fallbackScenario = `case $be in
default)
	if todo t1; then
		failing t1
		run bootenv activate t1 --try 2
		state; did t1; again
	fi
	if todo t2; then
		state
		run bootenv create t2
		run bootenv activate t2 --try 1
		run zfs rename "$pool/system/t2" "$pool/system/t2-gone"
		did t2; again
	fi
	if todo clone; then
		state
		run zfs snapshot "$pool/system/default@clone"
		run zfs clone "$pool/system/default@clone" "$pool/system/clone"
		run zpool set "bootfs=$pool/system/clone" "$pool"
		did clone; again
	fi
	state; off ;;
t1|t2) r "trial $be booted: the scenario does nothing"; state ;;
*) state; off ;;
esac
`

// TestBootEnvironmentLifecycle (make test-full): create, activate for
// good and once, rename, destroy, rollback, over five boots.
func TestBootEnvironmentLifecycle(t *testing.T) {
	// Beside the other boot tests: every boot is one emulated CPU.
	t.Parallel()
	dir := bootImages(t)
	m := newMachine(t, dir, "lab-lifecycle", lifecycleScenario)
	m.run(7)
	roots := m.roots()
	require.Len(t, roots, 5, "boots: %v", roots)
	assert.Equal(t, []string{"default", "b", "default", "b"}, roots[:4])
	assert.Regexp(t, `^b-rollback-\d{8}T\d{6}Z$`, roots[4])
	b1, b2, b3, b4, b5 := m.boots[0], m.boots[1], m.boots[2], m.boots[3], m.boots[4]
	assert.Contains(t, b1.line("cmd bootenv create b"), "rc=0")
	assert.Contains(t, b1.line("cmd bootenv destroy default"), "rc=1", "the booted default cannot be destroyed")
	assert.Contains(t, b1.line("cmd bootenv destroy default"), "refused")
	assert.Contains(t, b1.line("entries "), "paczfs-b+2.conf", "the trial's entry is counted")
	assert.Equal(t, "trying", b1.env("b")[1])
	// The trial booted well: blessed (no counter), the default, good.
	assert.Equal(t, "marker from-b", b2.line("marker"), "the file changed in b before it booted")
	assert.Equal(t, "shared shared-data", b2.line("shared"), "/home is shared by every environment")
	assert.Equal(t, "good", b2.env("b")[1])
	assert.Contains(t, b2.env("b")[2], "booted")
	assert.Contains(t, b2.env("b")[2], "default")
	assert.NotContains(t, b2.line("entries "), "+", "no counters left")
	assert.Contains(t, b2.line("entries "), "paczfs-b.conf")
	assert.Equal(t, "bootfs labpool/system/b", b2.line("bootfs"))
	assert.Regexp(t, `b@good-\d{8}T\d{6}Z`, b2.line("goodsnaps"))
	assert.Contains(t, b2.line("cmd bootenv destroy b"), "refused")
	assert.Contains(t, b2.line("cmd bootenv activate default --once"), "rc=0")
	// The one-shot boot went to default; the next to b again.
	assert.Equal(t, "good", b3.env("default")[1])
	assert.Contains(t, b3.env("b")[2], "default")
	assert.Contains(t, b4.line("cmd bootenv rollback b"), "rc=0")
	assert.Equal(t, "marker from-b", b5.line("marker"))
	assert.Equal(t, "shared shared-data", b5.line("shared"))
	assert.Contains(t, b5.env(roots[4])[2], "default")
	// Figures (printed, not asserted: emulated boots are slow).
	var since int
	fmt.Sscanf(b2.line("since-activate "), "since-activate %d", &since)
	var envBytes, espSize int64
	fmt.Sscanf(b2.line("esp "), "esp env=%d size=%d", &envBytes, &espSize)
	t.Logf("FIGURE seconds from activate to the new root running (one reboot, emulated): %d", since)
	if envBytes > 0 {
		fit := func(esp int64) int64 { return (esp - 2<<20) / envBytes } // less the loader and its files (under 2 MiB)
		t.Logf("FIGURE ESP bytes per environment: %d (%.1f MiB, the lab's dracut initramfs, hostonly=no); environments that fit: %d in this %d MiB ESP, %d in the default 550 MiB ESP",
			envBytes, float64(envBytes)/(1<<20), fit(espSize), espSize>>20, fit(550<<20))
	}
}

// TestBootEnvironmentFallback (make test): two trials that fail (a failing
// health check, a root the initramfs cannot mount) fall back by themselves; zpool set bootfs
// followed by a reboot boots that dataset.
func TestBootEnvironmentFallback(t *testing.T) {
	t.Parallel()
	dir := bootImages(t)
	m := newMachine(t, dir, "lab-fallback", fallbackScenario)
	m.run(9)
	roots := m.roots()
	require.Equal(t, []string{"default", "t1", "t1", "default", "t2", "default", "clone"}, roots,
		"t1 (2 tries, failing check) and t2 (1 try, root not mountable) each fall back after tries+1 boots, with no input")
	b1, b4, b6, b7 := m.boots[0], m.boots[3], m.boots[5], m.boots[6]
	assert.Contains(t, b1.line("entries "), "paczfs-t1+2.conf")
	// After t1's two failed tries: its counters as systemd documents
	// them (+0-2), marked bad, and bootfs never left default.
	assert.Contains(t, b4.line("entries "), "paczfs-t1+0-2.conf")
	assert.Equal(t, "bad", b4.env("t1")[1])
	assert.Equal(t, "bootfs labpool/system/default", b4.line("bootfs"))
	assert.Empty(t, m.boots[4].line("boot be="), "t2 never reached its root")
	assert.Contains(t, b6.line("entries "), "paczfs-t2+0-1.conf", "t2's one try spent")
	assert.Nil(t, b6.env("t2"), "no dataset: its entry, spent, is never booted again")
	assert.Contains(t, b6.line("cmd zpool set"), "rc=0")
	// The hand-made clone booted: bootfs was followed at shutdown.
	assert.Contains(t, b7.line("entries "), "paczfs-clone.conf")
	assert.Contains(t, b7.line("entries "), "paczfs-t1+0-2.conf", "a spent trial keeps its counters when another starts")
	assert.Equal(t, "good", b7.env("clone")[1])
	assert.Contains(t, b7.env("clone")[2], "default")
	// Boots from activation until the default runs again.
	t.Logf("FIGURE boots to fall back: t1 (2 tries, failing check) %d, t2 (1 try, root not mountable) %d; target N+1", back(roots, 0), back(roots, 3))
}

// back counts the boots after the one at index from until the default
// boots again (that boot included).
func back(roots []string, from int) int {
	for i := from + 1; i < len(roots); i++ {
		if roots[i] == "default" {
			return i - from
		}
	}
	return -1
}

// Boot environments under legacy BIOS (SeaBIOS, SYSLINUX from the same
// ESP), where a trial is SYSLINUX's boot-once with one try:
//
//	1 default: create t1 with a health check that fails, activate t1 --try 1
//	2 t1: its check fails, it reboots itself (nobody acts)
//	3 default: SYSLINUX's DEFAULT; t1 is bad; create b, activate b --try 1
//	4 b: boots well, is blessed and becomes SYSLINUX's DEFAULT
//	5 b: a plain reboot boots the new default
const biosScenario = `r "firmware $([ -d /sys/firmware/efi ] && echo uefi || echo bios)"
r "syslinux $(grep '^DEFAULT' /efi/syslinux/syslinux.cfg)"
case $be in
default)
	if todo t1; then
		failing t1
		run bootenv activate t1 --try 1
		state; did t1; again
	fi
	if todo b; then
		state
		run bootenv create b
		run bootenv activate b --try 1
		did b; again
	fi
	state; off ;;
t1) r "trial $be booted: the scenario does nothing"; state ;;
b)
	if todo plain; then state; did plain; again; fi
	state; off ;;
*) state; off ;;
esac
`

// TestBootLegacyBIOSTrial (make test-full): the raw image's machine under
// SeaBIOS: a failing trial falls back by itself (SYSLINUX's boot-once),
// a good one becomes SYSLINUX's default.
func TestBootLegacyBIOSTrial(t *testing.T) {
	t.Parallel()
	dir := bootImages(t)
	m := newMachine(t, dir, "lab-bios", biosScenario)
	m.bios = true
	m.run(7)
	roots := m.roots()
	require.Equal(t, []string{"default", "t1", "default", "b", "b"}, roots,
		"t1 (one try, failing check) falls back with no input; b is tried once and kept")
	b1, b3, b4, b5 := m.boots[0], m.boots[2], m.boots[3], m.boots[4]
	for _, i := range []int{0, 2, 3, 4} {
		assert.Equal(t, "firmware bios", m.boots[i].line("firmware "), "boot %d", i+1)
	}
	assert.Empty(t, m.boots[1].line("firmware "), "the trial's failed check rebooted it before the scenario ran")
	assert.Contains(t, b1.line("cmd bootenv activate t1"), "rc=0")
	assert.Contains(t, b1.line("entries "), "paczfs-t1+0-1.conf", "one try, counted when armed")
	assert.Equal(t, "syslinux DEFAULT default", b3.line("syslinux "))
	assert.Equal(t, "bad", b3.env("t1")[1])
	assert.Equal(t, "bootfs labpool/system/default", b3.line("bootfs"))
	assert.Equal(t, "syslinux DEFAULT b", b4.line("syslinux "), "the good trial is blessed: SYSLINUX's default")
	assert.Equal(t, "good", b4.env("b")[1])
	assert.Contains(t, b4.env("b")[2], "default")
	assert.Equal(t, "bootfs labpool/system/b", b4.line("bootfs"))
	assert.NotContains(t, b4.line("entries "), "paczfs-b+", "no counters left")
	assert.Contains(t, b5.env("b")[2], "booted")
}

// TestBootScenariosAreValidShell (make test): every scenario the
// multi-boot tests leave on an ESP parses (dash -n, the lab image's
// /bin/sh), so a slip shows in seconds, not after a boot of minutes.
func TestBootScenariosAreValidShell(t *testing.T) {
	dash, err := exec.LookPath("dash")
	require.NoError(t, err, "dash (Debian's /bin/sh)")
	for name, s := range map[string]string{"lifecycle": lifecycleScenario, "fallback": fallbackScenario, "bios": biosScenario,
		"release": releaseScenario, "power-cut": powerCutScenario} {
		f := filepath.Join(t.TempDir(), name+".sh")
		require.NoError(t, os.WriteFile(f, []byte(scenarioPrelude+s), 0o644))
		out, err := exec.Command(dash, "-n", f).CombinedOutput()
		assert.NoError(t, err, "%s: %s", name, out)
	}
}

package main

import (
	"bytes"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/paczfs/paczfs/disk"
	"github.com/paczfs/paczfs/hooks"
	"github.com/paczfs/paczfs/image"
	"github.com/paczfs/paczfs/pacman"
)

func pkgEvent(e pacman.Event) image.Progress {
	return image.Progress{Kind: image.PackageEvent, Package: &e}
}

func feedBase(r *reporter) {
	r.handle(image.Progress{Kind: image.StageStarted, Stage: hooks.StageBase})
	r.handle(pkgEvent(pacman.Event{Kind: pacman.EventDownloadStart, File: "bash.pkg.tar.zst"}))
	r.handle(pkgEvent(pacman.Event{Kind: pacman.EventDownloadStart, File: "less.pkg.tar.zst"}))
	r.handle(pkgEvent(pacman.Event{Kind: pacman.EventDownloadProgress, File: "bash.pkg.tar.zst", Bytes: 1 << 20, Total: 2 << 20}))
	r.handle(pkgEvent(pacman.Event{Kind: pacman.EventDownloadProgress, File: "less.pkg.tar.zst", Bytes: 0, Total: 2 << 20}))
	r.handle(pkgEvent(pacman.Event{Kind: pacman.EventDownloadDone, File: "bash.pkg.tar.zst", Bytes: 2 << 20, Total: 2 << 20}))
	r.handle(pkgEvent(pacman.Event{Kind: pacman.EventDownloadDone, File: "less.pkg.tar.zst", Bytes: 2 << 20, Total: 2 << 20}))
	r.handle(pkgEvent(pacman.Event{Kind: pacman.EventCheck, Message: "checking package integrity", Current: 1, Count: 2, Percent: 40}))
	r.handle(pkgEvent(pacman.Event{Kind: pacman.EventInstall, Package: "bash", Current: 1, Count: 2, Percent: 50}))
	r.handle(pkgEvent(pacman.Event{Kind: pacman.EventInstalled, Package: "bash", Version: "5.2.037-1"}))
	r.handle(pkgEvent(pacman.Event{Kind: pacman.EventScriptlet, Message: "generating locales\n"}))
	r.handle(pkgEvent(pacman.Event{Kind: pacman.EventLog, Level: "warning", Message: "directory permissions differ\n"}))
	r.handle(pkgEvent(pacman.Event{Kind: pacman.EventInstalled, Package: "less", Version: "668-1"}))
	r.handle(pkgEvent(pacman.Event{Kind: pacman.EventHook, Package: "60-depmod", Message: "Updating module dependencies...", Current: 1, Count: 2}))
	r.handle(image.Progress{Kind: image.Message, Stage: hooks.StageBase, Message: "warning: something"})
	r.handle(image.Progress{Kind: image.StageFinished, Stage: hooks.StageBase, Took: 12340 * time.Millisecond})
}

func TestPlainProgressLines(t *testing.T) {
	var out bytes.Buffer
	r := newReporter(&out, false, false, 0)
	feedBase(r)
	r.finish()
	assert.Equal(t, `[base] started
[base] installed bash 5.2.037-1
[base] pacman warning: directory permissions differ
[base] installed less 668-1
[base] warning: something
[base] done in 12.3s (downloaded 2 files, 4.0 MiB)
`, out.String())
}

func TestVerboseProgressShowsScriptletsAndNoBar(t *testing.T) {
	var out bytes.Buffer
	r := newReporter(&out, true, true, 80)
	feedBase(r)
	assert.Contains(t, out.String(), "[base]   generating locales\n")
	assert.NotContains(t, out.String(), "\r")
}

// TestTerminalViewFollowsLibalpm: what the bar shows at each step.
func TestTerminalViewFollowsLibalpm(t *testing.T) {
	r := newReporter(&syncBuffer{}, true, false, 100)
	defer r.finish()
	step := func(e pacman.Event) view {
		r.handle(pkgEvent(e))
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.view()
	}
	r.handle(image.Progress{Kind: image.StageStarted, Stage: hooks.StageBase})
	step(pacman.Event{Kind: pacman.EventDownloadStart, File: "bash.pkg.tar.zst"})
	step(pacman.Event{Kind: pacman.EventDownloadStart, File: "less.pkg.tar.zst"})
	step(pacman.Event{Kind: pacman.EventDownloadProgress, File: "bash.pkg.tar.zst", Bytes: 1 << 20, Total: 2 << 20})
	v := step(pacman.Event{Kind: pacman.EventDownloadProgress, File: "less.pkg.tar.zst", Bytes: 0, Total: 2 << 20})
	assert.Equal(t, view{stage: hooks.StageBase, started: v.started, head: "  downloading 0/2 files 1.0 MiB/4.0 MiB  25%", frac: 0.25, hasBar: true}, v)
	v = step(pacman.Event{Kind: pacman.EventCheck, Message: "checking package integrity", Current: 1, Count: 2, Percent: 40})
	assert.Equal(t, "  checking package integrity", v.head, "signature checks show, not the last download")
	assert.InDelta(t, 0.4, v.frac, 1e-9)
	v = step(pacman.Event{Kind: pacman.EventInstall, Package: "bash", Current: 1, Count: 2, Percent: 50})
	assert.Equal(t, [2]string{"  installing 1/2", "bash"}, [2]string{v.head, v.tail})
	assert.InDelta(t, 0.25, v.frac, 1e-9)
	v = step(pacman.Event{Kind: pacman.EventHook, Package: "60-depmod", Message: "Updating module dependencies...", Current: 1, Count: 2})
	assert.Equal(t, "  hook 1/2 Updating module dependencies", v.head, "after the last package, the running hook shows")
	assert.False(t, v.hasBar, "a hook has no fraction: no bar")
}

// TestTerminalProgressDrawsTheBarAndLinesAbove runs mpb on a buffer: the
// bar appears while the stage runs, the other lines are printed whole,
// and nothing of the bar is drawn after finish.
func TestTerminalProgressDrawsTheBarAndLinesAbove(t *testing.T) {
	var out syncBuffer
	r := newReporter(&out, true, false, 100)
	r.handle(image.Progress{Kind: image.StageStarted, Stage: hooks.StageBase})
	r.handle(pkgEvent(pacman.Event{Kind: pacman.EventDownloadProgress, File: "bash.pkg.tar.zst", Bytes: 1 << 20, Total: 4 << 20}))
	require.Eventually(t, func() bool {
		return strings.Contains(out.String(), "[base] ") && strings.Contains(out.String(), "downloading 0/1 files 1.0 MiB/4.0 MiB  25% [#####")
	}, 5*time.Second, 10*time.Millisecond, "%q", out.String())
	feedBase(r)
	r.finish()
	s := out.String()
	assert.Contains(t, s, "[base] warning: something\n")
	assert.Contains(t, s, "[base] pacman warning: directory permissions differ\n")
	assert.Contains(t, s, "[base] done in 12.3s (downloaded 2 files, 4.0 MiB)\n")
	assert.NotContains(t, s, "installed bash", "installed packages show in the bar only")
	n := len(out.String())
	r.handle(image.Progress{Kind: image.Message, Stage: hooks.StageBase, Message: "after"})
	time.Sleep(300 * time.Millisecond)
	assert.Equal(t, "[base] after\n", out.String()[n:], "after finish, lines go straight to the output and no bar is drawn")
	for _, l := range strings.Split(s, "\n") {
		assert.LessOrEqual(t, len([]rune(stripCSI(l))), 100, "%q", l)
	}
}

// stripCSI drops terminal control sequences (ESC [ ... letter) and \r.
func stripCSI(s string) string {
	return csi.ReplaceAllString(s, "")
}

var csi = regexp.MustCompile("\x1b\\[[0-9;?]*[A-Za-z]|\r")

func TestHumanSizes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 5 << 20: "5.0 MiB", 3 << 30: "3.0 GiB", 2 << 40: "2.0 TiB"} {
		assert.Equal(t, want, human(n))
	}
}

func TestSummaryListsStagesOutputsAndEnvironments(t *testing.T) {
	var out bytes.Buffer
	printSummary(&out, &image.Result{
		Disk:    "./paczfs-1.img",
		Outputs: []image.Output{{Format: image.VDI, Path: "./x.vdi"}},
		Stages: []image.StageTiming{
			{Stage: hooks.StageChecks, Took: 400 * time.Millisecond},
			{Stage: hooks.StageSystem, Took: 2 * time.Second, Hooks: []string{"script /h/after-system.sh"}},
			{Stage: hooks.StageConvert, Took: time.Second, Replaced: "script /h/replace-convert"},
		},
		Took:         3400 * time.Millisecond,
		Environments: []string{"zroot/system/default", "zroot/system/bootable"},
		Kernel:       "6.12.1-1-lts",
		HostID:       "0a1b2c3d",
		Warnings:     []string{"no way to log in"},
	})
	assert.Equal(t, `stage    seconds  replaced by / hooks
checks   0.4      
system   2.0      hooks: script /h/after-system.sh
convert  1.0      replaced by script /h/replace-convert
total    3.4      

disk: ./paczfs-1.img
output (vdi): ./x.vdi
boot environments:
  zroot/system/default
  zroot/system/bootable
kernel 6.12.1-1-lts, hostid 0a1b2c3d, 0 packages
warning: no way to log in
`, out.String())
}

func TestDryRunPlanPrintout(t *testing.T) {
	s := load(t, "WORKSTATION_PKGS=()\nVDI_FILE='./vm.vdi'\n", map[string]string{"HOSTNAME": "web"})
	cfg := config(t, s)
	dplan, err := disk.DefaultLayout(cfg.ESPSize, cfg.SwapSize, cfg.PoolName).Plan(cfg.Size)
	require.NoError(t, err)
	plan := &image.BuildPlan{
		Disk:            dplan,
		PoolCommand:     []string{"zpool", "create", "-R", "/ALTROOT", "-t", "zroot-paczfs-abc", "zroot", "/dev/DISK-zfs-partition"},
		DatasetCommands: [][]string{{"zfs", "create", "-p", "-o", "mountpoint=/", "zroot-paczfs-abc/system/default"}},
		Packages: &pacman.Plan{Packages: []pacman.PlannedPackage{
			{Name: "bash", Version: "5.2.037-1", Repo: "core", DownloadSize: 2 << 20, InstalledSize: 9 << 20},
			{Name: "less", Version: "1:668-1", Repo: "core", DownloadSize: 0, InstalledSize: 400 << 10},
		}, DownloadSize: 2 << 20, InstalledSize: 9<<20 + 400<<10},
		Environments: []string{"zroot/system/default", "zroot/system/bootable"},
		Modules: []image.ModuleChoice{{Pair: image.ModulePair{Kernel: "linux-lts", Module: "zfs-linux-lts", Fallback: []string{"zfs-dkms", "linux-lts-headers"}},
			Kernel: "6.12.41-1", Needs: "6.12.40-1", Fallback: true, Why: "zfs-linux-lts is built for linux-lts 6.12.40-1, but core has 6.12.41-1"}},
	}
	scripts := []hooks.Script{{Path: "/h/after-system.target.sh", AtStage: hooks.StageSystem, Position: hooks.After, InTarget: true}}
	var out bytes.Buffer
	printPlan(&out, s, cfg, plan, scripts)
	text := out.String()
	for _, want := range []string{
		"target: image file ./paczfs-1700000000.img (20G, sparse)\n",
		"partition table:\n  disk 20G (",
		"\n  zpool create -R /ALTROOT -t zroot-paczfs-abc zroot /dev/DISK-zfs-partition\n",
		"\n  zfs create -p -o mountpoint=/ zroot-paczfs-abc/system/default\n",
		"packages (2):\n  name  version    repo  download  installed\n  bash  5.2.037-1  core  2.0 MiB   9.0 MiB\n  less  1:668-1    core  0 B       400.0 KiB\n",
		"  total: download 2.0 MiB (what the caches hold counts 0), installed 9.4 MiB\n",
		"boot environments:\n  zroot/system/default\n  zroot/system/bootable\n",
		"kernel modules:\n  zfs-dkms linux-lts-headers: zfs-linux-lts is built for linux-lts 6.12.40-1, but core has 6.12.41-1\n",
		"outputs:\n  raw ./paczfs-1700000000.img (the image itself)\n  vdi ./vm.vdi\n",
		"hooks:\n  after-system: /h/after-system.target.sh (in the target)\n",
		"settings not from the profile:\n  VDI_FILE from test.conf:2\n  WORKSTATION_PKGS from test.conf:1\n  HOSTNAME from environment\n",
		"dry run: nothing was written\n",
	} {
		assert.Contains(t, text, want)
	}
}

// syncBuffer is a bytes.Buffer safe for the ticker and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

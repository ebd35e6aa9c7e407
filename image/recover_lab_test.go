//go:build lab

package image_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/paczfs/paczfs/disk"
	"github.com/paczfs/paczfs/hooks"
	"github.com/paczfs/paczfs/image"
	"github.com/paczfs/paczfs/internal/labtest"
	"github.com/paczfs/paczfs/internal/procs"
	"github.com/paczfs/paczfs/pacman"
)

// The build process of these tests is this test binary run again with
// PACZFS_TEST_BUILD naming a JSON configuration: TestLabHelperBuild builds
// it, printing "STAGE <name>" when a stage has done its work (an After
// hook) and "PACKAGE" at the first package libalpm extracts in the base
// stage and "CONVERTING" at the first progress of an output, then sleeps
// at PACZFS_TEST_PAUSE (a stage, "package" or "converting") until killed.
func TestLabHelperBuild(t *testing.T) {
	file := os.Getenv("PACZFS_TEST_BUILD")
	if file == "" {
		t.Skip("the build process of TestLabKill*: run only by them")
	}
	data, err := os.ReadFile(file)
	require.NoError(t, err)
	var cfg image.Config
	require.NoError(t, json.Unmarshal(data, &cfg))
	pause := os.Getenv("PACZFS_TEST_PAUSE")
	var hs []hooks.Hook
	for _, s := range hooks.Stages() {
		hs = append(hs, hooks.Func("report", s, hooks.After, func(ctx context.Context, st *hooks.State) error {
			fmt.Printf("STAGE %s\n", s)
			if string(s) == pause {
				time.Sleep(time.Hour)
			}
			return nil
		}))
	}
	first, converting := true, false
	var stage hooks.Stage
	b, err := image.New(cfg, image.WithHooks(hs...), image.WithProgress(func(p image.Progress) {
		if p.Kind == image.StageStarted {
			stage = p.Stage
		}
		// The first progress of an output: its conversion has begun.
		if p.Kind == image.Message && p.Stage == hooks.StageConvert && !converting {
			converting = true
			fmt.Println("CONVERTING")
			if pause == "converting" {
				time.Sleep(time.Hour)
			}
		}
		// The first package libalpm extracts in the base stage: the
		// checks stage's planning sends package events too.
		if p.Kind == image.PackageEvent && stage == hooks.StageBase && p.Package.Kind == pacman.EventInstall && first {
			first = false
			fmt.Println("PACKAGE")
			if pause == "package" {
				time.Sleep(time.Hour)
			}
		}
	}))
	require.NoError(t, err)
	_, err = b.Build(context.Background())
	require.NoError(t, err)
	fmt.Println("BUILT")
}

// startBuild runs the helper on cfg and returns it with a channel of its
// output lines.
func startBuild(t *testing.T, cfg image.Config, pause string) (*exec.Cmd, <-chan string) {
	data, err := json.Marshal(cfg)
	require.NoError(t, err)
	file := filepath.Join(t.TempDir(), "cfg.json")
	require.NoError(t, os.WriteFile(file, data, 0o644))
	cmd := exec.Command(os.Args[0], "-test.run=^TestLabHelperBuild$", "-test.v", "-test.timeout=20m")
	cmd.Env = append(os.Environ(), "PACZFS_TEST_BUILD="+file, "PACZFS_TEST_PAUSE="+pause)
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.Stderr = cmd.Stdout
	require.NoError(t, cmd.Start())
	lines := make(chan string, 1000)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	return cmd, lines
}

// waitFor reads lines until one equals want.
func waitFor(t *testing.T, lines <-chan string, want string) {
	t.Helper()
	timeout := time.After(15 * time.Minute)
	for {
		select {
		case l, ok := <-lines:
			require.True(t, ok, "the build ended before %q", want)
			if strings.TrimSpace(l) == want {
				return
			}
		case <-timeout:
			t.Fatalf("no %q within 15 minutes", want)
		}
	}
}

// killCfg is the small profile at its own paths.
func killCfg(t *testing.T, dir, name string) image.Config {
	cfg := smallProfile(t)
	cfg.ImageFile = filepath.Join(dir, name+".img")
	cfg.WorkDir = filepath.Join(dir, name+"-work")
	cfg.PoolName = "killpool"
	return cfg
}

// assertReleased checks that nothing of a build on cfg is left: no loop
// device on its image, none of pools (nil: no pool of its name at all)
// imported, no mount or process under its work directory, no partial image.
func assertReleased(t *testing.T, cfg image.Config, pools []string) {
	t.Helper()
	loops, _ := disk.AttachedLoops(cfg.ImageFile)
	assert.Empty(t, loops, "loop devices")
	out, _ := exec.Command("zpool", "list", "-H", "-o", "name").Output()
	for _, p := range strings.Fields(string(out)) {
		if pools == nil {
			assert.False(t, strings.HasPrefix(p, cfg.PoolName+"-paczfs-"), "pool %s still imported", p)
		} else {
			assert.NotContains(t, pools, p, "pool still imported")
		}
	}
	assert.Empty(t, labtest.Mounts(cfg.WorkDir), "mounts under the work directory")
	assert.Empty(t, procs.Find(cfg.WorkDir), "processes holding the work directory")
	assert.Empty(t, procs.WithArgUnder(cfg.WorkDir), "processes of the build (gpg-agent...)")
	_, err := os.Stat(cfg.ImageFile)
	assert.ErrorIs(t, err, os.ErrNotExist, "the partial image")
}

// TestLabKillDuringEachStageThenRecover kills the build (SIGKILL, the
// process alone, as the OOM killer does) once each acquiring stage has
// done its work, and in the middle of the base stage's transaction;
// image.Recover must release everything it left, and a build to the same
// paths then succeeds.
func TestLabKillDuringEachStageThenRecover(t *testing.T) {
	labtest.Require(t)
	dir := t.TempDir()
	// "base" is killed during the base stage: in libalpm's transaction,
	// with the API mounts and the chroot of its scriptlets.
	// "convert" is killed while its two outputs are written: the QCOW2
	// in the build's process, the VDI by a qemu-img that outlives it.
	for _, at := range []string{"target", "partition", "pool", "datasets", "pacman", "base", "finalize", "convert"} {
		t.Run(at, func(t *testing.T) {
			cfg := killCfg(t, dir, "kill")
			pause := at
			switch at {
			case "base":
				pause = "package"
			case "convert":
				pause = "converting"
				cfg.Outputs = []image.Output{{Format: image.QCOW2, Path: filepath.Join(dir, "kill.qcow2")},
					{Format: image.VDI, Path: filepath.Join(dir, "kill.vdi")}}
			}
			cmd, lines := startBuild(t, cfg, pause)
			switch at {
			case "base":
				waitFor(t, lines, "PACKAGE")
			case "convert":
				waitFor(t, lines, "CONVERTING")
				partial, err := filepath.Glob(filepath.Join(dir, ".kill.*.partial"))
				require.NoError(t, err)
				require.Len(t, partial, 2, "each output is written to a partial file")
			default:
				waitFor(t, lines, "STAGE "+at)
			}
			require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
			_ = cmd.Wait()
			got, err := image.Recover(context.Background(), image.RecoverLogger(labtest.Logger(t)))
			require.NoError(t, err)
			var released []string
			for _, r := range got {
				if r.PID == cmd.Process.Pid {
					released = r.Released
				}
			}
			t.Logf("killed after %s; recovery released: %s", at, strings.Join(released, "; "))
			if at != "target" {
				assert.NotEmpty(t, released, "something was held")
			}
			assertReleased(t, cfg, nil)
			for _, o := range cfg.Outputs {
				assert.NoFileExists(t, o.Path)
			}
			partial, err := filepath.Glob(filepath.Join(dir, ".kill.*.partial"))
			require.NoError(t, err)
			assert.Empty(t, partial, "partial outputs")
			assert.Empty(t, procs.WithArgUnder(dir), "processes writing in the output directory (qemu-img)")
		})
	}
	// The same paths build again.
	cfg := killCfg(t, dir, "kill")
	b, err := image.New(cfg)
	require.NoError(t, err)
	_, err = b.Build(context.Background())
	require.NoError(t, err)
	labtest.AssertClean(t, cfg.ImageFile, cfg.PoolName, cfg.WorkDir)
}

// TestLabFourBuildsAtOnceOneKilled starts four builds of one pool name on
// different images; one is killed in libalpm's first transaction and
// recovered while the other three run on: they finish and the images
// validate, untouched by the recovery.
func TestLabFourBuildsAtOnceOneKilled(t *testing.T) {
	labtest.Require(t)
	dir := t.TempDir()
	type run struct {
		cfg   image.Config
		cmd   *exec.Cmd
		lines <-chan string
	}
	var runs []run
	for i := 0; i < 4; i++ {
		cfg := killCfg(t, dir, fmt.Sprintf("par%d", i))
		cfg.Pacman.CacheDirs = nil // one cache each: parallel downloads must not share files
		pause := ""
		if i == 0 {
			pause = "package"
		}
		cmd, lines := startBuild(t, cfg, pause)
		runs = append(runs, run{cfg, cmd, lines})
	}
	waitFor(t, runs[0].lines, "PACKAGE")
	require.NoError(t, runs[0].cmd.Process.Signal(syscall.SIGKILL))
	_ = runs[0].cmd.Wait()
	got, err := image.Recover(context.Background(), image.RecoverLogger(labtest.Logger(t)))
	require.NoError(t, err)
	require.Len(t, got, 1, "only the dead build is recovered")
	assert.Equal(t, runs[0].cmd.Process.Pid, got[0].PID)
	var pools []string
	for _, what := range got[0].Released {
		if p, ok := strings.CutPrefix(what, "exported pool "); ok {
			pools = append(pools, p)
		}
	}
	require.Len(t, pools, 1, "the killed build's pool was exported: %v", got[0].Released)
	t.Logf("recovery released: %s", strings.Join(got[0].Released, "; "))
	assertReleased(t, runs[0].cfg, pools)
	// The others hold theirs, untouched by the recovery (they finish
	// below); how many are imported right now depends on their stage.
	out, _ := exec.Command("zpool", "list", "-H", "-o", "name").Output()
	t.Logf("pools of the running builds after the recovery: %s", strings.Fields(string(out)))
	for _, r := range runs[1:] {
		waitFor(t, r.lines, "BUILT")
		require.NoError(t, r.cmd.Wait(), r.cfg.ImageFile)
		plan, err := disk.ReadGPT(r.cfg.ImageFile)
		require.NoError(t, err, r.cfg.ImageFile)
		_, ok := plan.Find(disk.RoleZFS)
		assert.True(t, ok, r.cfg.ImageFile)
		labtest.AssertClean(t, r.cfg.ImageFile, r.cfg.PoolName, r.cfg.WorkDir)
	}
}

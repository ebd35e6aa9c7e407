package image

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/paczfs/paczfs/boot"
	"github.com/paczfs/paczfs/disk"
	"github.com/paczfs/paczfs/hooks"
	"github.com/paczfs/paczfs/internal/testutil"
	"github.com/paczfs/paczfs/pacman"
	"github.com/paczfs/paczfs/zfs"
)

// testStateDir is where unit-test builds keep their records (not /run).
var testStateDir string

func TestMain(m *testing.M) {
	d, err := os.MkdirTemp("", "paczfs-image-test-state-")
	if err != nil {
		panic(err)
	}
	testStateDir = d
	code := m.Run()
	os.RemoveAll(d)
	os.Exit(code)
}

// hostOK pretends every tool exists and we are root, so New's host
// checks pass in unit tests.
var hostOK = withHostProbe(func(s string) (string, error) { return "/usr/bin/" + s, nil }, func() int { return 0 })

func testConfig(t *testing.T) Config {
	c := ArchProfile()
	c.ImageFile = filepath.Join(t.TempDir(), "test.img")
	c.Pacman.KeyringDir = t.TempDir() // the Arch host's keyring package is not on this one
	c.Manage.Tool = testutil.StaticTool(t)
	return c
}

// recorder is a build log shared by fake stages and hooks.
type recorder struct {
	mu    sync.Mutex
	steps []string
}

func (r *recorder) add(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.steps = append(r.steps, s)
}

// fakeStages replaces every built-in stage by one that records itself and
// registers a cleanup action, and fails at failAt.
func fakeStages(b *Builder, rec *recorder, failAt hooks.Stage) {
	b.stateDir = testStateDir
	for _, s := range hooks.Stages() {
		b.stages[s] = func(ctx context.Context, st *build) error {
			rec.add("stage " + string(s))
			st.stack.Push("release "+string(s), func(context.Context) error { rec.add("release " + string(s)); return nil })
			if s == failAt {
				return errors.New("injected failure")
			}
			return nil
		}
	}
}

func hookFunc(rec *recorder, name string, stage hooks.Stage, when hooks.When) hooks.Hook {
	return hooks.Func(name, stage, when, func(ctx context.Context, s *hooks.State) error {
		rec.add("hook " + name)
		return nil
	})
}

func TestStagesRunInOrderWithHooksAroundAndReplacing(t *testing.T) {
	rec := &recorder{}
	b, err := New(testConfig(t), hostOK, WithHooks(
		hookFunc(rec, "before-system", hooks.StageSystem, hooks.Before),
		hookFunc(rec, "after-system", hooks.StageSystem, hooks.After),
		hookFunc(rec, "my-initramfs", hooks.StageInitramfs, hooks.Replace),
	))
	require.NoError(t, err)
	fakeStages(b, rec, "")
	res, err := b.Build(context.Background())
	require.NoError(t, err)

	var want []string
	for _, s := range hooks.Stages() {
		switch s {
		case hooks.StageSystem:
			want = append(want, "hook before-system", "stage system", "hook after-system")
		case hooks.StageInitramfs:
			want = append(want, "hook my-initramfs") // the built-in does not run
		default:
			want = append(want, "stage "+string(s))
		}
	}
	for i := len(hooks.Stages()) - 1; i >= 0; i-- {
		if s := hooks.Stages()[i]; s != hooks.StageInitramfs {
			want = append(want, "release "+string(s))
		}
	}
	assert.Equal(t, want, rec.steps)
	require.Len(t, res.Stages, len(hooks.Stages()))
	assert.Equal(t, "my-initramfs", res.Stages[slicesIndex(hooks.Stages(), hooks.StageInitramfs)].Replaced)
	assert.Equal(t, []string{"before-system", "after-system"}, res.Stages[slicesIndex(hooks.Stages(), hooks.StageSystem)].Hooks)
}

func slicesIndex(s []hooks.Stage, v hooks.Stage) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

func TestFailureAtEachStageUnwindsEverythingAcquired(t *testing.T) {
	for i, stage := range hooks.Stages() {
		t.Run(string(stage), func(t *testing.T) {
			rec := &recorder{}
			b, err := New(testConfig(t), hostOK)
			require.NoError(t, err)
			fakeStages(b, rec, stage)
			_, err = b.Build(context.Background())
			var se *StageError
			require.ErrorAs(t, err, &se)
			assert.Equal(t, stage, se.Stage)
			assert.Contains(t, err.Error(), "injected failure")
			// Stages after the failure never ran; every one that ran was
			// released, last first.
			var want []string
			for _, s := range hooks.Stages()[:i+1] {
				want = append(want, "stage "+string(s))
			}
			for j := i; j >= 0; j-- {
				want = append(want, "release "+string(hooks.Stages()[j]))
			}
			assert.Equal(t, want, rec.steps)
		})
	}
}

func TestFailingHookIsNamedWithItsStage(t *testing.T) {
	rec := &recorder{}
	bad := hooks.Func("check-keys", hooks.StagePacman, hooks.After, func(context.Context, *hooks.State) error {
		return errors.New("no keys")
	})
	b, err := New(testConfig(t), hostOK, WithHooks(bad))
	require.NoError(t, err)
	fakeStages(b, rec, "")
	_, err = b.Build(context.Background())
	var se *StageError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, hooks.StagePacman, se.Stage)
	assert.Equal(t, "check-keys", se.Hook)
	assert.EqualError(t, se, "stage pacman: hook check-keys: no keys")
	assert.Contains(t, rec.steps, "release pacman")
	assert.NotContains(t, rec.steps, "stage base")
}

func TestCancelStopsBeforeTheNextStageAndStillCleansUp(t *testing.T) {
	rec := &recorder{}
	ctx, cancel := context.WithCancel(context.Background())
	stop := hooks.Func("ctrl-c", hooks.StagePool, hooks.After, func(context.Context, *hooks.State) error {
		cancel()
		return nil
	})
	b, err := New(testConfig(t), hostOK, WithHooks(stop))
	require.NoError(t, err)
	fakeStages(b, rec, "")
	_, err = b.Build(ctx)
	require.ErrorIs(t, err, context.Canceled)
	assert.NotContains(t, rec.steps, "stage datasets")
	assert.Equal(t, "release checks", rec.steps[len(rec.steps)-1])
}

func TestCleanupErrorsAreReportedNotSwallowed(t *testing.T) {
	rec := &recorder{}
	b, err := New(testConfig(t), hostOK)
	require.NoError(t, err)
	fakeStages(b, rec, "")
	b.stages[hooks.StagePool] = func(ctx context.Context, st *build) error {
		st.stack.Push("export pool zroot", func(context.Context) error { return errors.New("pool is busy") })
		return nil
	}
	_, err = b.Build(context.Background())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "cleanup export pool zroot: pool is busy")
}

func TestPartialImageRemovedUnlessKept(t *testing.T) {
	for _, keep := range []bool{false, true} {
		cfg := testConfig(t)
		b, err := New(cfg, hostOK, WithKeepOnFailure(keep))
		require.NoError(t, err)
		fakeStages(b, &recorder{}, hooks.StageBase)
		b.stages[hooks.StageTarget] = func(ctx context.Context, st *build) error {
			st.target = &targetInfo{path: cfg.ImageFile, created: true}
			return os.WriteFile(cfg.ImageFile, []byte("partial"), 0o644)
		}
		_, err = b.Build(context.Background())
		require.Error(t, err)
		_, statErr := os.Stat(cfg.ImageFile)
		if keep {
			assert.NoError(t, statErr, "kept on request")
		} else {
			assert.ErrorIs(t, statErr, os.ErrNotExist, "partial image removed")
		}
	}
}

// An existing file that this build did not create is never removed, even
// when the build fails.
func TestExistingFileIsNotRemovedOnFailure(t *testing.T) {
	cfg := testConfig(t)
	require.NoError(t, os.WriteFile(cfg.ImageFile, []byte("precious"), 0o644))
	cfg.Overwrite = true
	b, err := New(cfg, hostOK)
	require.NoError(t, err)
	fakeStages(b, &recorder{}, hooks.StagePartition)
	b.stages[hooks.StageTarget] = func(ctx context.Context, st *build) error {
		st.target = &targetInfo{path: cfg.ImageFile, created: false}
		return nil
	}
	_, err = b.Build(context.Background())
	require.Error(t, err)
	data, _ := os.ReadFile(cfg.ImageFile)
	assert.Equal(t, "precious", string(data))
}

func TestBadInputFailsAtNewWithFieldAndFix(t *testing.T) {
	dir := t.TempDir()
	existing := filepath.Join(dir, "exists.img")
	require.NoError(t, os.WriteFile(existing, nil, 0o644))
	script := filepath.Join(dir, "after-system.sh")
	require.NoError(t, os.WriteFile(script, []byte("#!/bin/sh\n"), 0o644)) // not executable
	cases := []struct {
		name  string
		edit  func(*Config)
		opts  []Option
		field string
		is    error
	}{
		{"no target", func(c *Config) { c.ImageFile = "" }, nil, "image_file", nil},
		{"two targets", func(c *Config) { c.BlockDevice = "/dev/sdz" }, nil, "block_device", nil},
		{"zero size", func(c *Config) { c.Size = 0 }, nil, "size", nil},
		{"too small", func(c *Config) { c.Size = 600 * disk.MiB }, nil, "size", nil},
		{"tiny esp", func(c *Config) { c.ESPSize = 8 * disk.MiB }, nil, "esp_size", nil},
		{"bad pool name", func(c *Config) { c.PoolName = "1pool" }, nil, "pool_name", nil},
		{"reserved pool name", func(c *Config) { c.PoolName = "mirror" }, nil, "pool_name", nil},
		{"bad dataset", func(c *Config) { c.Datasets = append(c.Datasets, zfs.DatasetSpec{Name: "data/bad@name"}) }, nil, "datasets", nil},
		{"root not in layout", func(c *Config) { c.RootDataset = "system/other" }, nil, "root_dataset", nil},
		{"unknown environment", func(c *Config) { c.BootEnvironments = []string{"rescue"} }, nil, "boot_environments[0]", nil},
		{"bad package name", func(c *Config) { c.Packages.Base = []string{"base", "two words"} }, nil, "packages.base", nil},
		{"no bootable", func(c *Config) { c.Packages.Bootable = nil }, nil, "packages.bootable", nil},
		{"existing output", func(c *Config) { c.ImageFile = existing }, nil, "image_file", nil},
		{"missing directory", func(c *Config) { c.ImageFile = filepath.Join(dir, "no/such/x.img") }, nil, "image_file", nil},
		{"output is the image", func(c *Config) { c.Outputs = []Output{{Format: Raw, Path: c.ImageFile}} }, nil, "outputs[0].path", nil},
		{"unknown format", func(c *Config) { c.Outputs = []Output{{Format: "iso", Path: filepath.Join(dir, "x.iso")}} }, nil, "outputs[0].format", nil},
		{"bad hostname", func(c *Config) { c.System.Hostname = "Not_A_Host" }, nil, "system.hostname", nil},
		{"bad timezone", func(c *Config) { c.System.Timezone = "../../etc/passwd" }, nil, "system.timezone", nil},
		{"unknown timezone", func(c *Config) { c.System.Timezone = "Mars/Olympus" }, nil, "system.timezone", nil},
		{"local timezone", func(c *Config) { c.System.Timezone = "Local" }, nil, "system.timezone", nil},
		{"locale name", func(c *Config) { c.System.Locales = []string{"english UTF-8"} }, nil, "system.locales[0]", nil},
		{"locale charset", func(c *Config) { c.System.Locales = []string{"de_DE.UTF-8 ISO-8859-1"} }, nil, "system.locales[0]", nil},
		{"missing trusted key file", func(c *Config) { c.Pacman.TrustedKeys = []pacman.TrustedKey{{File: filepath.Join(dir, "none.asc")}} }, nil, "pacman.trusted_keys[0].file", pacman.ErrKeyFile},
		{"trusted key file not a key", func(c *Config) { c.Pacman.TrustedKeys = []pacman.TrustedKey{{File: script}} }, nil, "pacman.trusted_keys[0].file", pacman.ErrKeyFile},
		{"relative cache dir", func(c *Config) { c.Pacman.CacheDirs = []string{"cache"} }, nil, "pacman.cache_dirs[0]", nil},
		{"cache dir is a file", func(c *Config) { c.Pacman.CacheDirs = []string{existing} }, nil, "pacman.cache_dirs[0]", nil},
		{"missing keyring dir", func(c *Config) { c.Pacman.KeyringDir = filepath.Join(dir, "nokeys") }, nil, "pacman.keyring_dir", nil},
		{"key that does not parse", func(c *Config) { c.System.AuthorizedKeys = []string{"ssh-ed25519 AAAAnotbase64 a@b"} }, nil, "system.authorized_keys[0]", nil},
		{"bad locale", func(c *Config) { c.System.Locales = []string{"en_US.UTF-8"} }, nil, "system.locales[0]", nil},
		{"bad hostid", func(c *Config) { c.System.HostID = "xyz" }, nil, "system.hostid", nil},
		{"bad key", func(c *Config) { c.System.AuthorizedKeys = []string{"hello"} }, nil, "system.authorized_keys[0]", nil},
		{"bad password hash", func(c *Config) { c.System.RootPasswordHash = "secret" }, nil, "system.root_password_hash", nil},
		{"relative work dir", func(c *Config) { c.WorkDir = "tmp" }, nil, "work_dir", nil},
		{"no device tool", func(c *Config) { c.Manage.Tool = "" }, nil, "manage.tool", nil},
		{"device tool dynamically linked", func(c *Config) { c.Manage.Tool = "/bin/sh" }, nil, "manage.tool", nil},
		{"device tool not a program", func(c *Config) { c.Manage.Tool = script }, nil, "manage.tool", nil},
		{"short watchdog", func(c *Config) { c.Manage.Watchdog = "5s" }, nil, "manage", nil},
		{"release key not a key", func(c *Config) { c.Manage.ReleaseKeys = []string{script} }, nil, "manage.release_keys[0]", nil},
		{"bad server", func(c *Config) { c.Pacman.Repos[0].Servers = []string{"ftp://x/"} }, nil, "pacman", nil},
		{"unknown hook stage", nil, []Option{WithHooks(hooks.Func("h", "unpack", hooks.After, nil))}, "hooks[0] (h)", ErrHook},
		{"unknown hook position", nil, []Option{WithHooks(hooks.Func("h", hooks.StageBase, "during", nil))}, "hooks[0] (h)", ErrHook},
		{"two replacements", nil, []Option{WithHooks(hooks.Func("a", hooks.StageBase, hooks.Replace, nil), hooks.Func("b", hooks.StageBase, hooks.Replace, nil))}, "hooks[1] (b)", ErrStageConflict},
		{"script not executable", nil, []Option{WithHooks(hooks.Script{Path: script, AtStage: hooks.StageSystem, Position: hooks.After})}, "hooks[0] (script " + script + ")", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t)
			if tc.edit != nil {
				tc.edit(&cfg)
			}
			_, err := New(cfg, append([]Option{hostOK}, tc.opts...)...)
			require.ErrorIs(t, err, ErrInvalidConfig)
			var ce *ConfigError
			require.ErrorAs(t, err, &ce)
			var fields []string
			for _, p := range ce.Problems {
				fields = append(fields, p.Field)
				assert.NotEmpty(t, p.Problem)
			}
			assert.Contains(t, fields, tc.field, "%v", err)
			if tc.is != nil {
				assert.ErrorIs(t, err, tc.is)
			}
		})
	}
}

func TestHostChecksNameMissingToolsAndRoot(t *testing.T) {
	cfg := testConfig(t)
	cfg.Outputs = []Output{{Format: QCOW2, Path: filepath.Join(t.TempDir(), "x.qcow2")}}
	probe := withHostProbe(func(s string) (string, error) {
		if s == "qemu-img" || s == "zpool" {
			return "", errors.New("not found")
		}
		return "/bin/" + s, nil
	}, func() int { return 1000 })
	_, err := New(cfg, probe)
	require.Error(t, err)
	msg := err.Error()
	for _, want := range []string{"zpool not found", "run as root"} {
		assert.Contains(t, msg, want)
	}
	assert.NotContains(t, msg, "qemu-img not found", "a zlib QCOW2 is written without qemu-img")

	cfg.Outputs = append(cfg.Outputs, Output{Format: VDI, Path: filepath.Join(t.TempDir(), "x.vdi")})
	_, err = New(cfg, probe)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "qemu-img not found")
}

func TestEnvironmentsAndESPHook(t *testing.T) {
	cfg := ArchProfile()
	envs := cfg.environments()
	require.Len(t, envs, 3)
	assert.Equal(t, bootEnv{Name: "default", Dataset: "zroot/system/default"}, envs[0])
	assert.Equal(t, bootEnv{Name: "bootable", Dataset: "zroot/system/bootable", Layer: "bootable"}, envs[1])
	hook := espHook(cfg.Boot.Kernel)
	assert.Contains(t, hook, "Target = usr/lib/modules/*/vmlinuz\n")
	assert.Contains(t, hook, "Exec = /usr/local/sbin/paczfs-update-esp\nNeedsTargets\n", "the script learns what changed")
	assert.True(t, strings.HasPrefix(updateESP(), "#!/bin/sh\n"))
	// The script runs in booted systems only: at least parse it here.
	for _, script := range []string{updateESP(), updateBootloaderScript} {
		out, err := exec.Command("sh", "-n", "-c", script).CombinedOutput()
		assert.NoError(t, err, "%s", out)
	}
}

func TestSystemFiles(t *testing.T) {
	root := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(root, "etc/skel"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(root, "etc/skel/.bashrc"), []byte("skel"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(root, "etc/shadow"), []byte("root:*:19000::::::\nbin:!:19000::::::\n"), 0o600))

	id, err := writeHostID(root, "0a0b0c0d")
	require.NoError(t, err)
	assert.Equal(t, "0a0b0c0d", id)
	raw, _ := os.ReadFile(filepath.Join(root, "etc/hostid"))
	assert.Equal(t, []byte{0x0d, 0x0c, 0x0b, 0x0a}, raw, "zgenhostid's byte order on x86_64")

	require.NoError(t, copySkel(root))
	data, _ := os.ReadFile(filepath.Join(root, "root/.bashrc"))
	assert.Equal(t, "skel", string(data))

	key := "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE5o user@host"
	require.NoError(t, setRootLogin(root, "", []string{key}))
	shadow, _ := os.ReadFile(filepath.Join(root, "etc/shadow"))
	assert.Equal(t, "root:!*:19000::::::\nbin:!:19000::::::\n", string(shadow))
	fi, err := os.Stat(filepath.Join(root, "root/.ssh/authorized_keys"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	fi, _ = os.Stat(filepath.Join(root, "root/.ssh"))
	assert.Equal(t, os.FileMode(0o700), fi.Mode().Perm())

	require.NoError(t, setRootLogin(root, "$6$salt$hash", nil))
	shadow, _ = os.ReadFile(filepath.Join(root, "etc/shadow"))
	assert.True(t, strings.HasPrefix(string(shadow), "root:$6$salt$hash:19000"))
}

func TestProgressParserReportsEachPercentOnce(t *testing.T) {
	var got []int
	p := &progressParser{report: func(n int) { got = append(got, n) }, last: -1}
	for _, chunk := range []string{"    (0.00/100%)\r", "    (1.01/1", "00%)\r    (1.50/100%)\r", "    (100.00/100%)\n"} {
		_, _ = p.Write([]byte(chunk))
	}
	assert.Equal(t, []int{0, 1, 100}, got)
}

func TestWithoutHostChecksNewAcceptsButBuildRefuses(t *testing.T) {
	noHost := withHostProbe(func(s string) (string, error) { return "", errors.New("not found") }, func() int { return 1000 })
	b, err := New(testConfig(t), noHost, WithHostChecks(false))
	require.NoError(t, err)
	assert.NotEmpty(t, b.HostProblems())
	fakeStages(b, &recorder{}, "")
	_, err = b.Build(context.Background())
	require.ErrorIs(t, err, ErrInvalidConfig)
	assert.Contains(t, err.Error(), "run as root")
}

// A Config survives JSON (how an image records it in
// /etc/paczfs/config.json, and how a profile of one's own is kept).
func TestConfigRoundTripsThroughJSON(t *testing.T) {
	c := ArchProfile()
	c.ImageFile = "/var/tmp/x.img"
	c.GUIDSeed = "seed"
	c.Outputs = []Output{{Format: QCOW2, Path: "/var/tmp/x.qcow2", Compression: CompressZstd}}
	c.System.Files = map[string]string{"/etc/motd": "hi\n"}
	data, err := json.Marshal(c)
	require.NoError(t, err)
	var back Config
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	require.NoError(t, dec.Decode(&back))
	assert.Equal(t, c, back)
}

// The stage order is paczfs's: changing a returned list changes nothing.
func TestStagesCannotBeChangedByCallers(t *testing.T) {
	s := hooks.Stages()
	s[0], s[1] = s[1], s[0]
	assert.Equal(t, hooks.StageChecks, hooks.Stages()[0])
	m := hooks.OriginalHooks()
	delete(m, "clean-up")
	assert.Len(t, hooks.OriginalHooks(), 29)
}

// A stage cancelled while a command ran fails with both: the context's
// error and the command's *CmdError stay reachable.
func TestCancelledStageKeepsTheCommandError(t *testing.T) {
	b, err := New(testConfig(t), hostOK)
	require.NoError(t, err)
	fakeStages(b, &recorder{}, "")
	ctx, cancel := context.WithCancel(context.Background())
	b.stages[hooks.StagePool] = func(ctx context.Context, st *build) error {
		cancel()
		return &hooks.CmdError{Args: []string{"zpool", "create"}, ExitCode: -1, Err: context.Canceled}
	}
	_, err = b.Build(ctx)
	assert.ErrorIs(t, err, context.Canceled)
	var ce *hooks.CmdError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, "zpool", ce.Args[0])
}

// A systemd-boot upgrade updates systemd-boot on the ESP: its own hook on
// the binary (the kernel hook no longer fires on it, which rebuilt the
// initramfs and left the loader stale), and a script that runs bootctl
// update, or without bootctl replaces both copies when they differ.
func TestSystemdBootUpgradeUpdatesTheLoaderOnTheESP(t *testing.T) {
	cfg := ArchProfile()
	assert.NotContains(t, espHook(cfg.Boot.Kernel), "systemd/boot", "the initramfs is not rebuilt for a loader upgrade")
	hook := bootloaderHook(cfg.Boot.SystemdBootEFI)
	assert.Contains(t, hook, "Target = usr/lib/systemd/boot/efi/systemd-bootx64.efi\n")
	assert.Contains(t, hook, "Operation = Upgrade\n")
	assert.Contains(t, hook, "Exec = /usr/local/sbin/paczfs-update-bootloader\n")

	// The script, run as the hook would, against a directory as the ESP.
	dir := t.TempDir()
	esp, bin := filepath.Join(dir, "esp"), filepath.Join(dir, "bin")
	efi := filepath.Join(dir, "systemd-bootx64.efi")
	require.NoError(t, os.WriteFile(efi, []byte("systemd-boot 258"), 0o644))
	for _, f := range []string{"EFI/systemd/systemd-bootx64.efi", "EFI/BOOT/BOOTX64.EFI"} {
		require.NoError(t, os.MkdirAll(filepath.Dir(filepath.Join(esp, f)), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(esp, f), []byte("systemd-boot 257"), 0o644))
	}
	env := filepath.Join(dir, "boot.env")
	require.NoError(t, os.WriteFile(env, []byte("ESP="+shellQuote(esp)+"\nSYSTEMD_BOOT_EFI="+shellQuote(efi)+"\n"), 0o644))
	script := filepath.Join(dir, "paczfs-update-bootloader")
	require.NoError(t, os.WriteFile(script, []byte(updateBootloaderScript), 0o755))
	require.NoError(t, os.MkdirAll(bin, 0o755))
	// Only these tools: the ESP "is mounted", and bootctl is absent at first.
	for _, tool := range []string{"sh", "cmp", "cp", "mv", "sync", "cat"} {
		p, err := exec.LookPath(tool)
		require.NoError(t, err)
		require.NoError(t, os.Symlink(p, filepath.Join(bin, tool)))
	}
	require.NoError(t, os.WriteFile(filepath.Join(bin, "mountpoint"), []byte("#!/bin/sh\nexit 0\n"), 0o755))
	run := func() string {
		cmd := exec.Command(filepath.Join(bin, "sh"), script)
		cmd.Env = []string{"PATH=" + bin, "PACZFS_BOOT_ENV=" + env}
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s", out)
		return string(out)
	}
	out := run()
	assert.Contains(t, out, "EFI/systemd/systemd-bootx64.efi updated")
	assert.Contains(t, out, "EFI/BOOT/BOOTX64.EFI updated")
	for _, f := range []string{"EFI/systemd/systemd-bootx64.efi", "EFI/BOOT/BOOTX64.EFI"} {
		data, err := os.ReadFile(filepath.Join(esp, f))
		require.NoError(t, err)
		assert.Equal(t, "systemd-boot 258", string(data), f)
	}
	assert.Empty(t, run(), "nothing to do the second time")

	// With bootctl, bootctl decides (it never downgrades).
	require.NoError(t, os.WriteFile(filepath.Join(bin, "bootctl"), []byte("#!/bin/sh\necho \"bootctl $*\" > "+shellQuote(filepath.Join(dir, "bootctl.args"))+"\n"), 0o755))
	run()
	args, err := os.ReadFile(filepath.Join(dir, "bootctl.args"))
	require.NoError(t, err)
	assert.Equal(t, "bootctl --esp-path="+esp+" --no-variables --graceful update\n", string(args))
}

// paczfs-update-esp, run as pacman runs the hook (the changed paths on
// standard input) against a directory as the root and one as the ESP: on
// Arch it builds the initramfs only when a changed path is one
// mkinitcpio's own hook does not rebuild it for, and copies the preset's
// image ({pkgbase}) either way; without hook targets (the lab) it builds.
func TestUpdateESPBuildsOnlyWhatTheDistributionsHookDidNot(t *testing.T) {
	dir := t.TempDir()
	root, esp, bin := filepath.Join(dir, "root"), filepath.Join(dir, "esp"), filepath.Join(dir, "bin")
	writeTree(t, dir, map[string]string{
		"root/usr/lib/modules/6.12.41-1-lts/vmlinuz": "kernel 6.12.41",
		"root/usr/lib/modules/6.12.41-1-lts/pkgbase": "linux-lts\n",
		"root/boot/initramfs-linux-lts.img":          "built by mkinitcpio's hook",
		"esp/loader/entries/paczfs-default+2-1.conf": "title   Arch Linux on ZFS (default)\nsort-key paczfs-0-trial\noptions zfs=zroot/system/default rw paczfs.trial panic=10\n",
		"esp/syslinux/syslinux.cfg":                  "DEFAULT default\nINCLUDE /env/default/syslinux.cfg\n",
		"bin/findmnt":                                "#!/bin/sh\ncase \"$*\" in *FSTYPE*) echo zfs ;; *) echo zroot/system/default ;; esac\n",
		"bin/mountpoint":                             "#!/bin/sh\nexit 0\n",
		"bin/mkinitcpio":                             "#!/bin/sh\necho \"$*\" >> \"$(dirname \"$0\")/../built\"\necho \"built for $2\" > \"$4\"\n",
	}, 0o755)
	for _, tool := range []string{"sh", "sed", "sort", "tail", "cp", "mv", "rm", "mkdir", "cat", "grep", "sync", "dirname"} {
		p, err := exec.LookPath(tool)
		require.NoError(t, err)
		require.NoError(t, os.Symlink(p, filepath.Join(bin, tool)))
	}
	script := filepath.Join(dir, "paczfs-update-esp")
	require.NoError(t, os.WriteFile(script, []byte(updateESP()), 0o755))
	arch := ArchProfile().Boot
	env := func(hookTargets []string) string {
		p := filepath.Join(dir, "boot.env")
		text := "ESP=" + shellQuote(esp) + "\nKERNEL=" + shellQuote(root+arch.Kernel) + "\nINITRD=" + shellQuote(root+arch.Initrd) +
			"\nINITRAMFS_COMMAND=" + shellQuote(strings.Join(arch.InitramfsCommand, " ")) + "\nROOT_OPTIONS=" + shellQuote(strings.Join(arch.RootOptions, " ")) +
			"\nEXTRA_OPTIONS=''\nMODULES=" + shellQuote(root+"/usr/lib/modules") + "\nINITRAMFS_HOOK_TARGETS=" + shellQuote(strings.Join(hookTargets, " ")) + "\n"
		require.NoError(t, os.WriteFile(p, []byte(text), 0o644))
		return p
	}
	run := func(envFile, stdin string) string {
		cmd := exec.Command(filepath.Join(bin, "sh"), script)
		cmd.Env = []string{"PATH=" + bin, "PACZFS_BOOT_ENV=" + envFile}
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s", out)
		return string(out)
	}
	built := func() string { b, _ := os.ReadFile(filepath.Join(dir, "built")); return string(b) }
	readESP := func(p string) string {
		b, err := os.ReadFile(filepath.Join(esp, p))
		require.NoError(t, err)
		return string(b)
	}

	// A kernel upgrade: mkinitcpio's hook rebuilt the preset's image.
	out := run(env(arch.InitramfsHookTargets), "usr/lib/modules/6.12.41-1-lts/vmlinuz\nusr/lib/initcpio/install/zfs\n")
	assert.Contains(t, out, "was rebuilt by the distribution's hook; copying it")
	assert.Empty(t, built(), "no second build")
	assert.Equal(t, "built by mkinitcpio's hook", readESP("env/default/initramfs-linux-lts.img"))
	assert.Equal(t, "kernel 6.12.41", readESP("env/default/vmlinuz"))
	entry := readESP("loader/entries/paczfs-default+2-1.conf")
	assert.Contains(t, entry, "initrd  /env/default/initramfs-linux-lts.img\n")
	assert.Contains(t, entry, "version 6.12.41-1-lts\n")
	assert.Contains(t, entry, "sort-key paczfs-0-trial\n", "a trial keeps its rank")
	assert.Contains(t, entry, "options zfs=zroot/system/default rw paczfs.trial panic=10 rd.shell=0 rd.emergency=reboot\n", "and its options")
	// The SYSLINUX label beside the files, as boot.SyslinuxLabel makes it
	// from the entry.
	want, err := boot.SyslinuxLabel("default", bootenvEntry(entry))
	require.NoError(t, err)
	assert.Equal(t, string(want), readESP("env/default/syslinux.cfg"))

	// The module package alone (its extra/ directory is not one of
	// mkinitcpio's targets): built, once.
	run(env(arch.InitramfsHookTargets), "usr/lib/modules/6.12.41-1-lts/extra/zfs.ko.zst\n")
	assert.Equal(t, "-k 6.12.41-1-lts -g "+root+"/boot/initramfs-linux-lts.img\n", built())
	// The new files are written beside those the entry named (.b when
	// the name is taken) before the entry names them; those it no longer
	// names are removed.
	entry = readESP("loader/entries/paczfs-default+2-1.conf")
	e := bootenvEntry(entry)
	assert.Equal(t, "/env/default/vmlinuz.b", e.Linux)
	assert.Equal(t, []string{"/env/default/initramfs-linux-lts.img.b"}, e.Initrd)
	assert.Equal(t, "built for 6.12.41-1-lts\n", readESP(e.Initrd[0]))
	assert.Equal(t, "kernel 6.12.41", readESP(e.Linux))
	des, err := os.ReadDir(filepath.Join(esp, "env/default"))
	require.NoError(t, err)
	var files []string
	for _, de := range des {
		files = append(files, de.Name())
	}
	assert.ElementsMatch(t, []string{"vmlinuz.b", "initramfs-linux-lts.img.b", "syslinux.cfg"}, files)
	want, err = boot.SyslinuxLabel("default", bootenvEntry(entry))
	require.NoError(t, err)
	assert.Equal(t, string(want), readESP("env/default/syslinux.cfg"), "the label names the new files")

	// No hook targets (initramfs-tools in the lab): always built.
	require.NoError(t, os.Remove(filepath.Join(dir, "built")))
	run(env(nil), "usr/lib/modules/6.12.41-1-lts/vmlinuz\n")
	assert.Equal(t, "-k 6.12.41-1-lts -g "+root+"/boot/initramfs-linux-lts.img\n", built())
	e = bootenvEntry(readESP("loader/entries/paczfs-default+2-1.conf"))
	assert.Equal(t, "/env/default/vmlinuz", e.Linux, "back to the plain names")
	assert.Equal(t, []string{"/env/default/initramfs-linux-lts.img"}, e.Initrd)
	assert.NoFileExists(t, filepath.Join(esp, "env/default/vmlinuz.b"))
}

// bootenvEntry parses a loader entry's text.
func bootenvEntry(text string) boot.Entry {
	e := boot.Entry{ID: "x"}
	for _, line := range strings.Split(text, "\n") {
		k, v, _ := strings.Cut(line, " ")
		v = strings.TrimSpace(v)
		switch k {
		case "title":
			e.Title = v
		case "linux":
			e.Linux = v
		case "initrd":
			e.Initrd = append(e.Initrd, v)
		case "options":
			e.Options = strings.Fields(v)
		}
	}
	return e
}

// The ESP must hold every environment's kernel and initramfs: checked
// before any is written, with the sizes and the fix.
func TestESPRoomForEveryEnvironment(t *testing.T) {
	const MB = 1000 * 1000
	esp := ArchProfile().ESPSize
	assert.NoError(t, espRoom(esp, 120<<10, 13*MB, 150*MB, 3), "three environments with a 150 MB initramfs fit in 550 MiB")
	err := espRoom(esp, 120<<10, 13*MB, 180*MB, 3)
	require.ErrorIs(t, err, ErrESPFull)
	assert.ErrorContains(t, err, "the boot files need 553.4 MiB (3 environments, each a 12.4 MiB kernel and a 171.7 MiB initramfs, and systemd-boot twice), the 550M ESP holds about 548.9 MiB")
	assert.ErrorContains(t, err, "raise esp_size or make fewer boot_environments")
	assert.NoError(t, espRoom(esp, 120<<10, 13*MB, 180*MB, 2))
}

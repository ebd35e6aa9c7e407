package image

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/paczfs/paczfs/boot"
	"github.com/paczfs/paczfs/bootenv"
	"github.com/paczfs/paczfs/disk"
	"github.com/paczfs/paczfs/hooks"
	"github.com/paczfs/paczfs/hooks/hookstest"
	"github.com/paczfs/paczfs/internal/testutil"
	"github.com/paczfs/paczfs/release"
)

// partialID is the build's ID in an output's partial file name.
var partialID = regexp.MustCompile(`\.paczfs-[0-9a-f]{12}\.partial`)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from this run")

// transcriptRunner records commands as a reader would read them: temporary
// paths as $TMP, chrooted commands as "chroot ROOT argv" (not the mount
// script), and makes the files a real qemu-img would.
type transcriptRunner struct {
	hookstest.FakeRunner
	tmp   string
	lines []string
	// lsinit is what the initramfs lister prints ("" = a listing with
	// etc/hostid, as an mkinitcpio image with the profile's drop-in has).
	lsinit *string
}

func (r *transcriptRunner) Run(ctx context.Context, c hooks.Cmd) ([]byte, error) {
	args := c.Args
	line := hooks.QuoteArgs(args)
	if i := slices.Index(args, "paczfs-chroot"); i > 0 && args[0] == "unshare" {
		line = "chroot " + hooks.QuoteArgs(args[i+1:])
	}
	line = partialID.ReplaceAllString(strings.ReplaceAll(line, r.tmp, "$TMP"), ".paczfs-ID.partial")
	r.lines = append(r.lines, line)
	out, err := r.FakeRunner.Run(ctx, c)
	if err == nil && strings.HasPrefix(line, "chroot ") && slices.Contains(args, "lsinitcpio") {
		out = []byte("./\nbin\netc/\netc/hostid\nhooks/zfs\ninit\nusr/lib/modules/6.12.1/extramodules/zfs.ko.zst\n")
		if r.lsinit != nil {
			out = []byte(*r.lsinit)
		}
	}
	if err == nil && args[0] == "qemu-img" && args[1] == "convert" {
		err = os.WriteFile(args[len(args)-1], []byte("converted"), 0o644)
	}
	return out, err
}

// stageFixture is a build whose disk is a real image file (GPT and FAT
// written by the real stages, no root needed) with a fake loop device,
// whose pool is faked by the runner, and whose target root is a directory
// with the files the installed packages would have provided.
func stageFixture(t *testing.T, r *transcriptRunner) *build {
	tmp := t.TempDir()
	r.tmp = tmp
	cfg := ArchProfile()
	cfg.ImageFile = filepath.Join(tmp, "x.img")
	cfg.Size = 2 * disk.GiB
	cfg.SwapSize = 0
	cfg.ESPSize = 64 * disk.MiB
	cfg.Pacman.KeyringDir = tmp
	cfg.GUIDSeed = "transcript"
	cfg.Manage.Tool = testutil.StaticTool(t)
	_, pub, err := release.GenerateKey("transcript", "")
	require.NoError(t, err)
	cfg.Manage.ReleaseKeys = []string{filepath.Join(tmp, "releases.asc")}
	require.NoError(t, os.WriteFile(cfg.Manage.ReleaseKeys[0], pub, 0o644))
	cfg.System.HostID = "00c0ffee"
	cfg.Outputs = []Output{{Format: QCOW2, Path: filepath.Join(tmp, "x.qcow2"), Compression: CompressZstd}}
	b, err := New(cfg, hostOK, WithRunner(r))
	require.NoError(t, err)
	b.stateDir = testStateDir
	st := b.newBuild()
	st.workDir = filepath.Join(tmp, "work")
	st.plan = &buildPlan{Temp: "zroot-paczfs-test01"}
	tgt, err := disk.CreateImage(cfg.ImageFile, cfg.Size, disk.ImageOptions{})
	require.NoError(t, err)
	plan, err := cfg.layout().Plan(tgt.Size)
	require.NoError(t, err)
	require.NoError(t, disk.WriteGPT(tgt.Path, plan.SeededGUIDs(cfg.GUIDSeed)))
	plan, err = disk.ReadGPT(tgt.Path)
	require.NoError(t, err)
	st.target = &targetInfo{path: tgt.Path, plan: plan, created: true, size: tgt.Size, loop: &disk.Loop{Path: "/dev/loop9", Number: 9}}
	st.state.ImageFile = tgt.Path
	st.state.Device = "/dev/loop9"
	st.state.Partitions = map[string]string{"esp": "/dev/loop9p1", "zfs": "/dev/loop9p2"}
	return st
}

func fakeRoot(t *testing.T, root string) {
	writeTree(t, root, map[string]string{
		"etc/shadow":                                   "root:*:19000::::::\n",
		"usr/sbin/locale-gen":                          "",
		"usr/bin/systemctl":                            "",
		"usr/share/zoneinfo/UTC":                       "TZif",
		"usr/lib/modules/6.12.1/vmlinuz":               "kernel",
		"usr/lib/modules/6.12.1/pkgbase":               "linux-lts\n",
		"boot/initramfs-linux-lts.img":                 string(testutil.Newc("bin", "etc/", "etc/hostid", "hooks/zfs", "init")),
		"usr/lib/systemd/boot/efi/systemd-bootx64.efi": strings.Repeat("EFI", 100),
		"usr/lib/syslinux/bios/gptmbr.bin":             strings.Repeat("M", 440),
	}, 0o644)
}

// The real code of the stages that need only the runner and files runs
// here, in order, and its commands are compared with a golden transcript
// (go test ./image -run Transcript -update rewrites it). The package
// stages (libalpm) and the loop device are the lab's.
func TestStagesTranscript(t *testing.T) {
	r := &transcriptRunner{}
	st := stageFixture(t, r)
	ctx := context.Background()
	run := func(s hooks.Stage, fn stageFunc) {
		r.lines = append(r.lines, "# "+string(s))
		require.NoError(t, fn(ctx, st), "stage %s", s)
	}
	run(hooks.StageESP, stageESP)
	run(hooks.StagePool, stagePool)
	fakeRoot(t, st.state.Root)
	run(hooks.StageDatasets, stageDatasets)
	run(hooks.StageSystem, stageSystem)
	run(hooks.StageInitramfs, stageInitramfs)
	run(hooks.StageBootloader, stageBootloader)
	run(hooks.StageFinalize, stageFinalize)
	run(hooks.StageConvert, stageConvert)
	r.lines = append(r.lines, "# release")
	require.NoError(t, st.stack.Unwind(ctx))
	golden(t, "stages.golden", strings.Join(r.lines, "\n")+"\n")

	// What the real stages wrote on the ESP, read back from the image.
	esp, err := disk.OpenESP(st.target.path, st.target.plan)
	require.NoError(t, err)
	defer esp.Close()
	entry, err := esp.ReadFile("/loader/entries/paczfs-bootable.conf")
	require.NoError(t, err)
	assert.Contains(t, string(entry), "zfs=zroot/system/bootable rw")
	assert.Contains(t, string(entry), "sort-key "+bootenv.SortOther+"\n")
	entry, err = esp.ReadFile("/loader/entries/paczfs-default.conf")
	require.NoError(t, err)
	assert.Contains(t, string(entry), "sort-key "+bootenv.SortDefault+"\n", "the root environment ranks default")
	assert.Contains(t, string(entry), "initrd  /env/default/initramfs-linux-lts.img\n", "the kernel preset's image, {pkgbase} filled")
	initrd, err := esp.ReadFile("/env/default/initramfs-linux-lts.img")
	require.NoError(t, err)
	assert.Equal(t, testutil.Newc("bin", "etc/", "etc/hostid", "hooks/zfs", "init"), initrd)
	loader, err := esp.ReadFile("/loader/loader.conf")
	require.NoError(t, err)
	assert.Contains(t, string(loader), "default paczfs-*\n", "a glob, never a pinned entry (systemd#31215)")
	assert.Equal(t, "00c0ffee", st.hostID)
	// Legacy BIOS: SYSLINUX's configuration from the same entries, the
	// ESP marked for gptmbr.bin, the target's gptmbr.bin in sector 0.
	syslinux, err := esp.ReadFile(boot.SyslinuxConfig)
	require.NoError(t, err)
	assert.Contains(t, string(syslinux), "\nPROMPT 1\nTIMEOUT 30\nDEFAULT default\nINCLUDE /env/default/syslinux.cfg\nINCLUDE /env/bootable/syslinux.cfg\n")
	label, err := esp.ReadFile(boot.SyslinuxFragmentPath("bootable"))
	require.NoError(t, err)
	assert.Contains(t, string(label), "LABEL bootable\n")
	assert.Contains(t, string(label), "  APPEND zfs=zroot/system/bootable rw\n")
	assert.Equal(t, disk.AttrLegacyBIOSBootable, st.target.plan.Partitions[0].Attributes)
	f, err := os.Open(st.target.path)
	require.NoError(t, err)
	defer f.Close()
	img := make([]byte, 512)
	_, err = f.ReadAt(img, 0)
	require.NoError(t, err)
	assert.Equal(t, strings.Repeat("M", 440), string(img[:440]), "gptmbr.bin")
	assert.Equal(t, []byte{0x55, 0xaa}, img[510:512])

	// Born managed: the tool, its configuration, the units (enabled in
	// the golden transcript) and how environments boot.
	root := filepath.Join(r.tmp, "work", "root")
	tool, err := os.ReadFile(filepath.Join(root, "usr/local/sbin/paczfs-bootenv"))
	require.NoError(t, err)
	want, err := os.ReadFile(st.cfg.Manage.Tool)
	require.NoError(t, err)
	assert.Equal(t, want, tool)
	for name := range bootenv.Units() {
		assert.FileExists(t, filepath.Join(root, name))
	}
	var bf bootenv.BootFiles
	data, err := os.ReadFile(filepath.Join(root, "etc/paczfs/boot.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(data, &bf))
	assert.Equal(t, bootenv.BootFiles{Kernel: "/usr/lib/modules/{kver}/vmlinuz", Initrd: "/boot/initramfs-{pkgbase}.img",
		RootOptions: []string{"zfs={dataset}", "rw"}, Title: "Arch Linux on ZFS ({name})"}, bf)
	data, err = os.ReadFile(filepath.Join(root, "etc/paczfs/bootenv.json"))
	require.NoError(t, err)
	assert.JSONEq(t, `{"esp":"/efi","keep_good":5,"watchdog":"15m","health":"/usr/local/sbin/paczfs-health"}`, string(data))
	assert.DirExists(t, filepath.Join(root, "etc/paczfs/health.d"))
	keys, err := release.TrustedKeys(filepath.Join(root, "etc/paczfs/release-keys"))
	require.NoError(t, err, "the release key is baked in")
	assert.Len(t, keys, 1)
}

// A failing command at each stage fails it with its error, and what the
// stages registered is released in reverse order (golden, per stage).
func TestStagesFailAndRelease(t *testing.T) {
	for _, c := range []struct {
		stage  hooks.Stage
		prefix string
	}{
		{hooks.StagePool, "zpool create"},
		{hooks.StageDatasets, "zfs create"},
		{hooks.StageSystem, "chroot locale-gen"},
		{hooks.StageBootloader, "zfs snapshot"},
		{hooks.StageFinalize, "zpool export"},
		{hooks.StageConvert, "qemu-img convert"},
	} {
		t.Run(string(c.stage), func(t *testing.T) {
			r := &transcriptRunner{}
			st := stageFixture(t, r)
			fail := c.prefix
			if strings.HasPrefix(fail, "chroot ") {
				fail = "unshare" // the chroot wrapper's argv
			}
			r.On(fail, hookstest.Response{ExitCode: 1, Stderr: "injected"})
			ctx := context.Background()
			var err error
			for _, s := range []struct {
				stage hooks.Stage
				fn    stageFunc
			}{{hooks.StageESP, stageESP}, {hooks.StagePool, stagePool}, {hooks.StageDatasets, stageDatasets},
				{hooks.StageSystem, stageSystem}, {hooks.StageInitramfs, stageInitramfs}, {hooks.StageBootloader, stageBootloader},
				{hooks.StageFinalize, stageFinalize}, {hooks.StageConvert, stageConvert}} {
				r.lines = append(r.lines, "# "+string(s.stage))
				if s.stage == hooks.StageDatasets {
					fakeRoot(t, st.state.Root)
				}
				if err = s.fn(ctx, st); err != nil {
					assert.Equal(t, c.stage, s.stage, "failed at %s: %v", s.stage, err)
					break
				}
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), "injected")
			r.lines = append(r.lines, "# release")
			_ = st.stack.Unwind(ctx)
			golden(t, "fail-"+string(c.stage)+".golden", strings.Join(r.lines, "\n")+"\n")
		})
	}
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *update {
		require.NoError(t, os.WriteFile(p, []byte(got), 0o644))
	}
	want, err := os.ReadFile(p)
	require.NoError(t, err, "run go test ./image -run %s -update to write %s", t.Name(), p)
	assert.Equal(t, string(want), got, fmt.Sprintf("%s differs (go test ./image -update rewrites it after a deliberate change)", p))
}

// An initramfs without a file boot.initramfs_must names (an mkinitcpio
// image without /etc/hostid, as archzfs's hook makes when nothing adds
// it) fails the initramfs stage, naming the file, how it was read and the
// field that fixes it: read by paczfs itself (the profiles), or listed by
// boot.initramfs_list's command. An image paczfs cannot read names the
// field that lists it instead.
func TestInitramfsWithoutTheHostIDFailsItsStage(t *testing.T) {
	noHostID := testutil.Newc("bin", "etc/", "etc/fstab", "hooks/zfs", "init")
	for _, c := range []struct {
		name   string
		image  []byte
		list   []string
		is     error
		saying string
	}{
		{"read by paczfs", noHostID, nil, ErrInitramfsContent, "etc/hostid (read from /boot/initramfs-linux-lts.img; boot.initramfs_files should add them)"},
		{"listed by the command", nil, []string{"lsinitcpio", "{initrd}"}, ErrInitramfsContent, "etc/hostid (listed by [lsinitcpio /boot/initramfs-linux-lts.img]"},
		{"lz4, which paczfs does not read", []byte{0x02, 0x21, 0x4c, 0x18, 0, 0, 0, 0}, nil, boot.ErrInitramfsFormat, "set boot.initramfs_list"},
	} {
		t.Run(c.name, func(t *testing.T) {
			lsinit := "./\nbin\netc/\netc/fstab\nhooks/zfs\ninit\n"
			r := &transcriptRunner{lsinit: &lsinit}
			st := stageFixture(t, r)
			st.cfg.Boot.InitramfsList = c.list
			ctx := context.Background()
			for _, fn := range []stageFunc{stageESP, stagePool} {
				require.NoError(t, fn(ctx, st))
			}
			fakeRoot(t, st.state.Root)
			if c.image != nil {
				require.NoError(t, os.WriteFile(filepath.Join(st.state.Root, "boot/initramfs-linux-lts.img"), c.image, 0o644))
			}
			for _, fn := range []stageFunc{stageDatasets, stageSystem} {
				require.NoError(t, fn(ctx, st))
			}
			err := stageInitramfs(ctx, st)
			require.ErrorIs(t, err, c.is)
			assert.ErrorContains(t, err, c.saying)
			require.NoError(t, st.stack.Unwind(ctx))
		})
	}
}

// The image is read in the target: a link out of it is not followed.
func TestInitramfsCheckStaysInTheTarget(t *testing.T) {
	root, outside := t.TempDir(), t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(outside, "initrd"), testutil.Newc("etc/hostid"), 0o644))
	require.NoError(t, os.MkdirAll(filepath.Join(root, "boot"), 0o755))
	require.NoError(t, os.Symlink(filepath.Join(outside, "initrd"), filepath.Join(root, "boot/initrd.img")))
	err := checkInitramfsFile(root, "6.12", "/boot/initrd.img", []string{"etc/hostid"})
	assert.ErrorContains(t, err, "escapes")

	require.NoError(t, os.Remove(filepath.Join(root, "boot/initrd.img")))
	require.NoError(t, os.Symlink("../initrd.real", filepath.Join(root, "boot/initrd.img")))
	require.NoError(t, os.WriteFile(filepath.Join(root, "initrd.real"), testutil.Newc("etc/hostid"), 0o644))
	assert.NoError(t, checkInitramfsFile(root, "6.12", "/boot/initrd.img", []string{"etc/hostid"}), "a link inside the target is followed")
}

func TestMissingFiles(t *testing.T) {
	listing := "./\n./etc/hostid\nusr/lib/modules/\n/usr/bin/zpool\n"
	assert.Empty(t, missingFiles(listing, []string{"etc/hostid", "/usr/bin/zpool", "usr/lib/modules"}))
	assert.Equal(t, []string{"etc/zfs/zpool.cache"}, missingFiles(listing, []string{"etc/hostid", "etc/zfs/zpool.cache"}))
	assert.Equal(t, []string{"etc/hostid"}, missingFiles("etc/hostid.bak\nmy-etc/hostid\n", []string{"etc/hostid"}), "whole paths, not parts")

	// lsinitrd (dracut): a header, then cpio -tv's long listing.
	lsinitrd := `Image: /boot/initrd.img-6.12.57+deb13-amd64: 41M
========================================================================
Version: dracut-106-6

dracut modules:
systemd
zfs
========================================================================
drwxr-xr-x  12 root     root            0 Dec  2 05:50 .
lrwxrwxrwx   1 root     root            7 Dec  2 05:50 bin -> usr/bin
-rw-r--r--   1 root     root            4 Dec  2 05:50 etc/hostid
-rw-r--r--   1 root     root      5030440 Dec  2 05:50 usr/lib/modules/6.12.57+deb13-amd64/updates/dkms/zfs.ko.xz
========================================================================
`
	assert.Empty(t, missingFiles(lsinitrd, []string{"etc/hostid", "bin", "usr/lib/modules/6.12.57+deb13-amd64/updates/dkms/zfs.ko.xz"}))
	assert.Equal(t, []string{"etc/zfs/zpool.cache", "usr/bin"}, missingFiles(lsinitrd, []string{"etc/zfs/zpool.cache", "usr/bin"}),
		"a link's target is not a file of the image")
}

// TestFinalizeTrimsAnImageFileOnly: an image file's pool is trimmed
// before export (its freed blocks become holes); a pool that cannot be
// trimmed is a warning, not a failed build; a disk is left as it is.
func TestFinalizeTrimsAnImageFileOnly(t *testing.T) {
	for _, c := range []struct {
		name     string
		block    bool
		trimErr  string
		trimmed  bool
		warnings int
	}{
		{name: "image file", trimmed: true},
		{name: "image file without discard", trimErr: "cannot trim: trim operations are not supported by this device\n", trimmed: true, warnings: 1},
		{name: "disk", block: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := &transcriptRunner{}
			st := stageFixture(t, r)
			st.target.block = c.block
			if c.trimErr != "" {
				r.On("zpool trim", hookstest.Response{ExitCode: 1, Stderr: c.trimErr})
			}
			ctx := context.Background()
			for i, fn := range []stageFunc{stageESP, stagePool, stageDatasets, stageSystem, stageInitramfs, stageBootloader, stageFinalize} {
				if i == 2 {
					fakeRoot(t, st.state.Root) // what the packages installed
				}
				require.NoError(t, fn(ctx, st))
			}
			trim := slices.IndexFunc(r.lines, func(l string) bool { return strings.HasPrefix(l, "zpool trim -w ") })
			export := slices.IndexFunc(r.lines, func(l string) bool { return strings.HasPrefix(l, "zpool export ") })
			require.Positive(t, export, "the pool was exported")
			if c.trimmed {
				require.Positive(t, trim, "the pool was trimmed")
				assert.Less(t, trim, export, "before its export")
			} else {
				assert.Equal(t, -1, trim, "a disk is not trimmed")
			}
			warnings := slices.DeleteFunc(slices.Clone(st.warnings), func(w string) bool { return !strings.Contains(w, "trim") })
			assert.Len(t, warnings, c.warnings)
			if c.warnings > 0 {
				assert.Contains(t, warnings[0], "not trimmed")
				assert.Contains(t, warnings[0], "not supported")
			}
		})
	}
}

//go:build boot

package image_test

// Boot tests run on the build host, after the lab built the images
// (TestLabBuildBootableImage, with `lab test -out DIR`): qemu boots each
// output under OVMF and the test-only report unit in the image says, on
// the serial console, what it found. PACZFS_BOOT_IMAGES names DIR.

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/paczfs/paczfs/disk"
	"github.com/paczfs/paczfs/hooks"
	"github.com/paczfs/paczfs/image"
	"github.com/paczfs/paczfs/internal/ovmf"
)

func bootImages(t *testing.T) string {
	dir := os.Getenv("PACZFS_BOOT_IMAGES")
	if dir == "" {
		if os.Getenv("CI") != "" || os.Getenv("PACZFS_REQUIRE_LAB") != "" {
			t.Fatal("PACZFS_BOOT_IMAGES is not set: make test builds the images in the lab first")
		}
		t.Skip("PACZFS_BOOT_IMAGES is not set: run `make test` (it builds the images in the lab, then boots them)")
	}
	return dir
}

// report parses the PACZFS-REPORT lines of a transcript.
func report(t *testing.T, transcript string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(transcript, "\n") {
		line = strings.TrimRight(line, "\r")
		i := strings.Index(line, "PACZFS-REPORT ")
		if i < 0 {
			continue
		}
		rest := line[i+len("PACZFS-REPORT "):]
		if k, v, ok := strings.Cut(rest, "="); ok && (k == "failed" || k == "cmdline" || k == "pools" || k == "problems") {
			m[k] = strings.TrimSpace(v)
			continue
		}
		if strings.HasPrefix(rest, "mount ") || strings.HasPrefix(rest, "enabled ") {
			k, v, _ := strings.Cut(rest, "=")
			m[k] = v
			continue
		}
		for _, f := range regexp.MustCompile(`(\w+)=(\S*)`).FindAllStringSubmatch(rest, -1) {
			m[f[1]] = f[2]
		}
	}
	require.Contains(t, transcript, "PACZFS-REPORT-END", "the report unit did not finish; console:\n%s", tail(transcript, 80))
	return m
}

func tail(s string, lines int) string {
	l := strings.Split(s, "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return strings.Join(l, "\n")
}

func boot(t *testing.T, image, format string, cpus int) map[string]string {
	return bootWith(t, ovmf.Options{Image: image, Format: format, CPUs: cpus}, ".console.log")
}

// bootWith boots under the firmware o says, its console in the image's
// directory.
func bootWith(t *testing.T, o ovmf.Options, suffix string) map[string]string {
	image := o.Image
	console, err := os.Create(filepath.Join(filepath.Dir(image), filepath.Base(image)+suffix))
	require.NoError(t, err)
	defer console.Close()
	o.Console = console
	transcript, err := ovmf.Boot(context.Background(), o)
	// The emulated SMP kernel has panicked early in boot (seen once, 4 s
	// in, devtmpfs_create_node, before the initramfs ran): an emulator
	// fault, not the image's. Entries with panic=1 reboot, qemu exits
	// (-no-reboot), and the boot is tried once more; twice is a failure.
	if strings.Contains(transcript, "Kernel panic") && !strings.Contains(transcript, "PACZFS-REPORT ") {
		t.Logf("the guest kernel panicked before the system started; booting once more:\n%s", tail(transcript, 30))
		transcript, err = ovmf.Boot(context.Background(), o)
	}
	require.NoError(t, err, "console:\n%s", tail(transcript, 80))
	assert.Contains(t, transcript, "login:", "a getty reached the login prompt")
	return report(t, transcript)
}

func checkBooted(t *testing.T, r map[string]string, env string) {
	assert.Equal(t, "labpool/system/"+env, r["root"])
	assert.Equal(t, "zfs", r["fstype"])
	assert.Equal(t, "labpool:ONLINE", strings.TrimSuffix(r["pools"], ":"))
	for m, ds := range map[string]string{"/home": "data/home", "/root": "data/root", "/srv": "data/srv",
		"/var/lib/machines": "data/machines", "/var/lib/postgres": "data/postgres", "/var/lib/machines/miniroot": "data/machines/miniroot"} {
		assert.Equal(t, "labpool/"+ds+",zfs", r["mount "+m], m)
	}
	assert.True(t, strings.HasSuffix(r["mount /efi"], ",vfat"), "ESP at /efi: %q", r["mount /efi"])
	// /home is encrypted, its key loaded at boot from the root's key file.
	assert.Equal(t, "labpool/data/home,aes-256-gcm,available,file:///etc/zfs/keys/paczfs.key,", r["crypt"])
	assert.Equal(t, "active", r["loadkeys"], "paczfs-load-keys.service")
	assert.Equal(t, "", r["failed"], "failed units")
	assert.Equal(t, "running", r["state"])
	assert.Equal(t, "healthy", r["health"], "paczfs-health: %s", r["problems"])
	assert.Equal(t, "", r["problems"])
	assert.Equal(t, "active", r["ssh"], "ssh.service")
	n, _ := strconv.Atoi(r["listen22"])
	assert.GreaterOrEqual(t, n, 1, "sshd listens on port 22 (IPv4 and IPv6: 2)")
	var enabled []string
	for k, v := range r {
		if u, ok := strings.CutPrefix(k, "enabled "); ok {
			enabled = append(enabled, u+"="+v)
		}
	}
	sort.Strings(enabled)
	t.Logf("enabled units after boot: %s", strings.Join(enabled, " "))
	for _, want := range []string{"ActiveState=active,", "SubState=running,", "NRestarts=0,"} {
		assert.Contains(t, r["enabled ssh.service"], want, "ssh.service")
	}
	assert.Equal(t, "active,active", r["assess"], "paczfs-boot-check and paczfs-boot-good ran and passed")
	assert.Equal(t, "good", r["bestate"], "the booted environment is marked good")
	assert.Equal(t, "1", r["goodsnaps"], "a @good- snapshot of this boot")
	assert.Equal(t, "ran", r["shellhook"])
	assert.Equal(t, "33", r["machineid"], "machine-id generated at first boot")
	assert.Equal(t, "42", r["nspawn"], "systemd-nspawn ran a command in the miniroot, /var/lib/machines/miniroot")
	assert.Contains(t, r["cmdline"], "root=zfs:labpool/system/"+env)
}

// TestBootConvertedImages boots the QCOW2 (paczfs's own zlib writer, and
// qemu-img's zstd) and VDI conversions of the raw image, made here by
// image.WriteOutput as a build's outputs are (make test-full; the per-stop
// run boots the raw one and checks the QCOW2 with qemu-img).
func TestBootConvertedImages(t *testing.T) {
	t.Parallel()
	dir := bootImages(t)
	for _, o := range []image.Output{
		{Format: image.QCOW2, Path: filepath.Join(t.TempDir(), "lab.qcow2")},
		{Format: image.QCOW2, Path: filepath.Join(t.TempDir(), "lab-zstd.qcow2"), Compression: image.CompressZstd},
		{Format: image.VDI, Path: filepath.Join(t.TempDir(), "lab.vdi")},
	} {
		t.Run(strings.TrimSuffix(filepath.Base(o.Path), filepath.Ext(o.Path))+"."+string(o.Format), func(t *testing.T) {
			t.Parallel()
			require.NoError(t, image.WriteOutput(context.Background(), &hooks.ExecRunner{}, filepath.Join(dir, "lab.raw"), o))
			checkBooted(t, boot(t, o.Path, string(o.Format), 1), "default")
		})
	}
}

// TestLabImageQCOW2 writes the lab image's default QCOW2 (paczfs's own
// zlib writer) and has qemu-img check it and compare it with the raw
// image, cluster by cluster: per stop, in seconds, where the boot of it
// is in make test-full.
func TestLabImageQCOW2(t *testing.T) {
	t.Parallel()
	dir := bootImages(t)
	raw := filepath.Join(dir, "lab.raw")
	dst := filepath.Join(t.TempDir(), "lab.qcow2")
	require.NoError(t, image.WriteOutput(context.Background(), &hooks.ExecRunner{}, raw, image.Output{Format: image.QCOW2, Path: dst}))
	out, err := exec.Command("qemu-img", "check", dst).CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), "No errors were found")
	out, err = exec.Command("qemu-img", "compare", "-f", "raw", "-F", "qcow2", raw, dst).CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), "Images are identical")
	q, err := os.Stat(dst)
	require.NoError(t, err)
	var st syscall.Stat_t
	require.NoError(t, syscall.Stat(raw, &st))
	t.Logf("raw %d MiB allocated, qcow2 %d MiB", st.Blocks*512>>20, q.Size()>>20)
	assert.Less(t, q.Size(), st.Blocks*512, "the QCOW2 is smaller than the raw image's data")
}

func TestBootLabImageUnderOVMF(t *testing.T) {
	t.Parallel()
	dir := bootImages(t)
	t.Run("raw", func(t *testing.T) {
		t.Parallel()
		r := boot(t, filepath.Join(dir, "lab.raw"), "raw", 1)
		checkBooted(t, r, "default")
		assert.Equal(t, "uefi", r["firmware"])
	})
	// The same image under legacy BIOS: SeaBIOS runs gptmbr.bin, which
	// boots the ESP's SYSLINUX, which boots the default environment's
	// kernel and initramfs from the same ESP, with the same health.
	t.Run("seabios", func(t *testing.T) {
		t.Parallel()
		r := bootWith(t, ovmf.Options{Image: filepath.Join(dir, "lab.raw"), Format: "raw", CPUs: 1, BIOS: true}, ".seabios.console.log")
		checkBooted(t, r, "default")
		assert.Equal(t, "bios", r["firmware"], "booted by legacy BIOS, no EFI")
		console, err := os.ReadFile(filepath.Join(dir, "lab.raw.seabios.console.log"))
		require.NoError(t, err)
		assert.Contains(t, string(console), "\nSYSLINUX 6.", "SYSLINUX on the serial console (SERIAL 0 115200)")
		assert.Contains(t, string(console), "Loading /env/default/vmlinuz-", "the default environment's kernel from the ESP")
	})
	// A unit in a restart loop (exit 1, Restart=always) must make the
	// boot unhealthy, though no unit ever shows as failed: a copy of the
	// raw image whose default entry pulls the unit in.
	t.Run("restart-loop-is-unhealthy", func(t *testing.T) {
		t.Parallel()
		img := copyRaw(t, dir, "lab-flap.raw")
		editESP(t, img, "/loader/entries/paczfs-default.conf", func(s string) string {
			return strings.Replace(s, "\noptions ", "\noptions systemd.wants=paczfs-flap.service ", 1)
		})
		r := boot(t, img, "raw", 1)
		assert.Equal(t, "labpool/system/default", r["root"])
		assert.Equal(t, "unhealthy", r["health"], "a flapping unit must fail the verdict")
		assert.Contains(t, r["problems"], "paczfs-flap.service", "the verdict names the unit")
		assert.Contains(t, r["enabled paczfs-boot-report.service"], "active", "the report ran")
		t.Logf("problems: %s (state %s, failed %q)", r["problems"], r["state"], r["failed"])
	})
}

// TestBootBootableEnvironment (make test-full) boots the bootable
// environment: a copy of the raw image whose loader.conf defaults to its
// entry, written without mounting the ESP; the boot also refreshes its
// files on the ESP (paczfs-update-esp). The per-stop run boots other
// environments than default in the fallback and update scenarios.
func TestBootBootableEnvironment(t *testing.T) {
	t.Parallel()
	dir := bootImages(t)
	{
		img := copyRaw(t, dir, "lab-bootable.raw")
		plan, err := disk.ReadGPT(img)
		require.NoError(t, err)
		esp, err := disk.OpenESP(img, plan)
		require.NoError(t, err)
		loader, err := esp.ReadFile("/loader/loader.conf")
		require.NoError(t, err)
		// Pinned, for this test: images default to the glob paczfs-*.
		conf := regexp.MustCompile(`(?m)^default .*$`).ReplaceAllString(string(loader), "default paczfs-bootable.conf")
		require.Contains(t, conf, "default paczfs-bootable.conf")
		require.NoError(t, esp.WriteFile("/loader/loader.conf", strings.NewReader(conf)))
		// Ask the report unit to run the ESP refresh in this environment.
		entry, err := esp.ReadFile("/loader/entries/paczfs-bootable.conf")
		require.NoError(t, err)
		entryText := strings.Replace(string(entry), "\noptions ", "\noptions panic=1 paczfs.test_update_esp=1 ", 1)
		require.NoError(t, esp.WriteFile("/loader/entries/paczfs-bootable.conf", strings.NewReader(entryText)))
		require.NoError(t, esp.Close())
		// Two CPUs: this boot also rebuilds an initramfs, and runs on
		// alone for minutes after the other boots end.
		r := boot(t, img, "raw", 2)
		checkBooted(t, r, "bootable")
		assert.Equal(t, "ok", r["updateesp"], "paczfs-update-esp refreshed this environment's files only")
	}
}

// copyRaw copies the raw lab image (sparse) for a boot that changes it.
func copyRaw(t *testing.T, dir, name string) string {
	img := filepath.Join(dir, name)
	out, err := exec.Command("cp", "--sparse=always", filepath.Join(dir, "lab.raw"), img).CombinedOutput()
	require.NoError(t, err, "%s", out)
	t.Cleanup(func() { os.Remove(img) })
	return img
}

// editESP rewrites one file on an image's ESP, without mounting it.
func editESP(t *testing.T, img, name string, edit func(string) string) {
	plan, err := disk.ReadGPT(img)
	require.NoError(t, err)
	esp, err := disk.OpenESP(img, plan)
	require.NoError(t, err)
	data, err := esp.ReadFile(name)
	require.NoError(t, err)
	require.NoError(t, esp.WriteFile(name, strings.NewReader(edit(string(data)))))
	require.NoError(t, esp.Close())
}

// TestBootEncryptedRoot (make test): the boot environments are encrypted
// (Encryption.Root) and dracut's initramfs asks for the passphrase on the
// console. A wrong one is refused and asked for again; the right one boots
// a healthy system whose /home, encrypted with its key in the unlocked
// root, is mounted.
func TestBootEncryptedRoot(t *testing.T) {
	t.Parallel()
	img := filepath.Join(bootImages(t), "lab-crypt.raw")
	console, err := os.Create(img + ".console.log")
	require.NoError(t, err)
	defer console.Close()
	const prompt = "Encrypted ZFS password for labpool/system/default"
	transcript, err := ovmf.Boot(context.Background(), ovmf.Options{Image: img, Format: "raw", Console: console, CPUs: 1,
		Expect: []ovmf.Step{{Wait: prompt, Send: "not the passphrase\r"}, {Wait: prompt, Send: cryptPassphrase + "\r"}}})
	require.NoError(t, err, "console:\n%s", tail(transcript, 80))
	assert.Equal(t, 2, strings.Count(transcript, prompt), "asked again after the wrong passphrase")
	assert.Contains(t, transcript, "Incorrect key provided for 'labpool/system'", "zfs load-key refused the wrong one")
	r := report(t, transcript)
	assert.Equal(t, "labpool/system/default", r["root"])
	assert.Equal(t, "labpool:ONLINE", strings.TrimSuffix(r["pools"], ":"))
	assert.Equal(t, "labpool/data/home,zfs", r["mount /home"])
	assert.Equal(t, "labpool/data/home,aes-256-gcm,available,file:///etc/zfs/keys/paczfs.key,", r["crypt"])
	assert.Equal(t, "active", r["loadkeys"])
	assert.Equal(t, "", r["failed"], "failed units")
	assert.Equal(t, "healthy", r["health"], "paczfs-health: %s", r["problems"])
	assert.Equal(t, "active,active", r["assess"], "paczfs-boot-check and paczfs-boot-good ran and passed")
}

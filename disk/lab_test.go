//go:build lab

package disk_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/paczfs/paczfs/disk"
	"github.com/paczfs/paczfs/hooks"
	"github.com/paczfs/paczfs/internal/labtest"
)

func sysSize(t *testing.T, dev string) int64 {
	b, err := os.ReadFile(filepath.Join("/sys/class/block", filepath.Base(dev), "size"))
	require.NoError(t, err)
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	require.NoError(t, err)
	return n * 512
}

func TestLabGPTAttachedPartitionNodesAppear(t *testing.T) {
	labtest.Require(t)
	path, plan := labtest.Image(t, 2*disk.GiB)
	l := labtest.Attach(t, path, plan)
	for _, p := range plan.Partitions {
		node := l.PartitionPath(p.Number)
		st, err := os.Stat(node)
		require.NoError(t, err)
		assert.NotZero(t, st.Mode()&os.ModeDevice, node)
		assert.Equal(t, int64(p.Size()), sysSize(t, node), node)
	}
	out := labtest.Run(t, "sgdisk", "-v", l.Path)
	assert.Contains(t, out, "No problems found")
	require.NoError(t, l.Detach(t.Context(), 10*time.Second))
	loops, _ := disk.AttachedLoops(path)
	assert.Empty(t, loops)
	_, err := os.Stat(l.PartitionPath(1))
	assert.True(t, errors.Is(err, os.ErrNotExist), "partition node must go with the device")
	assert.NoError(t, l.Detach(t.Context(), time.Second), "second detach is a no-op")
}

func TestLabESPMountsAsVfatWithIdenticalFiles(t *testing.T) {
	labtest.Require(t)
	path, plan := labtest.Image(t, disk.GiB)
	writeESP(t, path, plan)
	l := labtest.Attach(t, path, plan)
	esp := l.PartitionPath(1)
	out, err := exec.Command("fsck.fat", "-n", esp).CombinedOutput()
	assert.NoError(t, err, "fsck.fat -n:\n%s", out)
	assert.Contains(t, labtest.Run(t, "blkid", "-o", "export", esp), "TYPE=vfat")

	mnt := t.TempDir()
	labtest.Run(t, "mount", "-t", "vfat", "-o", "ro", esp, mnt)
	defer exec.Command("umount", mnt).Run()
	for name, f := range espTree() {
		got, err := os.ReadFile(filepath.Join(mnt, name))
		require.NoError(t, err, name)
		assert.Equal(t, sha256.Sum256(f.Data), sha256.Sum256(got), name)
	}
	st, err := os.Stat(filepath.Join(mnt, "EFI/Linux"))
	require.NoError(t, err)
	assert.True(t, st.IsDir())
}

func TestLabEightParallelAttaches(t *testing.T) {
	labtest.Require(t)
	const n = 8
	paths := make([]string, n)
	for i := range paths {
		paths[i] = filepath.Join(t.TempDir(), "p.img")
		_, err := disk.CreateImage(paths[i], 64*disk.MiB, disk.ImageOptions{})
		require.NoError(t, err)
	}
	loops := make([]*disk.Loop, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range paths {
		wg.Add(1)
		go func() {
			defer wg.Done()
			loops[i], errs[i] = disk.Attach(context.Background(), paths[i], disk.LoopOptions{})
		}()
	}
	wg.Wait()
	seen := map[string]bool{}
	for i := range loops {
		require.NoError(t, errs[i], "attach %d", i)
		assert.False(t, seen[loops[i].Path], "device %s handed out twice", loops[i].Path)
		seen[loops[i].Path] = true
		got, _ := disk.AttachedLoops(paths[i])
		assert.Equal(t, []string{loops[i].Path}, got)
	}
	for i := range loops {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = loops[i].Detach(context.Background(), 10*time.Second) }()
	}
	wg.Wait()
	for i := range loops {
		assert.NoError(t, errs[i])
		got, _ := disk.AttachedLoops(paths[i])
		assert.Empty(t, got)
	}
}

func TestLabStaleDetachNeverHitsAnotherDevice(t *testing.T) {
	labtest.Require(t)
	a := filepath.Join(t.TempDir(), "a.img")
	b := filepath.Join(t.TempDir(), "b.img")
	for _, p := range []string{a, b} {
		_, err := disk.CreateImage(p, 64*disk.MiB, disk.ImageOptions{})
		require.NoError(t, err)
	}
	la, err := disk.Attach(t.Context(), a, disk.LoopOptions{})
	require.NoError(t, err)
	require.NoError(t, la.Detach(t.Context(), 5*time.Second))
	lb, err := disk.Attach(t.Context(), b, disk.LoopOptions{})
	require.NoError(t, err)
	defer lb.Detach(t.Context(), 5*time.Second)
	t.Logf("a was %s, b is %s", la.Path, lb.Path)
	require.NoError(t, la.Detach(t.Context(), time.Second))
	got, _ := disk.AttachedLoops(b)
	assert.Equal(t, []string{lb.Path}, got, "detaching a stale Loop must not detach b")
}

func TestLabDetachOfAHeldDeviceReportsBusyThenClearsItself(t *testing.T) {
	labtest.Require(t)
	p := filepath.Join(t.TempDir(), "held.img")
	_, err := disk.CreateImage(p, 64*disk.MiB, disk.ImageOptions{})
	require.NoError(t, err)
	l, err := disk.Attach(t.Context(), p, disk.LoopOptions{})
	require.NoError(t, err)
	holder, err := os.Open(l.Path)
	require.NoError(t, err)
	err = l.Detach(t.Context(), 200*time.Millisecond)
	assert.True(t, errors.Is(err, disk.ErrLoopBusy), "got %v", err)
	holder.Close()
	require.Eventually(t, func() bool { got, _ := disk.AttachedLoops(p); return len(got) == 0 }, 5*time.Second, 20*time.Millisecond,
		"autoclear must detach the device once its holder lets go")
}

func TestLabBlockDeviceChecks(t *testing.T) {
	labtest.Require(t)
	p := filepath.Join(t.TempDir(), "dev.img")
	_, err := disk.CreateImage(p, 512*disk.MiB, disk.ImageOptions{})
	require.NoError(t, err)
	l, err := disk.Attach(t.Context(), p, disk.LoopOptions{})
	require.NoError(t, err)
	defer l.Detach(context.Background(), 10*time.Second)
	r := &hooks.ExecRunner{}

	tgt, err := disk.OpenBlockDevice(t.Context(), l.Path, disk.BlockDeviceOptions{Runner: r})
	require.NoError(t, err, "an empty device is accepted")
	assert.Equal(t, 512*disk.MiB, tgt.Size)
	assert.True(t, tgt.BlockDevice)

	labtest.Run(t, "mkfs.ext4", "-q", l.Path)
	_, err = disk.OpenBlockDevice(t.Context(), l.Path, disk.BlockDeviceOptions{Runner: r})
	assert.True(t, errors.Is(err, disk.ErrNotEmpty), "got %v", err)
	assert.ErrorContains(t, err, "ext4")

	mnt := t.TempDir()
	labtest.Run(t, "mount", l.Path, mnt)
	_, err = disk.OpenBlockDevice(t.Context(), l.Path, disk.BlockDeviceOptions{Wipe: true, Runner: r})
	assert.True(t, errors.Is(err, disk.ErrInUse), "got %v", err)
	assert.ErrorContains(t, err, "mounted on "+mnt)
	labtest.Run(t, "umount", mnt)

	// Mounted in a mount namespace of its own: not in our mountinfo,
	// still claimed by the kernel.
	ns := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c",
		`mount -o ro,noload "$1" "$2" && echo mounted && exec sleep 600`, "sh", l.Path, mnt)
	nsOut, err := ns.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, ns.Start())
	line, _ := bufio.NewReader(nsOut).ReadString('\n')
	require.Equal(t, "mounted\n", line, "the mount in the other namespace")
	_, err = disk.OpenBlockDevice(t.Context(), l.Path, disk.BlockDeviceOptions{Wipe: true, Runner: r})
	assert.True(t, errors.Is(err, disk.ErrInUse), "got %v", err)
	assert.ErrorContains(t, err, "claimed by the kernel")
	require.NoError(t, ns.Process.Kill())
	_ = ns.Wait() // the namespace, and its mount, end with the process
	require.Eventually(t, func() bool {
		f, err := os.OpenFile(l.Path, os.O_RDONLY|syscall.O_EXCL, 0)
		if err == nil {
			f.Close()
		}
		return err == nil
	}, 5*time.Second, 20*time.Millisecond, "the namespace's mount is gone")

	_, err = disk.OpenBlockDevice(t.Context(), l.Path, disk.BlockDeviceOptions{Wipe: true, Runner: r})
	require.NoError(t, err, "wipe was asked for")
	assert.Empty(t, strings.TrimSpace(labtest.Run(t, "wipefs", "--no-act", "--noheadings", l.Path)))

	pool := labtest.Name("held")
	labtest.Run(t, "zpool", "create", "-o", "cachefile=none", "-O", "mountpoint=none", pool, l.Path)
	_, err = disk.OpenBlockDevice(t.Context(), l.Path, disk.BlockDeviceOptions{Wipe: true, Runner: r})
	assert.True(t, errors.Is(err, disk.ErrInUse), "got %v", err)
	assert.ErrorContains(t, err, "imported pool")
	labtest.Run(t, "zpool", "destroy", pool)

	_, err = disk.OpenBlockDevice(t.Context(), p, disk.BlockDeviceOptions{Runner: r})
	assert.ErrorContains(t, err, "not a block device")
}

// A backing file named through a link, with a path longer than the 63
// bytes the kernel keeps of a loop device's file name: its devices are
// found, a held one reports busy rather than gone, and DetachBacking
// detaches one another process attached (as a killed build leaves it).
func TestLabLoopsOfALongLinkedPath(t *testing.T) {
	labtest.Require(t)
	real := filepath.Join(t.TempDir(), strings.Repeat("long-directory-name-", 4))
	require.NoError(t, os.Mkdir(real, 0o755))
	link := filepath.Join(t.TempDir(), "link")
	require.NoError(t, os.Symlink(real, link))
	p := filepath.Join(link, "image-with-a-long-name.img")
	require.Greater(t, len(p), 64)
	_, err := disk.CreateImage(p, 64*disk.MiB, disk.ImageOptions{})
	require.NoError(t, err)

	l, err := disk.Attach(t.Context(), p, disk.LoopOptions{})
	require.NoError(t, err)
	got, err := disk.AttachedLoops(p)
	require.NoError(t, err)
	assert.Equal(t, []string{l.Path}, got, "found through the link")
	holder, err := os.Open(l.Path)
	require.NoError(t, err)
	err = l.Detach(t.Context(), 200*time.Millisecond)
	assert.ErrorIs(t, err, disk.ErrLoopBusy, "held: busy, not gone")
	holder.Close()
	require.Eventually(t, func() bool { got, _ := disk.AttachedLoops(p); return len(got) == 0 }, 5*time.Second, 20*time.Millisecond)

	// Attached by another process, which then exits: what Recover
	// finds after a killed build.
	out, err := exec.Command("losetup", "--find", "--show", p).CombinedOutput()
	require.NoError(t, err, "%s", out)
	dev := strings.TrimSpace(string(out))
	defer exec.Command("losetup", "-d", dev).Run()
	done, err := disk.DetachBacking(t.Context(), p, 10*time.Second)
	require.NoError(t, err)
	assert.Equal(t, []string{dev}, done)
	got, _ = disk.AttachedLoops(p)
	assert.Empty(t, got)

	// Another file at the same path now: its device is not cleared.
	other := filepath.Join(t.TempDir(), "other.img")
	_, err = disk.CreateImage(other, 64*disk.MiB, disk.ImageOptions{})
	require.NoError(t, err)
	out, err = exec.Command("losetup", "--find", "--show", p).CombinedOutput()
	require.NoError(t, err, "%s", out)
	dev = strings.TrimSpace(string(out))
	defer exec.Command("losetup", "-d", dev).Run()
	require.NoError(t, os.Rename(other, filepath.Join(real, "image-with-a-long-name.img")))
	done, err = disk.DetachBacking(t.Context(), p, time.Second)
	require.NoError(t, err)
	assert.Empty(t, done, "the device serves the file that was there before")
}

// A disk with 4096-byte logical sectors (4Kn) is refused before anything
// is written: a 512-byte-sector table on it is found by neither the
// kernel nor firmware.
func TestLabA4KnBlockDeviceIsRefusedUnwritten(t *testing.T) {
	labtest.Require(t)
	p := filepath.Join(t.TempDir(), "4kn.img")
	_, err := disk.CreateImage(p, 256*disk.MiB, disk.ImageOptions{})
	require.NoError(t, err)
	out, err := exec.Command("losetup", "--find", "--show", "--sector-size", "4096", p).CombinedOutput()
	require.NoError(t, err, "%s", out)
	dev := strings.TrimSpace(string(out))
	defer exec.Command("losetup", "-d", dev).Run()
	before := sha256.New()
	f, err := os.Open(p)
	require.NoError(t, err)
	_, err = io.Copy(before, f)
	f.Close()
	require.NoError(t, err)
	_, err = disk.OpenBlockDevice(t.Context(), dev, disk.BlockDeviceOptions{Wipe: true, Runner: &hooks.ExecRunner{}})
	assert.ErrorIs(t, err, disk.ErrSectorSize)
	assert.ErrorContains(t, err, "4096-byte logical sectors")
	after := sha256.New()
	f, err = os.Open(p)
	require.NoError(t, err)
	_, err = io.Copy(after, f)
	f.Close()
	require.NoError(t, err)
	assert.Equal(t, before.Sum(nil), after.Sum(nil), "nothing written")
}

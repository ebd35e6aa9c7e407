package labtest

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/paczfs/paczfs/disk"
)

// Require fails the test unless it runs in the lab VM with ZFS loaded.
func Require(t testing.TB) {
	t.Helper()
	if os.Getenv("PACZFS_LAB") != "1" {
		t.Fatal("lab test outside the lab VM: run it with `go run ./internal/lab/cmd/lab test ./PKG` (make test does)")
	}
	if _, err := os.Stat("/dev/zfs"); err != nil {
		t.Fatalf("the lab has no /dev/zfs: the zfs module did not load (%v)", err)
	}
	if os.Getuid() != 0 {
		t.Fatal("lab tests run as root")
	}
}

var seq atomic.Int64

// Name returns a name unique within this test run, for pools and files.
func Name(prefix string) string {
	return fmt.Sprintf("%s%d%d", prefix, os.Getpid()%1000, seq.Add(1))
}

// Image creates a sparse image with the default layout (512M ESP, ZFS on
// the rest) and writes its GPT.
func Image(t testing.TB, size disk.Size) (string, disk.Plan) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "disk.img")
	plan, err := disk.DefaultLayout(512*disk.MiB, 0, "zroot").Plan(size)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := disk.CreateImage(path, size, disk.ImageOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := disk.WriteGPT(path, plan); err != nil {
		t.Fatal(err)
	}
	return path, plan
}

// Attach attaches an image with partition scanning, waits for its
// partition nodes and detaches it when the test ends.
func Attach(t testing.TB, path string, plan disk.Plan) *disk.Loop {
	t.Helper()
	l, err := disk.Attach(context.Background(), path, disk.LoopOptions{PartScan: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Detach(context.Background(), 10*time.Second) })
	var nums []int
	for _, p := range plan.Partitions {
		nums = append(nums, p.Number)
	}
	if err := l.WaitPartitions(context.Background(), 10*time.Second, nums...); err != nil {
		t.Fatal(err)
	}
	return l
}

// Run runs a command and returns its combined output, failing the test on error.
func Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Mounts returns the mount points at or under prefix.
func Mounts(prefix string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) > 4 && (fields[4] == prefix || strings.HasPrefix(fields[4], strings.TrimSuffix(prefix, "/")+"/")) {
			out = append(out, fields[4])
		}
	}
	return out
}

// AssertClean fails the test if anything of a build is left on the host:
// a loop device on image, a pool called pool, a mount under altroot.
func AssertClean(t testing.TB, image, pool, altroot string) {
	t.Helper()
	if loops, _ := disk.AttachedLoops(image); len(loops) > 0 {
		t.Errorf("loop devices still attached to %s: %v", image, loops)
	}
	if out, err := exec.Command("zpool", "list", "-H", "-o", "name", pool).CombinedOutput(); err == nil {
		t.Errorf("pool %s is still imported: %s", pool, out)
	}
	if altroot != "" {
		if m := Mounts(altroot); len(m) > 0 {
			t.Errorf("still mounted under %s: %v", altroot, m)
		}
	}
}

// LabRepo returns the lab package repository shared into the VM by
// `lab test -repo`, failing the test when it is not there.
func LabRepo(t testing.TB) (dir, keyringDir string) {
	t.Helper()
	d := os.Getenv("PACZFS_LABREPO")
	if d == "" {
		t.Fatal("no lab repository: run the test with `lab test -repo` (make test does)")
	}
	return filepath.Join(d, "repo"), filepath.Join(d, "keys")
}

// ZFSRoot creates a pool on a sparse file with one dataset mounted as an
// empty root, and returns the root directory. The pool is destroyed when
// the test ends.
func ZFSRoot(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	pool := Name("root")
	vdev := filepath.Join(dir, "vdev.img")
	Run(t, "truncate", "-s", "8G", vdev)
	alt := filepath.Join(dir, "alt")
	Run(t, "zpool", "create", "-o", "cachefile=none", "-R", alt, "-O", "mountpoint=none", "-O", "acltype=posixacl", "-O", "xattr=sa", pool, vdev)
	t.Cleanup(func() { exec.Command("zpool", "destroy", "-f", pool).Run() })
	Run(t, "zfs", "create", "-o", "mountpoint=/", pool+"/root")
	return alt
}

// Logger returns a logger that writes to the test log at info level, so a
// failing lab test shows what the build did.
func Logger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

//go:build lab

package zfs_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/paczfs/paczfs/cleanup"
	"github.com/paczfs/paczfs/disk"
	"github.com/paczfs/paczfs/hooks"
	"github.com/paczfs/paczfs/internal/labtest"
	"github.com/paczfs/paczfs/zfs"
)

// newPool makes an image, attaches it and creates the pool "zroot" on its
// ZFS partition, imported as a unique temporary name under a fresh altroot.
func newPool(t *testing.T, c *zfs.Client) (pool, altroot, image string, loop *disk.Loop) {
	t.Helper()
	image, plan := labtest.Image(t, 2*disk.GiB)
	loop = labtest.Attach(t, image, plan)
	pool = labtest.Name("paczfs")
	altroot = t.TempDir()
	require.NoError(t, c.CreatePool(t.Context(), zfs.PoolSpec{Name: "zroot", TempName: pool, AltRoot: altroot, Vdevs: []string{loop.PartitionPath(2)}}))
	t.Cleanup(func() { _ = c.ExportPool(context.Background(), pool, zfs.ExportOptions{Force: true}) })
	return
}

func writeFile(t *testing.T, path, content string) {
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	require.NoError(t, os.WriteFile(path, []byte(content), 0o644))
}

func sum(t *testing.T, path string) [32]byte {
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return sha256.Sum256(b)
}

func TestLabPoolDefaultsDatasetsSnapshotsCloneBootfsExportImport(t *testing.T) {
	labtest.Require(t)
	c := zfs.New()
	ctx := t.Context()
	pool, alt, image, loop := newPool(t, c)

	pp, err := c.PoolProperties(ctx, pool, "ashift", "autotrim", "autoexpand", "cachefile", "compatibility")
	require.NoError(t, err)
	assert.Equal(t, "12", pp["ashift"].Value)
	assert.Equal(t, "on", pp["autotrim"].Value)
	assert.Equal(t, "on", pp["autoexpand"].Value)
	assert.Contains(t, []string{"none", "-"}, pp["cachefile"].Value)
	assert.Equal(t, "openzfs-2.2-linux", pp["compatibility"].Value)
	fp, err := c.Properties(ctx, pool, "acltype", "xattr", "dnodesize", "normalization", "relatime", "compression", "canmount", "mountpoint")
	require.NoError(t, err)
	// zfs get prints the canonical spelling: posixacl reads back as
	// posix, and since OpenZFS 2.2 xattr=sa as on (the same setting).
	alias := map[string]string{"posixacl": "posix", "sa": "on"}
	for k, v := range zfs.DefaultFSProperties() {
		want := v
		if a, ok := alias[v]; ok {
			want = a
		}
		assert.Equal(t, want, fp[k].Value, k)
		if k != "normalization" { // creation-only: its source reads "-"
			assert.Equal(t, "local", fp[k].Source, k)
		}
	}

	require.NoError(t, c.CreateDatasets(ctx, pool, zfs.DefaultDatasets()))
	mounts := labtest.Mounts(alt)
	assert.Contains(t, mounts, alt)
	assert.Contains(t, mounts, alt+"/home")
	assert.Contains(t, mounts, alt+"/var/lib/postgres")
	assert.Equal(t, pool+"/system/default", strings.TrimSpace(labtest.Run(t, "findmnt", "-n", "-o", "SOURCE", alt)))
	pg, err := c.Properties(ctx, pool+"/data/postgres", "recordsize")
	require.NoError(t, err)
	assert.Equal(t, "8192", pg["recordsize"].Value)

	writeFile(t, alt+"/etc/os-release", "NAME=paczfs test\n")
	writeFile(t, alt+"/home/user/notes", "kept across boot environments\n")
	require.NoError(t, c.Snapshot(ctx, zfs.SnapshotOptions{Recursive: true}, pool+"@base"))
	snaps, err := c.List(ctx, pool, zfs.ListOptions{Types: []string{"snapshot"}, Recursive: true})
	require.NoError(t, err)
	assert.Len(t, snaps, len(zfs.DefaultDatasets())+1, "a recursive snapshot covers every dataset")

	require.NoError(t, c.Hold(ctx, "paczfs", pool+"@base", zfs.HoldOptions{Recursive: true}))
	holds, err := c.Holds(ctx, pool+"/system/default@base")
	require.NoError(t, err)
	assert.Equal(t, []string{"paczfs"}, holds)
	err = c.Destroy(ctx, pool+"/system/default@base", zfs.DestroyOptions{})
	assert.True(t, errors.Is(err, zfs.ErrBusy), "a held snapshot cannot be destroyed: %v", err)

	require.NoError(t, c.Clone(ctx, pool+"/system/default@base", pool+"/system/bootable",
		zfs.CloneOptions{Props: map[string]string{"canmount": "noauto", "mountpoint": "/"}}))
	origin, err := c.Properties(ctx, pool+"/system/bootable", "origin")
	require.NoError(t, err)
	assert.Equal(t, pool+"/system/default@base", origin["origin"].Value)
	require.NoError(t, c.SetPoolProperty(ctx, pool, "bootfs", pool+"/system/default"))

	// Rollback and promote.
	writeFile(t, alt+"/etc/scratch", "to be rolled back")
	require.NoError(t, c.Unmount(ctx, pool+"/data/home", zfs.UnmountOptions{}))
	require.NoError(t, c.Rollback(ctx, pool+"/system/default@base", zfs.RollbackOptions{}))
	_, err = os.Stat(alt + "/etc/scratch")
	assert.True(t, errors.Is(err, os.ErrNotExist), "rollback must remove the file")
	require.NoError(t, c.Mount(ctx, pool+"/data/home"))

	want := sum(t, alt+"/home/user/notes")
	guid, err := c.PoolProperties(ctx, pool, "guid")
	require.NoError(t, err)
	require.NoError(t, c.ExportPool(ctx, pool, zfs.ExportOptions{}))
	labtest.AssertClean(t, "/nonexistent", pool, alt)
	require.NoError(t, c.ExportPool(ctx, pool, zfs.ExportOptions{}), "export is idempotent")
	require.NoError(t, loop.Detach(ctx, 10*time.Second))

	// Import again from the image file alone: attach it afresh, find the
	// pool by its on-disk name on the partition.
	plan, err := disk.ReadGPT(image)
	require.NoError(t, err)
	loop2 := labtest.Attach(t, image, plan)
	alt2 := t.TempDir()
	again := labtest.Name("again")
	// By GUID: the on-disk name "zroot" could be ambiguous on a real host.
	spec := zfs.ImportSpec{Pool: guid["guid"].Value, NewName: again, Temporary: true, Dirs: []string{loop2.PartitionPath(2)}, AltRoot: alt2}
	require.NoError(t, c.ImportPool(ctx, spec))
	require.NoError(t, c.ImportPool(ctx, spec), "import is idempotent")
	defer c.ExportPool(context.Background(), again, zfs.ExportOptions{Force: true})
	assert.Empty(t, labtest.Mounts(alt2), "imported without mounting")
	bootfs, err := c.PoolProperties(ctx, again, "bootfs")
	require.NoError(t, err)
	assert.Equal(t, again+"/system/default", bootfs["bootfs"].Value, "bootfs follows the pool's name")
	require.NoError(t, c.Mount(ctx, again+"/system/default"))
	require.NoError(t, c.Mount(ctx, again+"/data/home"))
	assert.Equal(t, want, sum(t, alt2+"/home/user/notes"))
	status, err := c.PoolStatus(ctx, again)
	require.NoError(t, err)
	assert.Contains(t, status, "ONLINE")
	require.NoError(t, c.Release(ctx, "paczfs", again+"@base", zfs.HoldOptions{Recursive: true}))
	require.NoError(t, c.Promote(ctx, again+"/system/bootable"))
	o, err := c.Properties(ctx, again+"/system/default", "origin")
	require.NoError(t, err)
	assert.Equal(t, again+"/system/bootable@base", o["origin"].Value, "after promote the old root is the clone")
}

func TestLabSendReceiveRoundTrip(t *testing.T) {
	labtest.Require(t)
	c := zfs.New()
	ctx := t.Context()
	pool, alt, _, _ := newPool(t, c)
	src := pool + "/os"
	require.NoError(t, c.CreateDataset(ctx, src, map[string]string{"mountpoint": "/os", "canmount": "on"}, zfs.CreateOptions{}))
	files := map[string]string{"a": strings.Repeat("first version\n", 5000), "b/c": "nested\n"}
	for n, v := range files {
		writeFile(t, alt+"/os/"+n, v)
	}
	require.NoError(t, c.Snapshot(ctx, zfs.SnapshotOptions{}, src+"@1"))
	writeFile(t, alt+"/os/a", "second version\n")
	writeFile(t, alt+"/os/d", "added in 2\n")
	require.NoError(t, c.Snapshot(ctx, zfs.SnapshotOptions{}, src+"@2"))

	// Full stream of @1, then incremental @1..@2, each piped straight
	// from send into receive.
	pipe := func(snap string, so zfs.SendOptions, ro zfs.ReceiveOptions) {
		pr, pw := io.Pipe()
		errc := make(chan error, 1)
		go func() { err := c.Send(ctx, pw, snap, so); pw.CloseWithError(err); errc <- err }()
		require.NoError(t, c.Receive(ctx, pr, pool+"/copy", ro))
		require.NoError(t, <-errc)
	}
	pipe(src+"@1", zfs.SendOptions{}, zfs.ReceiveOptions{Props: map[string]string{"mountpoint": "/copy"}})
	assert.Empty(t, labtest.Mounts(alt+"/copy"), "receive leaves the dataset unmounted")
	pipe(src+"@2", zfs.SendOptions{From: src + "@1", Raw: true}, zfs.ReceiveOptions{Force: true})
	require.NoError(t, c.Mount(ctx, pool+"/copy"))
	for _, n := range []string{"a", "b/c", "d"} {
		assert.Equal(t, sum(t, alt+"/os/"+n), sum(t, alt+"/copy/"+n), n)
	}
	snaps, err := c.List(ctx, pool+"/copy", zfs.ListOptions{Types: []string{"snapshot"}, Recursive: true})
	require.NoError(t, err)
	require.Len(t, snaps, 2)
	assert.Equal(t, pool+"/copy@2", snaps[1].Name)
}

func TestLabSendIsCancelledByContext(t *testing.T) {
	labtest.Require(t)
	c := zfs.New()
	pool, alt, _, _ := newPool(t, c)
	require.NoError(t, c.CreateDataset(t.Context(), pool+"/big", map[string]string{"mountpoint": "/big", "compression": "off"}, zfs.CreateOptions{}))
	labtest.Run(t, "dd", "if=/dev/urandom", "of="+alt+"/big/blob", "bs=1M", "count=256", "status=none")
	require.NoError(t, c.Snapshot(t.Context(), zfs.SnapshotOptions{}, pool+"/big@s"))
	ctx, cancel := context.WithCancel(t.Context())
	// A reader that never reads: send blocks on a full pipe until cancelled.
	pr, pw := io.Pipe()
	defer pr.Close()
	time.AfterFunc(500*time.Millisecond, cancel)
	start := time.Now()
	err := c.Send(ctx, pw, pool+"/big@s", zfs.SendOptions{})
	require.Error(t, err)
	assert.True(t, errors.Is(err, context.Canceled), "got %v", err)
	assert.Less(t, time.Since(start), 15*time.Second)
	out, _ := exec.Command("pgrep", "-f", "zfs send").Output()
	assert.Empty(t, strings.TrimSpace(string(out)), "no zfs send left running")
}

func TestLabFourParallelBuildsDoNotInterfere(t *testing.T) {
	labtest.Require(t)
	c := zfs.New()
	const n = 4
	var wg sync.WaitGroup
	errs := make([]error, n)
	guids := make([]string, n)
	images := make([]string, n)
	for i := 0; i < n; i++ {
		images[i] = filepath.Join(t.TempDir(), "disk.img")
		wg.Add(1)
		go func() {
			defer wg.Done()
			guids[i], errs[i] = storageBuild(context.Background(), c, images[i], fmt.Sprintf("build %d", i), nil)
		}()
	}
	wg.Wait()
	seen := map[string]bool{}
	for i := 0; i < n; i++ {
		require.NoError(t, errs[i], "build %d", i)
		assert.False(t, seen[guids[i]], "pool guids must differ")
		seen[guids[i]] = true
		labtest.AssertClean(t, images[i], "zroot", "")
	}
	// Each image holds its own pool with its own marker file.
	for i := 0; i < n; i++ {
		plan, err := disk.ReadGPT(images[i])
		require.NoError(t, err)
		l := labtest.Attach(t, images[i], plan)
		name, alt := labtest.Name("check"), t.TempDir()
		require.NoError(t, c.ImportPool(t.Context(), zfs.ImportSpec{Pool: "zroot", NewName: name, Temporary: true, Dirs: []string{l.PartitionPath(2)}, AltRoot: alt}))
		require.NoError(t, c.Mount(t.Context(), name+"/system/default"))
		b, err := os.ReadFile(alt + "/etc/marker")
		require.NoError(t, err)
		assert.Equal(t, fmt.Sprintf("build %d", i), string(b))
		require.NoError(t, c.ExportPool(t.Context(), name, zfs.ExportOptions{}))
	}
}

var errInjected = errors.New("injected failure")

// storageBuild runs the storage stages as the image builder does, with
// every acquisition registered for release; failAfter, when set, is called
// once the pool and datasets exist and mounted, and its error aborts the build.
func storageBuild(ctx context.Context, c *zfs.Client, image, marker string, failAfter func() error) (guid string, err error) {
	var st cleanup.Stack
	defer func() { err = errors.Join(err, st.Unwind(ctx)) }()
	if _, err := disk.CreateImage(image, disk.GiB, disk.ImageOptions{}); err != nil {
		return "", err
	}
	plan, err := disk.DefaultLayout(512*disk.MiB, 0, "zroot").Plan(disk.GiB)
	if err != nil {
		return "", err
	}
	if err := disk.WriteGPT(image, plan); err != nil {
		return "", err
	}
	l, err := disk.Attach(ctx, image, disk.LoopOptions{PartScan: true})
	if err != nil {
		return "", err
	}
	st.Push("detach "+l.Path, func(ctx context.Context) error { return l.Detach(ctx, 10*time.Second) })
	if err := l.WaitPartitions(ctx, 10*time.Second, 1, 2); err != nil {
		return "", err
	}
	pool, alt := labtest.Name("build"), filepath.Join(filepath.Dir(image), "root")
	if err := c.CreatePool(ctx, zfs.PoolSpec{Name: "zroot", TempName: pool, AltRoot: alt, Vdevs: []string{l.PartitionPath(2)}}); err != nil {
		return "", err
	}
	st.Push("export "+pool, func(ctx context.Context) error { return c.ExportPool(ctx, pool, zfs.ExportOptions{}) })
	if err := c.CreateDatasets(ctx, pool, zfs.DefaultDatasets()); err != nil {
		return "", err
	}
	if err := os.MkdirAll(alt+"/etc", 0o755); err != nil {
		return "", err
	}
	if err := os.WriteFile(alt+"/etc/marker", []byte(marker), 0o644); err != nil {
		return "", err
	}
	if failAfter != nil {
		if err := failAfter(); err != nil {
			return "", err
		}
	}
	p, err := c.PoolProperties(ctx, pool, "guid")
	if err != nil {
		return "", err
	}
	return p["guid"].Value, nil
}

func TestLabFailureAfterPoolCreationLeavesHostClean(t *testing.T) {
	labtest.Require(t)
	c := zfs.New()
	image := filepath.Join(t.TempDir(), "disk.img")
	var pool string
	_, err := storageBuild(t.Context(), c, image, "x", func() error {
		pools, _ := c.Pools(t.Context())
		for _, p := range pools {
			if strings.HasPrefix(p, "build") {
				pool = p
			}
		}
		assert.NotEmpty(t, labtest.Mounts(filepath.Join(filepath.Dir(image), "root")), "datasets are mounted when the failure hits")
		return errInjected
	})
	require.ErrorIs(t, err, errInjected)
	require.NotEmpty(t, pool)
	labtest.AssertClean(t, image, pool, filepath.Join(filepath.Dir(image), "root"))
}

func TestLabErrorClassification(t *testing.T) {
	labtest.Require(t)
	c := zfs.New()
	ctx := t.Context()
	pool, alt, _, _ := newPool(t, c)
	require.NoError(t, c.CreateDataset(ctx, pool+"/a/b", map[string]string{"mountpoint": "/a/b"}, zfs.CreateOptions{Parents: true}))

	captured := map[string]string{}
	check := func(what string, err error, want error) {
		t.Helper()
		require.Error(t, err, what)
		assert.True(t, errors.Is(err, want), "%s: want %v, got %v", what, want, err)
		var ce *hooks.CmdError
		if errors.As(err, &ce) {
			captured[what] = ce.Stderr
		}
	}
	check("create existing", c.CreateDataset(ctx, pool+"/a", nil, zfs.CreateOptions{}), zfs.ErrExists)
	_, err := c.Properties(ctx, pool+"/nope")
	check("get missing", err, zfs.ErrNotFound)
	_, err = c.PoolProperties(ctx, "nopool"+pool)
	check("missing pool", err, zfs.ErrNotFound)
	check("import missing", c.ImportPool(ctx, zfs.ImportSpec{Pool: "nopool" + pool, Dirs: []string{"/dev"}}), zfs.ErrNotFound)
	check("destroy with children", c.Destroy(ctx, pool+"/a", zfs.DestroyOptions{}), zfs.ErrHasDependents)
	require.NoError(t, c.Snapshot(ctx, zfs.SnapshotOptions{}, pool+"/a/b@s"))
	check("snapshot existing", c.Snapshot(ctx, zfs.SnapshotOptions{}, pool+"/a/b@s"), zfs.ErrExists)
	require.NoError(t, c.Hold(ctx, "keep", pool+"/a/b@s", zfs.HoldOptions{}))
	check("hold twice", c.Hold(ctx, "keep", pool+"/a/b@s", zfs.HoldOptions{}), zfs.ErrExists)
	check("destroy held", c.Destroy(ctx, pool+"/a/b@s", zfs.DestroyOptions{}), zfs.ErrBusy)
	check("release missing tag", c.Release(ctx, "other", pool+"/a/b@s", zfs.HoldOptions{}), zfs.ErrNotFound)
	require.NoError(t, c.Release(ctx, "keep", pool+"/a/b@s", zfs.HoldOptions{}))
	require.NoError(t, c.Clone(ctx, pool+"/a/b@s", pool+"/c", zfs.CloneOptions{}))
	check("destroy with clones", c.Destroy(ctx, pool+"/a/b@s", zfs.DestroyOptions{}), zfs.ErrHasDependents)
	require.NoError(t, c.Rename(ctx, pool+"/c", pool+"/x/clone", zfs.RenameOptions{Parents: true}))
	ok, err := c.Exists(ctx, pool+"/x/clone")
	require.NoError(t, err)
	assert.True(t, ok, "renamed with parents created")
	ok, err = c.Exists(ctx, pool+"/c")
	require.NoError(t, err)
	assert.False(t, ok)
	check("rename missing", c.Rename(ctx, pool+"/c", pool+"/d", zfs.RenameOptions{}), zfs.ErrNotFound)

	f, err := os.Open(alt + "/a/b")
	require.NoError(t, err)
	check("export busy", c.ExportPool(ctx, pool, zfs.ExportOptions{}), zfs.ErrBusy)
	f.Close()
	for what, msg := range captured {
		t.Logf("%-20s %q", what, msg)
	}
}

// allocated is how many bytes of path's file are on disk.
func allocated(t *testing.T, path string) int64 {
	fi, err := os.Stat(path)
	require.NoError(t, err)
	return fi.Sys().(*syscall.Stat_t).Blocks * 512
}

// TestLabTrimPunchesHolesInTheImage: TrimPool gives a file's freed
// blocks back to the sparse image (autotrim off, so the trim is
// TrimPool's), and a pool on a loop device that cannot discard gives
// ErrNotSupported.
func TestLabTrimPunchesHolesInTheImage(t *testing.T) {
	labtest.Require(t)
	c := zfs.New()
	ctx := t.Context()
	pool, alt, image, _ := newPool(t, c)
	require.NoError(t, c.SetPoolProperty(ctx, pool, "autotrim", "off"))
	require.NoError(t, c.CreateDatasets(ctx, pool, zfs.DefaultDatasets())) // the root at alt
	noise := make([]byte, 48<<20)
	_, err := rand.Read(noise)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(alt, "noise"), noise, 0o644))
	labtest.Run(t, "zpool", "sync", pool)
	written := allocated(t, image)
	require.NoError(t, os.Remove(filepath.Join(alt, "noise")))
	labtest.Run(t, "zpool", "sync", pool)
	assert.Greater(t, allocated(t, image), written-8<<20, "freeing alone gives nothing back")
	require.NoError(t, c.TrimPool(ctx, pool, zfs.TrimOptions{Wait: true}))
	trimmed := allocated(t, image)
	t.Logf("image allocated: %d MiB with the file, %d MiB after it was removed and the pool trimmed", written>>20, trimmed>>20)
	assert.Less(t, trimmed, written-40<<20, "the file's blocks are holes again")

	// A loop device that cannot discard (its limit set to 0 before the
	// pool opens it).
	image2, plan := labtest.Image(t, 2*disk.GiB)
	loop := labtest.Attach(t, image2, plan)
	require.NoError(t, os.WriteFile(filepath.Join("/sys/block", filepath.Base(loop.Path), "queue/discard_max_bytes"), []byte("0"), 0o644))
	pool2 := labtest.Name("paczfs")
	require.NoError(t, c.CreatePool(ctx, zfs.PoolSpec{Name: "zroot", TempName: pool2, AltRoot: t.TempDir(), Vdevs: []string{loop.PartitionPath(2)}}))
	t.Cleanup(func() { _ = c.ExportPool(context.Background(), pool2, zfs.ExportOptions{Force: true}) })
	err = c.TrimPool(ctx, pool2, zfs.TrimOptions{Wait: true})
	t.Log(err)
	assert.ErrorIs(t, err, zfs.ErrNotSupported)
}

//go:build lab

package release_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/paczfs/paczfs/bootenv"
	"github.com/paczfs/paczfs/disk"
	"github.com/paczfs/paczfs/internal/labtest"
	"github.com/paczfs/paczfs/internal/testutil"
	"github.com/paczfs/paczfs/release"
	"github.com/paczfs/paczfs/release/oci"
	"github.com/paczfs/paczfs/zfs"
)

func pool(t testing.TB, z *zfs.Client, prefix string) string {
	image, plan := labtest.Image(t, 1*disk.GiB)
	loop := labtest.Attach(t, image, plan)
	name := labtest.Name(prefix)
	require.NoError(t, z.CreatePool(t.Context(), zfs.PoolSpec{Name: prefix, TempName: name, AltRoot: t.TempDir(), Vdevs: []string{loop.PartitionPath(2)}}))
	t.Cleanup(func() { _ = z.ExportPool(context.Background(), name, zfs.ExportOptions{Force: true}) })
	require.NoError(t, z.CreateDataset(t.Context(), name+"/system", map[string]string{"canmount": "off", "mountpoint": "none"}, zfs.CreateOptions{}))
	return name
}

// edit mounts a root dataset, runs fn on it, unmounts.
func edit(t testing.TB, ds string, fn func(root string)) {
	dir := t.TempDir()
	labtest.Run(t, "mount", "-t", "zfs", "-o", "zfsutil", ds, dir)
	fn(dir)
	labtest.Run(t, "umount", dir)
}

func write(t testing.TB, root, name, content string) {
	p := filepath.Join(root, name)
	require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
	require.NoError(t, os.WriteFile(p, []byte(content), 0o644))
}

func guid(t testing.TB, snap string) string {
	return strings.TrimSpace(labtest.Run(t, "zfs", "get", "-H", "-p", "-o", "value", "guid", snap))
}

func send(t testing.TB, z *zfs.Client, dir, file, snap string, o zfs.SendOptions) release.Stream {
	var b bytes.Buffer
	require.NoError(t, z.Send(t.Context(), &b, snap, o))
	require.NoError(t, os.WriteFile(filepath.Join(dir, file), b.Bytes(), 0o644))
	sum := sha256.Sum256(b.Bytes())
	kind := release.Full
	if o.From != "" {
		kind = release.Incremental
	}
	return release.Stream{Kind: kind, File: file, Size: int64(b.Len()), SHA256: hex.EncodeToString(sum[:])}
}

// v1 on a device (received from its full stream, the default), v2 made
// on a build pool as a descendant of v1, released (incremental and full
// streams, a signed manifest) and applied on the device: received as a
// clone of v1's snapshot, its boot files on the ESP, a trial.
func TestLabApplyIncrementalReleaseOnADevice(t *testing.T) {
	labtest.Require(t)
	ctx := t.Context()
	z := zfs.New()
	build := pool(t, z, "relbuild")
	dev := pool(t, z, "reldev")
	out := t.TempDir()

	// Build side: v1, then v2 from it.
	v1 := build + "/system/v1"
	require.NoError(t, z.CreateDataset(ctx, v1, map[string]string{"canmount": "noauto", "mountpoint": "/"}, zfs.CreateOptions{}))
	edit(t, v1, func(root string) {
		write(t, root, "etc/paczfs/boot.json", `{"kernel":"/boot/vmlinuz-{kver}","initrd":"/boot/initrd.img-{kver}","root_options":["boot=zfs","root=ZFS={dataset}","rw"]}`)
		write(t, root, "boot/vmlinuz-6.12.1", "kernel 6.12.1")
		write(t, root, "boot/initrd.img-6.12.1", "initrd 6.12.1")
		big := make([]byte, 4<<20) // 4 MiB that do not compress, as binaries nearly do not
		_, err := rand.Read(big)
		require.NoError(t, err)
		write(t, root, "usr/share/big", string(big))
	})
	require.NoError(t, z.Snapshot(ctx, zfs.SnapshotOptions{}, v1+"@v1"))
	v2 := build + "/system/v2"
	require.NoError(t, z.Clone(ctx, v1+"@v1", v2, zfs.CloneOptions{Props: map[string]string{"canmount": "noauto", "mountpoint": "/"}}))
	edit(t, v2, func(root string) { write(t, root, "etc/v2-marker", "v2\n") })
	require.NoError(t, z.Snapshot(ctx, zfs.SnapshotOptions{}, v2+"@v2"))
	v1dir := t.TempDir()
	fullV1 := send(t, z, v1dir, "v1.zstream", v1+"@v1", zfs.SendOptions{Compressed: true, LargeBlocks: true})
	secret, public, err := release.GenerateKey("paczfs lab releases", "")
	require.NoError(t, err)
	m, err := release.Write(ctx, z, release.WriteOptions{Snapshot: v2 + "@v2", Base: v1 + "@v1", Dir: out, Name: "lab",
		Version: "2", Previous: "1", Kernel: "6.12.1", Secret: secret,
		Packages:         []release.Package{{Name: "linux", Version: "6.12.1"}, {Name: "tmux", Version: "3.5"}},
		PreviousPackages: []release.Package{{Name: "linux", Version: "6.12.0"}}})
	require.NoError(t, err)
	incr, ok := m.Stream(release.Incremental)
	require.True(t, ok)
	full, ok := m.Stream(release.Full)
	require.True(t, ok)
	t.Logf("FIGURE stream bytes: full %d, incremental %d (%.2f%%)", full.Size, incr.Size, 100*float64(incr.Size)/float64(full.Size))
	assert.Less(t, incr.Size, full.Size/20, "the incremental stream carries the change only")
	assert.Equal(t, guid(t, v2+"@v2"), m.GUID)
	assert.Equal(t, guid(t, v1+"@v1"), m.BaseGUID)
	assert.NotEmpty(t, m.Features, "the pool features the stream needs")
	t.Logf("features: %v", m.Features)
	assert.Equal(t, release.Changes{Added: []release.Package{{Name: "tmux", Version: "3.5"}}, Upgraded: []release.Upgrade{{Name: "linux", From: "6.12.0", To: "6.12.1"}}}, m.Changes)
	// What a person checks with gpg: the signature over these bytes.
	data, err := os.ReadFile(filepath.Join(out, release.ManifestFile))
	require.NoError(t, err)
	sig, err := os.ReadFile(filepath.Join(out, release.SignatureFile))
	require.NoError(t, err)
	_, err = release.Verify(data, sig, public)
	require.NoError(t, err)

	// The device at v1: received from v1's full stream, the default.
	f, err := os.Open(filepath.Join(v1dir, fullV1.File))
	require.NoError(t, err)
	require.NoError(t, z.Receive(ctx, f, dev+"/system/v1", zfs.ReceiveOptions{Props: map[string]string{"canmount": "noauto", "mountpoint": "/", release.PropVersion: "1"}}))
	f.Close()
	esp := t.TempDir()
	be, err := bootenv.New(ctx, bootenv.WithImage(), bootenv.WithPool(dev), bootenv.WithESP(esp), bootenv.WithLogger(labtest.Logger(t)))
	require.NoError(t, err)
	require.NoError(t, be.InstallBootFiles(ctx, "v1"))
	require.NoError(t, be.Activate(ctx, "v1", bootenv.ActivateOptions{Mode: bootenv.Permanent}))

	// A receive cut short (a power cut mid-stream) leaves nothing.
	part, err := os.ReadFile(filepath.Join(out, incr.File))
	require.NoError(t, err)
	err = z.Receive(ctx, bytes.NewReader(part[:len(part)/2]), dev+"/system/cut", zfs.ReceiveOptions{Props: map[string]string{"origin": dev + "/system/v1@v1"}})
	require.Error(t, err)
	ok, err = z.Exists(ctx, dev+"/system/cut")
	require.NoError(t, err)
	assert.False(t, ok, "an interrupted receive keeps no dataset")

	// A flipped byte in the stream, on a real pool: refused, nothing made.
	bad := t.TempDir()
	for _, name := range []string{release.ManifestFile, release.SignatureFile, incr.File, full.File} {
		b, err := os.ReadFile(filepath.Join(out, name))
		require.NoError(t, err)
		if name == incr.File {
			b[len(b)/2] ^= 0x40
		}
		require.NoError(t, os.WriteFile(filepath.Join(bad, name), b, 0o644))
	}
	_, err = release.Apply(ctx, be, release.ApplyOptions{Dir: bad, Trusted: [][]byte{public}, Name: "tampered"})
	assert.ErrorIs(t, err, release.ErrStream)
	ok, err = z.Exists(ctx, dev+"/system/tampered")
	require.NoError(t, err)
	assert.False(t, ok)

	// Refused before zfs receive, with nothing created, on a real pool: a
	// manifest signed by a key the device does not trust; a valid one for
	// a base the device does not have (no full stream to fall back on);
	// an older or equal version replayed; a pool without the room.
	resign := func(edit func(*release.Manifest), key []byte) string {
		dir := t.TempDir()
		mf := *m
		mf.Streams = slices.Clone(m.Streams)
		edit(&mf)
		data, err := mf.Marshal()
		require.NoError(t, err)
		sig, err := release.Sign(data, key)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, release.ManifestFile), data, 0o644))
		require.NoError(t, os.WriteFile(filepath.Join(dir, release.SignatureFile), sig, 0o644))
		for _, st := range mf.Streams {
			require.NoError(t, os.Link(filepath.Join(out, st.File), filepath.Join(dir, st.File)))
		}
		return dir
	}
	stranger, _, err := release.GenerateKey("someone else", "")
	require.NoError(t, err)
	incrOnly := func(mf *release.Manifest) { mf.Streams = []release.Stream{incr} }
	hog := dev + "/hog"
	for name, tc := range map[string]struct {
		dir  string
		want error
		prep func()
	}{
		"an unknown key": {resign(func(*release.Manifest) {}, stranger), release.ErrSignature, nil},
		"another base":   {resign(func(mf *release.Manifest) { incrOnly(mf); mf.BaseGUID = "12345678901234567" }, secret), release.ErrNoBase, nil},
		"replayed":       {resign(func(mf *release.Manifest) { mf.Version = "1" }, secret), release.ErrDowngrade, nil},
		"older":          {resign(func(mf *release.Manifest) { mf.Version = "0.9" }, secret), release.ErrDowngrade, nil},
		"a full pool": {out, release.ErrSpace, func() {
			// A reservation takes all but 16 MiB of the pool.
			p, err := z.Properties(ctx, dev+"/system", "available")
			require.NoError(t, err)
			avail, err := strconv.ParseInt(p["available"].Value, 10, 64)
			require.NoError(t, err)
			require.NoError(t, z.CreateDataset(ctx, hog, map[string]string{"refreservation": strconv.FormatInt(avail-16<<20, 10), "canmount": "off"}, zfs.CreateOptions{}))
		}},
	} {
		if tc.prep != nil {
			tc.prep()
		}
		_, err := release.Apply(ctx, be, release.ApplyOptions{Dir: tc.dir, Trusted: [][]byte{public}, Name: "refused"})
		assert.ErrorIs(t, err, tc.want, name)
		ok, eerr := z.Exists(ctx, dev+"/system/refused")
		require.NoError(t, eerr)
		assert.False(t, ok, "%s: nothing received", name)
		t.Logf("refused, %s: %v", name, err)
	}
	require.NoError(t, z.Destroy(ctx, hog, zfs.DestroyOptions{}))
	booted, err := z.PoolProperties(ctx, dev, "bootfs")
	require.NoError(t, err)
	assert.Equal(t, dev+"/system/v1", booted["bootfs"].Value, "the running system is untouched")

	start := time.Now()
	res, err := release.Apply(ctx, be, release.ApplyOptions{Dir: out, Trusted: [][]byte{public}, Tries: 2, Logger: labtest.Logger(t)})
	require.NoError(t, err)
	took := time.Since(start)
	assert.Equal(t, release.Result{Env: "release-2", Version: "2", Stream: release.Incremental, Signer: res.Signer}, res)
	ds := dev + "/system/release-2"
	props, err := z.Properties(ctx, ds, "origin", "canmount", "mountpoint", "mounted", release.PropVersion, bootenv.PropState)
	require.NoError(t, err)
	assert.Equal(t, dev+"/system/v1@v1", props["origin"].Value, "received as a clone of the device's v1")
	assert.Equal(t, "noauto", props["canmount"].Value)
	assert.Equal(t, "no", props["mounted"].Value)
	assert.Equal(t, "2", props[release.PropVersion].Value)
	assert.Equal(t, "trying", props[bootenv.PropState].Value)
	assert.Equal(t, m.GUID, guid(t, ds+"@v2"), "the snapshot keeps the release's guid")
	entry, err := os.ReadFile(filepath.Join(esp, "loader/entries/paczfs-release-2+2.conf"))
	require.NoError(t, err, "a trial entry with 2 tries")
	assert.Contains(t, string(entry), "root=ZFS="+ds+" rw paczfs.trial panic=10")
	kernel, err := os.ReadFile(filepath.Join(esp, "env/release-2/vmlinuz-6.12.1"))
	require.NoError(t, err)
	assert.Equal(t, "kernel 6.12.1", string(kernel))
	edit(t, ds, func(root string) {
		b, err := os.ReadFile(filepath.Join(root, "etc/v2-marker"))
		require.NoError(t, err)
		assert.Equal(t, "v2\n", string(b))
	})
	bootfs, err := z.PoolProperties(ctx, dev, "bootfs")
	require.NoError(t, err)
	assert.Equal(t, dev+"/system/v1", bootfs["bootfs"].Value, "v1 stays the default until v2 boots well")

	// Applying again (after a power cut once the stream was received)
	// carries on with what is there: nothing received twice.
	res, err = release.Apply(ctx, be, release.ApplyOptions{Dir: out, Trusted: [][]byte{public}, Tries: 2})
	require.NoError(t, err)
	assert.True(t, res.Resumed)

	// The same release over the wire, each time into a pool without it:
	// over HTTP from a server on the guest's loopback, the first
	// download cut halfway (resumed by the second apply), then from an
	// OCI registry (Debian's docker-registry, on loopback).
	require.NoError(t, be.Destroy(ctx, "release-2"))
	var mu sync.Mutex
	var requests []string
	cut := true
	files := http.FileServer(http.Dir(out))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		requests = append(requests, strings.TrimSpace(r.URL.Path+" "+r.Header.Get("Range")))
		cutNow := cut && r.URL.Path == "/"+incr.File
		if cutNow {
			cut = false
		}
		mu.Unlock()
		if cutNow {
			data, _ := os.ReadFile(filepath.Join(out, incr.File))
			w.Header().Set("Content-Length", strconv.Itoa(len(data)))
			w.Write(data[:len(data)/2])
			conn, _, _ := w.(http.Hijacker).Hijack()
			conn.Close()
			return
		}
		files.ServeHTTP(w, r)
	}))
	defer srv.Close()
	httpSrc, err := release.HTTPSource(srv.URL, nil)
	require.NoError(t, err)
	work := t.TempDir()
	_, err = release.Apply(ctx, be, release.ApplyOptions{Source: httpSrc, Dir: work, Trusted: [][]byte{public}, Name: "http-2"})
	require.ErrorIs(t, err, release.ErrSource, "the cut download")
	ok, err = z.Exists(ctx, dev+"/system/http-2")
	require.NoError(t, err)
	assert.False(t, ok, "nothing is received from a cut download")
	res, err = release.Apply(ctx, be, release.ApplyOptions{Source: httpSrc, Dir: work, Trusted: [][]byte{public}, Name: "http-2"})
	require.NoError(t, err)
	assert.Equal(t, release.Incremental, res.Stream)
	assert.Equal(t, m.GUID, guid(t, dev+"/system/http-2@v2"))
	mu.Lock()
	t.Logf("HTTP requests: %v", requests)
	assert.Contains(t, strings.Join(requests, "\n"), "/"+incr.File+" bytes=", "the second apply resumed with a Range request")
	mu.Unlock()
	require.NoError(t, be.Destroy(ctx, "http-2"))

	reg := testutil.Registry(t)
	ref := reg + "/paczfs/lab:2"
	digest, err := oci.Push(ctx, out, ref, oci.Options{Insecure: true})
	require.NoError(t, err)
	ociSrc, err := oci.NewSource(ctx, ref, oci.Options{Insecure: true})
	require.NoError(t, err)
	res, err = release.Apply(ctx, be, release.ApplyOptions{Source: ociSrc, Dir: t.TempDir(), Trusted: [][]byte{public}, Name: "oci-2"})
	require.NoError(t, err)
	t.Logf("pushed %s as %s, applied as %s", out, digest, res.Env)
	props, err = z.Properties(ctx, dev+"/system/oci-2", "origin", bootenv.PropState)
	require.NoError(t, err)
	assert.Equal(t, dev+"/system/v1@v1", props["origin"].Value)
	assert.Equal(t, "trying", props[bootenv.PropState].Value)
	assert.Equal(t, m.GUID, guid(t, dev+"/system/oci-2@v2"))
	require.NoError(t, be.Destroy(ctx, "oci-2"))

	// A bare zfs receive of the same stream (in place of release-2), for
	// the apply figure.
	f, err = os.Open(filepath.Join(out, incr.File))
	require.NoError(t, err)
	start = time.Now()
	require.NoError(t, z.Receive(ctx, f, dev+"/system/bare", zfs.ReceiveOptions{Props: map[string]string{"origin": dev + "/system/v1@v1"}}))
	bare := time.Since(start)
	f.Close()
	t.Logf("FIGURE apply (verify + receive + ESP + trial) %.2fs, bare zfs receive %.2fs: ratio %.2f", took.Seconds(), bare.Seconds(), took.Seconds()/bare.Seconds())

}

// BenchmarkLabUpdate (make bench-update) prints a release's figures for
// two updates of a 64 MiB root: one package's new library (1 MiB, what a
// package upgrade is to a root) and a kernel upgrade's size (128 MiB of
// new modules and initramfs). For each: the incremental stream's bytes
// against the full one's, and the seconds to apply the incremental stream
// (verify, receive, boot files, trial) against a bare zfs receive of it,
// three runs each in alternating order: every run, the medians and their
// ratio, and where apply's time goes. Apply's own work beside the receive
// is about constant, so the ratio falls as the stream grows. It asserts
// nothing about speed.
func BenchmarkLabUpdate(b *testing.B) {
	labtest.Require(b)
	ctx := context.Background()
	z := zfs.New()
	build := pool(b, z, "benchbuild")
	dev := pool(b, z, "benchdev")
	v1 := build + "/system/v1"
	require.NoError(b, z.CreateDataset(ctx, v1, map[string]string{"canmount": "noauto", "mountpoint": "/"}, zfs.CreateOptions{}))
	edit(b, v1, func(root string) {
		write(b, root, "etc/paczfs/boot.json", `{"kernel":"/boot/vmlinuz-{kver}","initrd":"/boot/initrd.img-{kver}","root_options":["boot=zfs","root=ZFS={dataset}","rw"]}`)
		write(b, root, "boot/vmlinuz-6.12.1", "kernel 6.12.1")
		write(b, root, "boot/initrd.img-6.12.1", "initrd 6.12.1")
		for i := 0; i < 16; i++ {
			big := make([]byte, 4<<20)
			_, _ = rand.Read(big)
			write(b, root, "usr/lib/pkg"+strconv.Itoa(i)+"/lib.so", string(big))
		}
	})
	require.NoError(b, z.Snapshot(ctx, zfs.SnapshotOptions{}, v1+"@v1"))
	secret, public, err := release.GenerateKey("paczfs bench releases", "")
	require.NoError(b, err)
	v1dir := b.TempDir()
	full1 := send(b, z, v1dir, "v1.zstream", v1+"@v1", zfs.SendOptions{Compressed: true, LargeBlocks: true})
	sf, err := os.Open(filepath.Join(v1dir, full1.File))
	require.NoError(b, err)
	require.NoError(b, z.Receive(ctx, sf, dev+"/system/v1", zfs.ReceiveOptions{Props: map[string]string{"canmount": "noauto", "mountpoint": "/", release.PropVersion: "1"}}))
	sf.Close()
	be, err := bootenv.New(ctx, bootenv.WithImage(), bootenv.WithPool(dev), bootenv.WithESP(b.TempDir()))
	require.NoError(b, err)
	require.NoError(b, be.InstallBootFiles(ctx, "v1"))
	require.NoError(b, be.Activate(ctx, "v1", bootenv.ActivateOptions{Mode: bootenv.Permanent}))

	fmt.Printf("update figures (one run of the lab):\n")
	var ratios []float64
	for i, c := range []struct {
		what string
		mib  int
	}{{"one package's new library", 1}, {"a kernel upgrade's size", 128}} {
		// v2: a descendant of v1 with the change, released.
		v2 := build + "/system/v2-" + strconv.Itoa(i)
		require.NoError(b, z.Clone(ctx, v1+"@v1", v2, zfs.CloneOptions{Props: map[string]string{"canmount": "noauto", "mountpoint": "/"}}))
		edit(b, v2, func(root string) {
			for j := 0; j < c.mib; j++ {
				up := make([]byte, 1<<20)
				_, _ = rand.Read(up)
				write(b, root, "usr/lib/modules/6.12.2/kernel/m"+strconv.Itoa(j)+".ko", string(up))
			}
		})
		require.NoError(b, z.Snapshot(ctx, zfs.SnapshotOptions{}, v2+"@v2"))
		out := b.TempDir()
		m, err := release.Write(ctx, z, release.WriteOptions{Snapshot: v2 + "@v2", Base: v1 + "@v1", Dir: out, Name: "bench",
			Version: "2", Previous: "1", Kernel: "6.12.1", Secret: secret})
		require.NoError(b, err)
		incr, _ := m.Stream(release.Incremental)
		full, _ := m.Stream(release.Full)
		apply, bare, steps, order := measureApply(b, z, be, dev, out, incr.File, public)
		fmt.Printf("  %s (%d MiB):\n", c.what, c.mib)
		fmt.Printf("    full stream %d bytes, incremental %d bytes: %.2f%% of the full (target under 5%%)\n", full.Size, incr.Size, 100*float64(incr.Size)/float64(full.Size))
		ratio := labtest.Compare(os.Stdout, "apply", apply, "bare-receive", bare)
		fmt.Printf("    (target: apply/bare-receive at most 1.2)\n")
		ratios = append(ratios, ratio)
		fmt.Printf("    apply's time by step (the three runs summed; each from the step to the next):\n")
		for _, s := range order {
			fmt.Printf("      %-10s %.3fs\n", s, steps[s].Seconds())
		}
		if i == 0 {
			b.ReportMetric(float64(incr.Size)/float64(full.Size), "incr/full")
		}
	}
	fmt.Printf("  (derive v2 from v1 against a build from scratch: BenchmarkLabDerive in ./image)\n")
	b.ReportMetric(ratios[0], "apply/receive-1MiB")
	b.ReportMetric(ratios[1], "apply/receive-128MiB")
}

// measureApply applies the release in dir on the device three times and
// receives its stream bare three times, alternating which goes first.
func measureApply(b *testing.B, z *zfs.Client, be *bootenv.Manager, dev, dir, stream string, public []byte) (apply, bare labtest.Runs, steps map[release.Step]time.Duration, order []release.Step) {
	ctx := context.Background()
	steps = map[release.Step]time.Duration{}
	applyOnce := func() time.Duration {
		start := time.Now()
		last, prev := start, release.Step("start")
		step := func(s release.Step) {
			if _, ok := steps[prev]; !ok {
				order = append(order, prev)
			}
			steps[prev] += time.Since(last)
			last, prev = time.Now(), s
		}
		_, err := release.Apply(ctx, be, release.ApplyOptions{Dir: dir, Trusted: [][]byte{public}, Name: "bench", Step: step})
		step("end")
		took := time.Since(start)
		require.NoError(b, err)
		require.NoError(b, be.Destroy(ctx, "bench"))
		return took
	}
	bareOnce := func() time.Duration {
		f, err := os.Open(filepath.Join(dir, stream))
		require.NoError(b, err)
		defer f.Close()
		start := time.Now()
		require.NoError(b, z.Receive(ctx, f, dev+"/system/bare", zfs.ReceiveOptions{Props: map[string]string{"origin": dev + "/system/v1@v1"}}))
		took := time.Since(start)
		require.NoError(b, z.Destroy(ctx, dev+"/system/bare", zfs.DestroyOptions{Recursive: true}))
		return took
	}
	apply, bare = labtest.Alternate(3, applyOnce, bareOnce)
	return apply, bare, steps, order
}

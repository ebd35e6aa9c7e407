package image

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/paczfs/paczfs/hooks/hookstest"
	"github.com/paczfs/paczfs/pacman"
	"github.com/paczfs/paczfs/zfs"
)

// listTree lists a tree as archiveTree must keep it: path, mode, owner,
// content or link target, extended attributes, modification time of
// files, and which names share an inode.
func listTree(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	inodes := map[uint64]string{}
	require.NoError(t, filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		require.NoError(t, err)
		fi, err := d.Info()
		require.NoError(t, err)
		st := fi.Sys().(*syscall.Stat_t)
		rel, _ := filepath.Rel(dir, p)
		line := fmt.Sprintf("%s %s %d:%d", rel, fi.Mode(), st.Uid, st.Gid)
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			line += " -> " + target
		case fi.Mode().IsRegular():
			data, err := os.ReadFile(p)
			require.NoError(t, err)
			line += fmt.Sprintf(" %q %d", data, fi.ModTime().Unix())
			if first, ok := inodes[st.Ino]; ok {
				line += " same as " + first
			} else {
				inodes[st.Ino] = rel
			}
		default:
			line += fmt.Sprintf(" %d", fi.ModTime().Unix())
		}
		if x, err := xattrs(p, fi); err == nil && len(x) > 0 {
			line += fmt.Sprintf(" %v", x)
		}
		out = append(out, line)
		return nil
	}))
	return out
}

func TestArchiveTreeRoundTrip(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test sets owners: run it as root (make unit does)")
	}
	src := t.TempDir()
	when := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	mk := func(rel string, mode fs.FileMode, uid, gid int, data string) {
		p := filepath.Join(src, rel)
		if mode.IsDir() {
			require.NoError(t, os.Mkdir(p, 0o700))
		} else {
			require.NoError(t, os.WriteFile(p, []byte(data), 0o600))
		}
		require.NoError(t, os.Lchown(p, uid, gid))
		require.NoError(t, os.Chmod(p, mode))
	}
	require.NoError(t, os.Chmod(src, 0o750)) // the filesystem package's /root
	mk("http", fs.ModeDir|0o755, 33, 33, "")
	mk("ftp", fs.ModeDir|0o555, 0, 14, "")
	mk("tmp", fs.ModeDir|fs.ModeSticky|0o777, 0, 0, "")
	mk("http/index.html", 0o644, 33, 33, "<p>hello</p>\n")
	mk("http/suid", fs.ModeSetuid|fs.ModeSetgid|0o755, 0, 0, "#!/bin/sh\n")
	mk("empty", 0o400, 1000, 1000, "")
	require.NoError(t, os.Link(filepath.Join(src, "http/index.html"), filepath.Join(src, "ftp-index.html")))
	require.NoError(t, os.Symlink("http/index.html", filepath.Join(src, "link")))
	require.NoError(t, os.Symlink("/etc/passwd", filepath.Join(src, "abs-link")))
	require.NoError(t, os.Lchown(filepath.Join(src, "link"), 33, 33))
	xattr := unix.Setxattr(filepath.Join(src, "http/index.html"), "user.paczfs", []byte("kept"), 0) == nil
	if !xattr {
		t.Log("this file system refuses user extended attributes: they are not part of this run")
	}
	require.NoError(t, unix.Setxattr(filepath.Join(src, "http"), "trusted.paczfs", []byte("dir"), 0))
	for _, p := range []string{"http/index.html", "http/suid", "empty", "http", "ftp", "tmp", "."} {
		require.NoError(t, os.Chtimes(filepath.Join(src, p), when, when))
	}

	var buf bytes.Buffer
	require.NoError(t, archiveTree(&buf, src, false))
	dst := t.TempDir()
	require.NoError(t, extractTree(bytes.NewReader(buf.Bytes()), dst))
	want, got := listTree(t, src), listTree(t, dst)
	assert.Equal(t, want, got)
	assert.Contains(t, got, ". drwxr-x--- 0:0 1767323045")
	assert.Contains(t, got, "tmp dtrwxrwxrwx 0:0 1767323045")
	assert.True(t, slices.ContainsFunc(got, func(l string) bool { return strings.HasPrefix(l, "http/suid ugrwxr-xr-x 0:0") }), "set-user-ID and set-group-ID kept: %v", got)
	assert.True(t, slices.ContainsFunc(got, func(l string) bool { return strings.Contains(l, "same as ") }), "a hard link stays one: %v", got)
	assert.True(t, slices.ContainsFunc(got, func(l string) bool { return strings.Contains(l, "trusted.paczfs:dir") }), "a directory's attribute kept: %v", got)

	// Extracting over what is there gives the archive's tree: a file a
	// hook wrote before is replaced, one the archive does not have stays
	// (the archive's build ran the same hook, so it has its files).
	require.NoError(t, os.WriteFile(filepath.Join(dst, "http/index.html"), []byte("a hook's"), 0o666))
	require.NoError(t, os.Remove(filepath.Join(dst, "link")))
	require.NoError(t, os.WriteFile(filepath.Join(dst, "link"), nil, 0o644))
	require.NoError(t, os.Chmod(filepath.Join(dst, "http"), 0o777))
	require.NoError(t, extractTree(bytes.NewReader(buf.Bytes()), dst))
	assert.Equal(t, want, listTree(t, dst))
	require.NoError(t, os.WriteFile(filepath.Join(dst, "extra"), nil, 0o644))
	require.NoError(t, extractTree(bytes.NewReader(buf.Bytes()), dst))
	assert.Contains(t, listTree(t, dst), "extra -rw-r--r-- 0:0 \"\" "+func() string {
		fi, err := os.Stat(filepath.Join(dst, "extra"))
		require.NoError(t, err)
		return fmt.Sprint(fi.ModTime().Unix())
	}())
	// A directory where the archive has a file is not removed.
	require.NoError(t, os.Remove(filepath.Join(dst, "empty")))
	require.NoError(t, os.Mkdir(filepath.Join(dst, "empty"), 0o755))
	assert.Error(t, extractTree(bytes.NewReader(buf.Bytes()), dst))
}

func TestArchiveTreeRefuses(t *testing.T) {
	// A FIFO, a socket or a device is not archived: the layer is then
	// not stored.
	src := t.TempDir()
	require.NoError(t, unix.Mkfifo(filepath.Join(src, "fifo"), 0o644))
	err := archiveTree(&bytes.Buffer{}, src, false)
	assert.ErrorIs(t, err, errArchiveType)

	archive := func(hs ...*tar.Header) *bytes.Reader {
		var b bytes.Buffer
		tw := tar.NewWriter(&b)
		for _, h := range hs {
			h.Format = tar.FormatPAX
			require.NoError(t, tw.WriteHeader(h))
			if h.Size > 0 {
				_, err := tw.Write(bytes.Repeat([]byte("x"), int(h.Size)))
				require.NoError(t, err)
			}
		}
		require.NoError(t, tw.Close())
		return bytes.NewReader(b.Bytes())
	}
	outside := t.TempDir()
	for name, r := range map[string]*bytes.Reader{
		"a name leaving the directory": archive(&tar.Header{Name: "../escaped", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1}),
		"an absolute name":             archive(&tar.Header{Name: outside + "/escaped", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1}),
		"a file through a link leading out": archive(
			&tar.Header{Name: "out", Typeflag: tar.TypeSymlink, Linkname: outside, Mode: 0o777},
			&tar.Header{Name: "out/escaped", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1}),
		"a hard link to a file outside": archive(&tar.Header{Name: "hl", Typeflag: tar.TypeLink, Linkname: "../../etc/passwd"}),
		"a device node":                 archive(&tar.Header{Name: "null", Typeflag: tar.TypeChar, Mode: 0o666, Devmajor: 1, Devminor: 3}),
	} {
		t.Run(name, func(t *testing.T) {
			assert.Error(t, extractTree(r, t.TempDir()))
			_, err := os.Lstat(filepath.Join(outside, "escaped"))
			assert.ErrorIs(t, err, fs.ErrNotExist, "nothing written outside")
		})
	}
}

func TestLayerKey(t *testing.T) {
	root := zfs.DatasetSpec{Name: "system/root", Props: map[string]string{"canmount": "noauto", "mountpoint": "/"}}
	others := []zfs.DatasetSpec{{Name: "data/root", Props: map[string]string{"mountpoint": "/root"}}}
	fsProps := map[string]string{"compression": "zstd"}
	pc := pacman.ArchConfig(true)
	plan := &pacman.Plan{Packages: []pacman.PlannedPackage{
		{Name: "filesystem", Version: "2025.05.03-1", Repo: "core", Filename: "filesystem-2025.05.03-1-any.pkg.tar.zst", SHA256: "aa"},
		{Name: "bash", Version: "5.3.3-2", Repo: "core", Filename: "bash-5.3.3-2-x86_64.pkg.tar.zst", SHA256: "bb"},
	}}
	req := []string{"base", "bash"}
	base := layerKey(LayerBase, req, root, others, fsProps, pc, plan, nil)
	assert.True(t, bytes.HasPrefix(base, []byte(layerCacheFormat+"\n")))

	// What must not change the key.
	same := map[string]func() []byte{
		"the plan's order": func() []byte {
			p := &pacman.Plan{Packages: slices.Clone(plan.Packages)}
			slices.Reverse(p.Packages)
			return layerKey(LayerBase, req, root, others, fsProps, pc, p, nil)
		},
		"the mirrors": func() []byte {
			c := pacman.ArchConfig(true)
			c.Repos[0].Servers = []string{"https://mirror.example/$repo/os/$arch"}
			return layerKey(LayerBase, req, root, others, fsProps, c, plan, nil)
		},
		"the order of the names asked for": func() []byte {
			return layerKey(LayerBase, []string{"bash", "base"}, root, others, fsProps, pc, plan, nil)
		},
		"the download sizes": func() []byte {
			p := &pacman.Plan{Packages: slices.Clone(plan.Packages)}
			p.Packages[0].DownloadSize = 0
			p.Packages[0].DownloadSize = 12345
			return layerKey(LayerBase, req, root, others, fsProps, pc, p, nil)
		},
	}
	for name, fn := range same {
		assert.Equal(t, string(base), string(fn()), name)
	}
	// What must.
	pkg := func(edit func(p *pacman.PlannedPackage)) []byte {
		p := &pacman.Plan{Packages: slices.Clone(plan.Packages)}
		edit(&p.Packages[1])
		return layerKey(LayerBase, req, root, others, fsProps, pc, p, nil)
	}
	differ := map[string][]byte{
		"another name asked for (pacman records which were)": layerKey(LayerBase, []string{"base"}, root, others, fsProps, pc, plan, nil),
		"a version":                      pkg(func(p *pacman.PlannedPackage) { p.Version = "5.3.3-3" }),
		"a rebuild at the same version":  pkg(func(p *pacman.PlannedPackage) { p.SHA256 = "cc" }),
		"another repository":             pkg(func(p *pacman.PlannedPackage) { p.Repo = "testing" }),
		"another layer":                  layerKey(LayerBootable, req, root, others, fsProps, pc, plan, nil),
		"one more package":               layerKey(LayerBase, req, root, others, fsProps, pc, &pacman.Plan{Packages: append(slices.Clone(plan.Packages), pacman.PlannedPackage{Name: "vim"})}, nil),
		"the root's properties":          layerKey(LayerBase, req, zfs.DatasetSpec{Name: root.Name, Props: map[string]string{"canmount": "noauto", "mountpoint": "/", "recordsize": "1M"}}, others, fsProps, pc, plan, nil),
		"another root":                   layerKey(LayerBase, req, zfs.DatasetSpec{Name: "ROOT/default", Props: root.Props}, others, fsProps, pc, plan, nil),
		"another data dataset":           layerKey(LayerBase, req, root, append(slices.Clone(others), zfs.DatasetSpec{Name: "data/srv"}), fsProps, pc, plan, nil),
		"the pool's file system options": layerKey(LayerBase, req, root, others, map[string]string{"compression": "lz4"}, pc, plan, nil),
		"a keyed hook":                   layerKey(LayerBase, req, root, others, fsProps, pc, plan, []string{`hook after base "x" "1"`}),
		"no_extract": func() []byte {
			c := pacman.ArchConfig(true)
			c.NoExtract = []string{"usr/share/man/*"}
			return layerKey(LayerBase, req, root, others, fsProps, c, plan, nil)
		}(),
		"the architecture": func() []byte {
			c := pacman.ArchConfig(true)
			c.Architecture = "aarch64"
			return layerKey(LayerBase, req, root, others, fsProps, c, plan, nil)
		}(),
		"the target's own package cache": func() []byte {
			c := pacman.ArchConfig(true)
			c.CacheDirs = []string{"/var/cache/paczfs"}
			return layerKey(LayerBase, req, root, others, fsProps, c, plan, nil)
		}(),
	}
	for name, k := range differ {
		assert.NotEqual(t, string(base), string(k), name)
	}
}

// writeLayerEntry writes a whole entry for key in dir and returns the
// cache with that entry as its base.
func writeLayerEntry(t *testing.T, dir string, key []byte) *layerCache {
	t.Helper()
	c := &layerCache{dir: dir, log: slog.New(slog.DiscardHandler), base: &layerEntry{layer: LayerBase, key: key}}
	require.NoError(t, os.MkdirAll(c.entry(c.base), 0o700))
	src := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(src, "f"), []byte("data"), 0o644))
	sum, err := writeArchive(filepath.Join(c.entry(c.base), "data-2.tar"), src)
	require.NoError(t, err)
	m := fmt.Sprintf(`{"stream_size": 6, "guid": "123", "data": [{"dataset": "data/srv", "file": "data-2.tar", "sha256": %q}], "packages": [{"Name": "bash", "Version": "5.3.3-2"}]}`, sum)
	require.NoError(t, os.WriteFile(filepath.Join(c.entry(c.base), "manifest.json"), []byte(m), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(c.entry(c.base), "stream"), []byte("stream"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(c.entry(c.base), "key"), key, 0o600))
	return c
}

func TestLayerCacheLookup(t *testing.T) {
	key := []byte(layerCacheFormat + "\nlayer base\n")
	c := writeLayerEntry(t, t.TempDir(), key)
	m := c.lookup(c.base)
	require.NotNil(t, m, "a whole entry is a hit")
	assert.Equal(t, int64(6), m.StreamSize)
	assert.Equal(t, "bash", m.Packages[0].Name)
	assert.Equal(t, "data/srv", m.Data[0].Dataset)

	for name, damage := range map[string]func(dir string){
		"no stream":            func(dir string) { os.Remove(filepath.Join(dir, "stream")) },
		"a truncated stream":   func(dir string) { os.WriteFile(filepath.Join(dir, "stream"), []byte("str"), 0o600) },
		"no manifest":          func(dir string) { os.Remove(filepath.Join(dir, "manifest.json")) },
		"a broken manifest":    func(dir string) { os.WriteFile(filepath.Join(dir, "manifest.json"), []byte("{"), 0o600) },
		"no key":               func(dir string) { os.Remove(filepath.Join(dir, "key")) },
		"another key":          func(dir string) { os.WriteFile(filepath.Join(dir, "key"), []byte("other"), 0o600) },
		"a changed archive":    func(dir string) { os.WriteFile(filepath.Join(dir, "data-2.tar"), []byte("x"), 0o600) },
		"an archive went away": func(dir string) { os.Remove(filepath.Join(dir, "data-2.tar")) },
	} {
		t.Run(name, func(t *testing.T) {
			c := writeLayerEntry(t, t.TempDir(), key)
			damage(c.entry(c.base))
			assert.Nil(t, c.lookup(c.base), "a miss")
			_, err := os.Lstat(c.entry(c.base))
			assert.ErrorIs(t, err, fs.ErrNotExist, "and the damaged entry is removed")
		})
	}
	empty := &layerCache{dir: t.TempDir(), log: slog.New(slog.DiscardHandler)}
	assert.Nil(t, empty.lookup(&layerEntry{key: key}), "no entry: a miss")
}

// baseHitFixture is a build through the pool stage whose checks chose a
// whole base entry from the layer cache (its files open until the test
// ends).
func baseHitFixture(t *testing.T, r *transcriptRunner) *build {
	t.Helper()
	st := stageFixture(t, r)
	t.Cleanup(func() { require.NoError(t, st.stack.Unwind(context.Background())) })
	for _, fn := range []stageFunc{stageESP, stagePool} {
		require.NoError(t, fn(context.Background(), st))
	}
	st.layers = writeLayerEntry(t, t.TempDir(), []byte("key"))
	st.layers.base.hit = st.layers.lookup(st.layers.base)
	require.NotNil(t, st.layers.base.hit)
	t.Cleanup(st.layers.close)
	return st
}

// TestLayerCacheRefusedStream: a cached stream the kernel refuses is not
// a failed build. The entry is removed and the root created as without
// a cache.
func TestLayerCacheRefusedStream(t *testing.T) {
	ctx := context.Background()
	r := &transcriptRunner{}
	r.On("zfs receive", hookstest.Response{Err: errors.New("cannot receive: invalid stream")})
	// ZFS keeps nothing of a refused full stream.
	r.On("zfs list -H -o name -t all zroot-paczfs-test01/system/default", hookstest.Response{ExitCode: 1, Stderr: "cannot open 'zroot-paczfs-test01/system/default': dataset does not exist"})
	st := baseHitFixture(t, r)
	r.lines = nil
	require.NoError(t, stageDatasets(ctx, st))
	var receive, create bool
	for _, l := range r.lines {
		receive = receive || strings.HasPrefix(l, "zfs receive -u -o canmount=noauto -o mountpoint=/ zroot-paczfs-test01/system/default@base")
		create = create || strings.HasPrefix(l, "zfs create -p -o canmount=noauto -o mountpoint=/ zroot-paczfs-test01/system/default")
	}
	assert.True(t, receive, "the stream was offered to zfs receive: %q", r.lines)
	assert.True(t, create, "then the root was created: %q", r.lines)
	assert.False(t, st.layers.received)
	assert.Nil(t, st.layers.base.hit)
	assert.NotEmpty(t, st.warnings)
	_, err := os.Lstat(st.layers.entry(st.layers.base))
	assert.ErrorIs(t, err, fs.ErrNotExist, "the refused entry is removed")
}

// TestMountPointModes: zfs makes mount points 0755 before any package is
// installed, and libalpm keeps an existing directory's mode; the build
// gives the layout's mount points the modes their packages declare, and
// no other directory.
func TestMountPointModes(t *testing.T) {
	st := &build{cfg: &Config{Datasets: zfs.DefaultDatasets()}, b: &Builder{log: slog.New(slog.DiscardHandler)}}
	st.state.Root = t.TempDir()
	for _, d := range []string{"root", "srv", "usr", "var/lib/machines"} {
		require.NoError(t, os.MkdirAll(filepath.Join(st.state.Root, d), 0o755))
	}
	require.NoError(t, st.fixMountPointModes(map[string]os.FileMode{"root": 0o750, "usr": 0o700, "srv": 0o755 | os.ModeSticky}))
	mode := func(d string) os.FileMode {
		fi, err := os.Stat(filepath.Join(st.state.Root, d))
		require.NoError(t, err)
		return fi.Mode() & (os.ModePerm | os.ModeSticky)
	}
	assert.Equal(t, os.FileMode(0o750), mode("root"), "a mount point gets its package's mode")
	assert.Equal(t, 0o755|os.ModeSticky, mode("srv"))
	assert.Equal(t, os.FileMode(0o755), mode("usr"), "not a mount point: left alone")
	assert.Equal(t, os.FileMode(0o755), mode("var/lib/machines"), "no package declared another mode")
	assert.NoError(t, st.fixMountPointModes(nil))
}

func TestBootableKey(t *testing.T) {
	own := []byte(layerCacheFormat + "\nlayer bootable\n")
	files := map[string]string{"etc/mkinitcpio.conf.d/paczfs.conf": "HOOKS=(zfs)\n"}
	stubs := []string{"mkinitcpio"}
	k := bootableKey([]byte("base key"), own, "00c0ffee", files, stubs)
	assert.True(t, bytes.HasPrefix(k, own))
	for name, other := range map[string][]byte{
		"another base":              bootableKey([]byte("other base key"), own, "00c0ffee", files, stubs),
		"another own key":           bootableKey([]byte("base key"), []byte(layerCacheFormat+"\nlayer bootable\npackage x\n"), "00c0ffee", files, stubs),
		"another hostid":            bootableKey([]byte("base key"), own, "0badcafe", files, stubs),
		"another initramfs file":    bootableKey([]byte("base key"), own, "00c0ffee", map[string]string{"etc/mkinitcpio.conf.d/paczfs.conf": "HOOKS=(zfs sd-encrypt)\n"}, stubs),
		"one more initramfs file":   bootableKey([]byte("base key"), own, "00c0ffee", map[string]string{"etc/mkinitcpio.conf.d/paczfs.conf": "HOOKS=(zfs)\n", "etc/x": ""}, stubs),
		"no initramfs files at all": bootableKey([]byte("base key"), own, "00c0ffee", nil, stubs),
		"no stubs":                  bootableKey([]byte("base key"), own, "00c0ffee", files, nil),
		"another stub":              bootableKey([]byte("base key"), own, "00c0ffee", files, []string{"dracut"}),
	} {
		assert.NotEqual(t, string(k), string(other), name)
	}
	two := bootableKey([]byte("base key"), own, "00c0ffee", files, []string{"mkinitcpio", "dracut"})
	assert.Equal(t, string(two), string(bootableKey([]byte("base key"), own, "00c0ffee", files, []string{"dracut", "mkinitcpio"})), "the stubs' order does not matter")
	assert.Equal(t, string(k), string(bootableKey([]byte("base key"), own, "00c0ffee", map[string]string{"etc/mkinitcpio.conf.d/paczfs.conf": "HOOKS=(zfs)\n"}, []string{"mkinitcpio"})))
}

// TestWithoutKeyring: a layer's snapshot is taken with the keyring out of
// the root, and the keyring is back after, as it was (its gpg-agent's
// socket aside), even when the snapshot failed.
func TestWithoutKeyring(t *testing.T) {
	st := &build{b: &Builder{log: slog.New(slog.DiscardHandler)}}
	st.state.Root = t.TempDir()
	dir := filepath.Join(st.state.Root, keyringDir)
	writeTree(t, st.state.Root, map[string]string{
		keyringDir + "/pubring.kbx":                 "keys",
		keyringDir + "/trustdb.gpg":                 "trust",
		keyringDir + "/private-keys-v1.d/AB12.key":  "secret",
		keyringDir + "/openpgp-revocs.d/ABCDEF.rev": "revocation",
	}, 0o600)
	require.NoError(t, os.Chmod(dir, 0o755))
	require.NoError(t, os.Chmod(filepath.Join(dir, "private-keys-v1.d"), 0o700))
	want := listTree(t, dir)
	l, err := net.Listen("unix", filepath.Join(dir, "S.gpg-agent"))
	require.NoError(t, err)
	defer l.Close()

	for _, fail := range []error{nil, errors.New("snapshot failed")} {
		err := st.withoutKeyring(func() error {
			_, err := os.Lstat(dir)
			assert.ErrorIs(t, err, fs.ErrNotExist, "no keyring while the snapshot is taken")
			return fail
		})
		assert.Equal(t, fail, err)
		assert.Equal(t, want, listTree(t, dir), "the keyring is back as it was")
	}
	// No keyring (a hook made the pacman stage): fn runs all the same.
	require.NoError(t, os.RemoveAll(dir))
	ran := false
	require.NoError(t, st.withoutKeyring(func() error { ran = true; return nil }))
	assert.True(t, ran)
}

// TestSamePackages: a layer is stored only when what was installed is
// the plan its key was made from.
func TestSamePackages(t *testing.T) {
	plan := &pacman.Plan{Packages: []pacman.PlannedPackage{{Name: "bash", Version: "5.3-1", SHA256: "aa"}, {Name: "glibc", Version: "2.42-1", SHA256: "bb"}}}
	assert.Empty(t, samePackages(plan, []pacman.PlannedPackage{plan.Packages[1], plan.Packages[0]}), "the same set, in another order")
	assert.Contains(t, samePackages(plan, []pacman.PlannedPackage{plan.Packages[0], {Name: "glibc", Version: "2.42-2", SHA256: "cc"}}), "installed glibc 2.42-2")
	assert.Contains(t, samePackages(plan, []pacman.PlannedPackage{plan.Packages[0], {Name: "glibc", Version: "2.42-1", SHA256: "dd"}}), "installed glibc 2.42-1", "rebuilt at the same version")
	assert.Contains(t, samePackages(plan, plan.Packages[:1]), "planned glibc 2.42-1, not installed")
}

// TestLayerCacheDryRunKeeps: Builder.Plan writes nothing, so a damaged
// entry it finds stays for the build to remove.
func TestLayerCacheDryRunKeeps(t *testing.T) {
	c := writeLayerEntry(t, t.TempDir(), []byte("key"))
	c.keep = true
	require.NoError(t, os.Remove(filepath.Join(c.entry(c.base), "stream")))
	assert.Nil(t, c.lookup(c.base))
	_, err := os.Lstat(c.entry(c.base))
	assert.NoError(t, err, "the entry is still there")
}

// TestAChosenLayerEntryOutlivesAPrune: a build reads the stream and
// archives of the entry it chose in its checks through the files lookup
// opened, so a prune that removes the entry before the build has read
// them (PruneCache from a timer, another build's bound) does not fail it.
func TestAChosenLayerEntryOutlivesAPrune(t *testing.T) {
	ctx := context.Background()
	cacheDir := t.TempDir()
	c := writeLayerEntry(t, filepath.Join(cacheDir, "layers"), []byte("key"))
	m := c.lookup(c.base)
	require.NotNil(t, m)
	t.Cleanup(m.close)

	pruned, err := PruneCache(ctx, cacheDir, 1)
	require.NoError(t, err)
	require.Equal(t, []string{c.entry(c.base)}, pruned.Removed)
	_, err = os.Lstat(c.entry(c.base))
	require.ErrorIs(t, err, fs.ErrNotExist, "the entry is gone from the cache")

	for range 2 { // read twice: each reader starts at the beginning
		r, err := m.reader("stream")
		require.NoError(t, err)
		stream, err := io.ReadAll(r)
		require.NoError(t, err)
		assert.Equal(t, "stream", string(stream))
	}
	r, err := m.reader("data-2.tar")
	require.NoError(t, err)
	out := t.TempDir()
	require.NoError(t, extractTree(r, out))
	data, err := os.ReadFile(filepath.Join(out, "f"))
	require.NoError(t, err)
	assert.Equal(t, "data", string(data), "the archive extracts whole")

	m.close()
	_, err = m.reader("stream")
	assert.ErrorIs(t, err, fs.ErrClosed, "closed when the build ends")
}

// TestDryRunLookupHoldsNoFiles: Builder.Plan reads no stream, so its
// lookups leave nothing open.
func TestDryRunLookupHoldsNoFiles(t *testing.T) {
	c := writeLayerEntry(t, t.TempDir(), []byte("key"))
	c.keep = true
	m := c.lookup(c.base)
	require.NotNil(t, m)
	assert.Empty(t, m.files)
}

// TestTheBaseStreamIsReceivedAfterItsEntryWasPruned: the datasets stage
// receives the stream of the entry the checks chose even when the entry
// left the cache in between.
func TestTheBaseStreamIsReceivedAfterItsEntryWasPruned(t *testing.T) {
	ctx := context.Background()
	r := &transcriptRunner{}
	st := baseHitFixture(t, r)
	require.NoError(t, os.RemoveAll(st.layers.entry(st.layers.base)))
	require.NoError(t, stageDatasets(ctx, st))
	assert.True(t, st.layers.received, "the root came from the stream")
	assert.Empty(t, st.warnings)
	assert.Contains(t, r.Stdin(), "stream", "zfs receive was fed the entry's stream")
}

// A manifest that names one file twice is a damaged entry, not two
// handles on one file (one of them never closed).
func TestLayerManifestNamingAFileTwiceIsDamaged(t *testing.T) {
	c := writeLayerEntry(t, t.TempDir(), []byte("key"))
	dir := c.entry(c.base)
	data, err := os.ReadFile(filepath.Join(dir, "data-2.tar"))
	require.NoError(t, err)
	sum := sha256.Sum256(data)
	m := fmt.Sprintf(`{"stream_size": 6, "guid": "123", "data": [{"dataset": "data/srv", "file": "data-2.tar", "sha256": %q}, {"dataset": "data/home", "file": "data-2.tar", "sha256": %q}]}`, hex.EncodeToString(sum[:]), hex.EncodeToString(sum[:]))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "manifest.json"), []byte(m), 0o600))
	assert.Nil(t, c.lookup(c.base))
	assert.NoDirExists(t, dir, "removed as damaged")
}

//go:build lab

package pacman_test

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/paczfs/paczfs/internal/labrepo"
	"github.com/paczfs/paczfs/internal/labtest"
	"github.com/paczfs/paczfs/pacman"
)

// Sync takes an installed root to a new set, as a release derived from
// the previous one does: what the set adds is installed, what it no
// longer names is removed with what nothing else needs, and a newer
// build of a package (from a second repository) is an upgrade. pacman
// itself then agrees (-Qq, -Qdtq, -Q).
func TestLabSyncReachesANewSet(t *testing.T) {
	labtest.Require(t)
	ctx := t.Context()
	repo := labRepo(t)
	url := serve(t, repo.Dir)
	cfg := repo.PacmanConfig(url)
	in := installer(t, cfg, &recorder{})
	root := t.TempDir()
	require.NoError(t, in.InitKeyring(ctx, root))
	_, err := in.Install(ctx, root, []string{"bash", "coreutils", "less"})
	require.NoError(t, err)
	conf := pacmanConf(t, url)

	res, err := in.Sync(ctx, root, []string{"bash", "coreutils", "tmux"})
	require.NoError(t, err)
	names := func(ps []pacman.PlannedPackage) []string {
		var out []string
		for _, p := range ps {
			out = append(out, p.Name)
		}
		return out
	}
	assert.Contains(t, names(res.Installed), "tmux")
	assert.Contains(t, names(res.Removed), "less")
	t.Logf("sync: installed %v, removed %v in %s", names(res.Installed), names(res.Removed), res.Took)
	q, err := pacmanCmd(t, root, conf, "-Qq")
	require.NoError(t, err, q)
	assert.Contains(t, strings.Fields(q), "tmux")
	assert.NotContains(t, strings.Fields(q), "less")
	orphans, _ := pacmanCmd(t, root, conf, "-Qdtq")
	assert.Empty(t, strings.TrimSpace(orphans), "no orphans left")

	// The same set again: nothing to do.
	res, err = in.Sync(ctx, root, []string{"bash", "coreutils", "tmux"})
	require.NoError(t, err)
	assert.Empty(t, res.Installed)
	assert.Empty(t, res.Removed)

	// A newer tmux in a second repository: an upgrade.
	next := bumpedRepo(t, repo.Dir, "tmux", "99.0-1")
	cfg2 := cfg
	cfg2.Repos = append([]pacman.Repo{{Name: "next", Servers: []string{serve(t, next)}, SigLevel: "Never"}}, cfg.Repos...)
	in2 := installer(t, cfg2, &recorder{})
	res, err = in2.Sync(ctx, root, []string{"bash", "coreutils", "tmux"})
	require.NoError(t, err)
	require.Len(t, res.Installed, 1, "%v", names(res.Installed))
	assert.Equal(t, "99.0-1", res.Installed[0].Version)
	v, err := pacmanCmd(t, root, conf, "-Q", "tmux")
	require.NoError(t, err, v)
	assert.Equal(t, "tmux 99.0-1", strings.TrimSpace(v))
}

// bumpedRepo makes a repository "next" holding one package of dir's
// repository rebuilt with version ver: its .PKGINFO and its database
// entry changed, unsigned.
func bumpedRepo(t *testing.T, dir, name, ver string) string {
	db := readDB(t, filepath.Join(dir, labrepo.RepoName+".db"))
	var desc string
	for path, body := range db {
		if strings.HasSuffix(path, "/desc") && strings.Contains(body, "%NAME%\n"+name+"\n") {
			desc = body
		}
	}
	require.NotEmpty(t, desc, "%s in the lab database", name)
	field := func(f string) string {
		m := regexp.MustCompile(`(?m)^%` + f + `%\n(.*)$`).FindStringSubmatch(desc)
		require.NotNil(t, m, f)
		return m[1]
	}
	oldFile, oldVer := field("FILENAME"), field("VERSION")
	// The package, with its .PKGINFO's version changed.
	pkg := readTarZst(t, filepath.Join(dir, oldFile))
	out := t.TempDir()
	newFile := strings.Replace(oldFile, oldVer, ver, 1)
	var buf bytes.Buffer
	zw, err := zstd.NewWriter(&buf)
	require.NoError(t, err)
	tw := tar.NewWriter(zw)
	for _, e := range pkg {
		body := e.body
		if e.hdr.Name == ".PKGINFO" {
			body = regexp.MustCompile(`(?m)^pkgver = .*$`).ReplaceAll(body, []byte("pkgver = "+ver))
		}
		h := *e.hdr
		h.Size = int64(len(body))
		require.NoError(t, tw.WriteHeader(&h))
		_, err := tw.Write(body)
		require.NoError(t, err)
	}
	require.NoError(t, tw.Close())
	require.NoError(t, zw.Close())
	require.NoError(t, os.WriteFile(filepath.Join(out, newFile), buf.Bytes(), 0o644))
	sum := sha256.Sum256(buf.Bytes())
	// Its database entry.
	d := desc
	for f, v := range map[string]string{"FILENAME": newFile, "VERSION": ver, "CSIZE": strconv.Itoa(buf.Len()), "SHA256SUM": hex.EncodeToString(sum[:])} {
		d = regexp.MustCompile(`(?m)^(%`+f+`%\n).*$`).ReplaceAllString(d, "${1}"+v)
	}
	d = regexp.MustCompile(`(?m)^%(MD5SUM|PGPSIG)%\n.*\n\n`).ReplaceAllString(d, "")
	var dbuf bytes.Buffer
	dw := tar.NewWriter(&dbuf)
	entry := name + "-" + ver + "/"
	require.NoError(t, dw.WriteHeader(&tar.Header{Name: entry, Mode: 0o755, Typeflag: tar.TypeDir}))
	require.NoError(t, dw.WriteHeader(&tar.Header{Name: entry + "desc", Mode: 0o644, Size: int64(len(d)), Typeflag: tar.TypeReg}))
	_, err = dw.Write([]byte(d))
	require.NoError(t, err)
	require.NoError(t, dw.Close())
	require.NoError(t, os.WriteFile(filepath.Join(out, "next.db"), dbuf.Bytes(), 0o644))
	return out
}

type tarEntry struct {
	hdr  *tar.Header
	body []byte
}

func readTarZst(t *testing.T, path string) []tarEntry {
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	zr, err := zstd.NewReader(f)
	require.NoError(t, err)
	defer zr.Close()
	return readTar(t, zr)
}

func readTar(t *testing.T, r io.Reader) []tarEntry {
	var out []tarEntry
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		require.NoError(t, err)
		body, err := io.ReadAll(tr)
		require.NoError(t, err)
		out = append(out, tarEntry{hdr: h, body: body})
	}
}

// readDB reads a repository database (repo-add's: a zstd tar here).
func readDB(t *testing.T, path string) map[string]string {
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	var r io.Reader = bytes.NewReader(data)
	if bytes.HasPrefix(data, []byte{0x28, 0xb5, 0x2f, 0xfd}) {
		zr, err := zstd.NewReader(r)
		require.NoError(t, err)
		defer zr.Close()
		r = zr
	}
	out := map[string]string{}
	for _, e := range readTar(t, r) {
		out[e.hdr.Name] = string(e.body)
	}
	return out
}

package labtest

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
	"github.com/stretchr/testify/require"
)

// BumpedRepo makes a repository "next" holding one package of dir's
// repository rebuilt with version ver: its .PKGINFO and its database
// entry changed, unsigned.
func BumpedRepo(t testing.TB, dir, dbName, name, ver string) string {
	t.Helper()
	db := readDB(t, filepath.Join(dir, dbName+".db"))
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

func readTarZst(t testing.TB, path string) []tarEntry {
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	zr, err := zstd.NewReader(f)
	require.NoError(t, err)
	defer zr.Close()
	return readTar(t, zr)
}

func readTar(t testing.TB, r io.Reader) []tarEntry {
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
func readDB(t testing.TB, path string) map[string]string {
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

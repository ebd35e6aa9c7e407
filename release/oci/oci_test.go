package oci_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/paczfs/paczfs/bootenv"
	"github.com/paczfs/paczfs/hooks/hookstest"
	"github.com/paczfs/paczfs/internal/testutil"
	"github.com/paczfs/paczfs/release"
	"github.com/paczfs/paczfs/release/oci"
)

// signedRelease writes a release directory with an incremental stream of
// random bytes, as release.Write would lay it out.
func signedRelease(t *testing.T) (dir string, stream, public []byte) {
	secret, public, err := release.GenerateKey("paczfs oci test", "")
	require.NoError(t, err)
	stream = make([]byte, 1<<20)
	_, _ = rand.Read(stream)
	sum := sha256.Sum256(stream)
	m := &release.Manifest{Format: release.FormatVersion, Name: "paczfs-test", Version: "2", Previous: "1",
		Created: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC), Snapshot: "v2", GUID: "1234567890123", BaseGUID: "999",
		Streams: []release.Stream{{Kind: release.Incremental, File: "v1-v2.zstream", Size: int64(len(stream)), SHA256: hex.EncodeToString(sum[:])}}}
	data, err := m.Marshal()
	require.NoError(t, err)
	sig, err := release.Sign(data, secret)
	require.NoError(t, err)
	dir = t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, release.ManifestFile), data, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, release.SignatureFile), sig, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "v1-v2.zstream"), stream, 0o644))
	return dir, stream, public
}

// device is a booted v1 with the base snapshot (guid 999), as far as the
// commands Apply runs before and at the receive see it.
func device(t *testing.T) (*bootenv.Manager, *hookstest.FakeRunner) {
	f := &hookstest.FakeRunner{}
	// The one zfs list apply reads the pool with: v1 at version 1, its
	// snapshot (the base, guid 999), the space.
	f.On("zfs list -H -p -o name,type,guid,org.paczfs:version,available,org.paczfs:state -t filesystem,snapshot -r zroot/system", hookstest.Response{Stdout: "zroot/system\tfilesystem\t11\t-\t10000000000\t-\n" +
		"zroot/system/v1\tfilesystem\t12\t1\t10000000000\tgood\nzroot/system/v1@v1\tsnapshot\t999\t1\t-\t-\n"})
	m, err := bootenv.New(context.Background(), bootenv.WithRunner(f), bootenv.WithBooted("zroot/system/v1", ""), bootenv.WithESP(t.TempDir()), bootenv.WithEFIVars(""))
	require.NoError(t, err)
	return m, f
}

// A release pushed to a real registry comes back byte for byte, by tag
// and by digest, and release.Apply receives the verified stream from it.
func TestPushPullApplyThroughARegistry(t *testing.T) {
	addr := testutil.Registry(t)
	ctx := context.Background()
	dir, stream, public := signedRelease(t)
	o := oci.Options{Insecure: true}
	ref := addr + "/paczfs/lab:2"
	digest, err := oci.Push(ctx, dir, ref, o)
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(digest, "sha256:"), digest)

	for _, r := range []string{ref, addr + "/paczfs/lab@" + digest} {
		src, err := oci.NewSource(ctx, r, o)
		require.NoError(t, err, r)
		for _, f := range []string{release.ManifestFile, release.SignatureFile, "v1-v2.zstream"} {
			rc, start, err := src.Open(ctx, f, 0)
			require.NoError(t, err, f)
			got, err := io.ReadAll(rc)
			rc.Close()
			require.NoError(t, err)
			want, _ := os.ReadFile(filepath.Join(dir, f))
			assert.Equal(t, int64(0), start)
			assert.True(t, string(got) == string(want), "%s from %s: %d bytes, want %d", f, r, len(got), len(want))
		}
	}
	// The stream's layer digest is the manifest's sha256.
	img, err := remote.Image(mustRef(t, ref))
	require.NoError(t, err)
	man, err := img.Manifest()
	require.NoError(t, err)
	sum := sha256.Sum256(stream)
	assert.Equal(t, oci.ConfigMediaType, man.Config.MediaType)
	require.Len(t, man.Layers, 3)
	assert.Equal(t, "sha256:"+hex.EncodeToString(sum[:]), man.Layers[2].Digest.String())
	assert.Equal(t, "v1-v2.zstream", man.Layers[2].Annotations[oci.TitleAnnotation])

	src, err := oci.NewSource(ctx, ref, o)
	require.NoError(t, err)
	m, f := device(t)
	_, err = release.Apply(ctx, m, release.ApplyOptions{Source: src, Dir: t.TempDir(), Trusted: [][]byte{public}, Runner: f})
	require.Error(t, err, "the fake runner cannot mount the received root for its boot files")
	var got string
	for i, c := range f.Calls() {
		if strings.HasPrefix(c, "zfs receive") {
			got = f.Stdin()[i]
		}
	}
	assert.True(t, got == string(stream), "zfs receive reads the pulled stream (%d bytes)", len(got))
}

// A stream that is not what the manifest says is refused by the registry
// (the digest is the manifest's sha256); an artifact that is not a
// release is refused by NewSource.
func TestRegistryRefusesWhatIsNotTheRelease(t *testing.T) {
	addr := testutil.Registry(t)
	ctx := context.Background()
	dir, stream, _ := signedRelease(t)
	stream[0] ^= 1
	require.NoError(t, os.WriteFile(filepath.Join(dir, "v1-v2.zstream"), stream, 0o644))
	_, err := oci.Push(ctx, dir, addr+"/paczfs/lab:bad", oci.Options{Insecure: true})
	require.Error(t, err, "a flipped byte: the upload's digest does not match")
	assert.ErrorContains(t, err, "DIGEST_INVALID")

	img, err := random.Image(1024, 1)
	require.NoError(t, err)
	require.NoError(t, remote.Write(mustRef(t, addr+"/paczfs/other:1"), img))
	_, err = oci.NewSource(ctx, addr+"/paczfs/other:1", oci.Options{Insecure: true})
	assert.ErrorIs(t, err, oci.ErrNotRelease)
}

func mustRef(t *testing.T, s string) name.Reference {
	r, err := name.ParseReference(s, name.Insecure)
	require.NoError(t, err)
	return r
}

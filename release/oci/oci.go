package oci

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/paczfs/paczfs/release"
)

// Media types of a release artifact.
const (
	ConfigMediaType    types.MediaType = "application/vnd.paczfs.release.config.v1+json"
	ManifestMediaType  types.MediaType = "application/vnd.paczfs.release.manifest.v1+json"
	SignatureMediaType types.MediaType = "application/pgp-signature"
	StreamMediaType    types.MediaType = "application/vnd.paczfs.zfs.send-stream.v1"
)

// TitleAnnotation names a layer's file.
const TitleAnnotation = "org.opencontainers.image.title"

// ErrNotRelease: the reference names an artifact that is not a release.
var ErrNotRelease = errors.New("not a paczfs release artifact")

// Options say how to reach the registry.
type Options struct {
	// Insecure allows plain HTTP (a registry on loopback in tests, or
	// inside a trusted network).
	Insecure bool
	// Keychain finds credentials (default authn.DefaultKeychain: the
	// docker config).
	Keychain authn.Keychain
}

func (o Options) parse(ref string) (name.Reference, []remote.Option, error) {
	var nopts []name.Option
	if o.Insecure {
		nopts = append(nopts, name.Insecure)
	}
	r, err := name.ParseReference(ref, nopts...)
	if err != nil {
		return nil, nil, fmt.Errorf("oci: reference %q: %w", ref, err)
	}
	kc := o.Keychain
	if kc == nil {
		kc = authn.DefaultKeychain
	}
	return r, []remote.Option{remote.WithAuthFromKeychain(kc)}, nil
}

// Push uploads the release in dir to ref and returns the artifact's
// digest (sha256:...). The manifest is parsed first, and every stream
// must have the size it lists; the registry checks the digests.
func Push(ctx context.Context, dir, ref string, o Options) (string, error) {
	r, ropts, err := o.parse(ref)
	if err != nil {
		return "", err
	}
	data, err := os.ReadFile(filepath.Join(dir, release.ManifestFile))
	if err != nil {
		return "", err
	}
	mf, err := release.ParseManifest(data)
	if err != nil {
		return "", err
	}
	sig, err := os.ReadFile(filepath.Join(dir, release.SignatureFile))
	if err != nil {
		return "", err
	}
	art := &artifact{config: data, layers: map[v1.Hash]partial.CompressedLayer{}}
	add := func(l partial.CompressedLayer, title string) error {
		d, err := l.Digest()
		if err != nil {
			return err
		}
		size, _ := l.Size()
		mt, _ := l.MediaType()
		art.layers[d] = l
		art.manifest.Layers = append(art.manifest.Layers, v1.Descriptor{MediaType: mt, Size: size, Digest: d,
			Annotations: map[string]string{TitleAnnotation: title}})
		return nil
	}
	if err := add(blob(data, ManifestMediaType), release.ManifestFile); err != nil {
		return "", err
	}
	if err := add(blob(sig, SignatureMediaType), release.SignatureFile); err != nil {
		return "", err
	}
	for _, s := range mf.Streams {
		path := filepath.Join(dir, s.File)
		st, err := os.Stat(path)
		if err != nil {
			return "", err
		}
		if st.Size() != s.Size {
			return "", fmt.Errorf("oci: %s is %d bytes, the manifest says %d: %w", path, st.Size(), s.Size, release.ErrStream)
		}
		if err := add(&fileLayer{path: path, size: s.Size, digest: v1.Hash{Algorithm: "sha256", Hex: s.SHA256}}, s.File); err != nil {
			return "", err
		}
	}
	cd := blob(data, ConfigMediaType)
	art.manifest.SchemaVersion = 2
	art.manifest.MediaType = types.OCIManifestSchema1
	art.manifest.Config = v1.Descriptor{MediaType: ConfigMediaType, Size: int64(len(data)), Digest: cd.digest}
	art.manifest.Annotations = map[string]string{
		"org.opencontainers.image.version": mf.Version,
		"org.opencontainers.image.title":   mf.Name,
	}
	img, err := partial.CompressedToImage(art)
	if err != nil {
		return "", err
	}
	if err := remote.Write(r, img, append(ropts, remote.WithContext(ctx))...); err != nil {
		return "", fmt.Errorf("oci: push %s: %w", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		return "", err
	}
	return d.String(), nil
}

// artifact is the release as go-containerregistry's compressed image.
type artifact struct {
	config   []byte
	manifest v1.Manifest
	layers   map[v1.Hash]partial.CompressedLayer
}

func (a *artifact) RawConfigFile() ([]byte, error)      { return a.config, nil }
func (a *artifact) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }
func (a *artifact) RawManifest() ([]byte, error)        { return json.Marshal(a.manifest) }
func (a *artifact) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	if h == a.manifest.Config.Digest {
		return blob(a.config, ConfigMediaType), nil
	}
	if l, ok := a.layers[h]; ok {
		return l, nil
	}
	return nil, fmt.Errorf("oci: no blob %s", h)
}

// memBlob is a small blob held in memory.
type memBlob struct {
	data   []byte
	digest v1.Hash
	mt     types.MediaType
}

func blob(data []byte, mt types.MediaType) *memBlob {
	h, _, _ := v1.SHA256(bytes.NewReader(data))
	return &memBlob{data: data, digest: h, mt: mt}
}

func (b *memBlob) Digest() (v1.Hash, error) { return b.digest, nil }
func (b *memBlob) Compressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(b.data)), nil
}
func (b *memBlob) Size() (int64, error)                { return int64(len(b.data)), nil }
func (b *memBlob) MediaType() (types.MediaType, error) { return b.mt, nil }

// fileLayer is a stream file, uploaded from disk as it is read.
type fileLayer struct {
	path   string
	size   int64
	digest v1.Hash
}

func (l *fileLayer) Digest() (v1.Hash, error)            { return l.digest, nil }
func (l *fileLayer) Compressed() (io.ReadCloser, error)  { return os.Open(l.path) }
func (l *fileLayer) Size() (int64, error)                { return l.size, nil }
func (l *fileLayer) MediaType() (types.MediaType, error) { return StreamMediaType, nil }

// NewSource reads the release artifact at ref: its manifest is fetched
// now (an artifact that is not a release is refused), each file when
// release.Apply asks for it, verified against its digest as it is read.
// A cut download starts again from the beginning.
func NewSource(ctx context.Context, ref string, o Options) (release.Source, error) {
	r, ropts, err := o.parse(ref)
	if err != nil {
		return nil, err
	}
	ropts = append(ropts, remote.WithContext(ctx))
	desc, err := remote.Get(r, ropts...)
	if err != nil {
		return nil, fmt.Errorf("oci: %s: %w", ref, err)
	}
	var m v1.Manifest
	if err := json.Unmarshal(desc.Manifest, &m); err != nil {
		return nil, fmt.Errorf("oci: %s: %w: %w", ref, ErrNotRelease, err)
	}
	if m.Config.MediaType != ConfigMediaType {
		return nil, fmt.Errorf("oci: %s: %w (config %s)", ref, ErrNotRelease, m.Config.MediaType)
	}
	files := map[string]v1.Descriptor{}
	for _, l := range m.Layers {
		if t := l.Annotations[TitleAnnotation]; t != "" {
			files[t] = l
		}
	}
	return &source{ref: ref, repo: r.Context(), files: files, opts: ropts}, nil
}

type source struct {
	ref   string
	repo  name.Repository
	files map[string]v1.Descriptor
	opts  []remote.Option
}

func (s *source) String() string { return "oci://" + s.ref }

func (s *source) Open(ctx context.Context, file string, _ int64) (io.ReadCloser, int64, error) {
	d, ok := s.files[file]
	if !ok {
		return nil, 0, fmt.Errorf("%w: %s has no %s", release.ErrSource, s, file)
	}
	l, err := remote.Layer(s.repo.Digest(d.Digest.String()), append(s.opts, remote.WithContext(ctx))...)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %s: %s: %w", release.ErrSource, s, file, err)
	}
	rc, err := l.Compressed()
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %s: %s: %w", release.ErrSource, s, file, err)
	}
	return rc, 0, nil
}

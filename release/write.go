package release

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/paczfs/paczfs/zfs"
)

// WriteOptions describe a release to write from snapshots on a pool.
type WriteOptions struct {
	Snapshot string // dataset@snap: the release's root
	// Base is the previous release's snapshot: an incremental stream
	// from it is written too ("" = a full stream only).
	Base     string
	Dir      string // where the files go (created; must be empty)
	Name     string // the product
	Version  string
	Previous string
	Kernel   string
	Packages []Package
	// PreviousPackages give the manifest's changes.
	PreviousPackages []Package
	// Secret is the armored secret key that signs the manifest.
	Secret []byte
	// Disk is recorded in the manifest (Manifest.Disk) when set.
	Disk *Disk
	Now  func() time.Time
}

// Write sends the release's streams (full, and incremental from Base;
// compressed and large-block records kept), writes the manifest with
// their sizes and SHA-256, the guids, packages and the pool features the
// pool has active, and signs it.
func Write(ctx context.Context, z *zfs.Client, o WriteOptions) (*Manifest, error) {
	if !strings.Contains(o.Snapshot, "@") || o.Base != "" && !strings.Contains(o.Base, "@") {
		return nil, errors.New("release: Snapshot and Base are dataset@snapshot")
	}
	if len(o.Secret) == 0 {
		return nil, errors.New("release: a secret key signs the manifest (GenerateKey)")
	}
	// The stream files are named after the versions: checked before
	// anything is written.
	if err := checkVersion("Version", o.Version); err != nil {
		return nil, err
	}
	if o.Base != "" {
		if err := checkVersion("Previous", o.Previous); err != nil {
			return nil, fmt.Errorf("%w (an incremental stream from Base is named after it)", err)
		}
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, err
	}
	if ents, err := os.ReadDir(o.Dir); err != nil || len(ents) > 0 {
		return nil, fmt.Errorf("release: %s must be an empty directory", o.Dir)
	}
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	snapName := o.Snapshot[strings.Index(o.Snapshot, "@")+1:]
	m := &Manifest{Format: FormatVersion, Name: o.Name, Version: o.Version, Previous: o.Previous,
		Created: now().UTC().Truncate(time.Second), Snapshot: snapName, Kernel: o.Kernel, Packages: o.Packages, Disk: o.Disk}
	if o.PreviousPackages != nil {
		m.Changes = Diff(o.PreviousPackages, o.Packages)
	}
	g, err := z.Properties(ctx, o.Snapshot, "guid")
	if err != nil {
		return nil, err
	}
	m.GUID = g["guid"].Value
	send := func(kind, file string, so zfs.SendOptions) error {
		f, err := os.Create(filepath.Join(o.Dir, file))
		if err != nil {
			return err
		}
		h := sha256.New()
		cw := &countWriter{w: io.MultiWriter(f, h)}
		err = z.Send(ctx, cw, o.Snapshot, so)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		m.Streams = append(m.Streams, Stream{Kind: kind, File: file, Size: cw.n, SHA256: hex.EncodeToString(h.Sum(nil))})
		return nil
	}
	if o.Base != "" {
		b, err := z.Properties(ctx, o.Base, "guid")
		if err != nil {
			return nil, err
		}
		m.BaseGUID = b["guid"].Value
		if err := send(Incremental, o.Previous+"-"+o.Version+".zstream", zfs.SendOptions{From: o.Base, Compressed: true, LargeBlocks: true}); err != nil {
			return nil, err
		}
	}
	if err := send(Full, o.Version+".zstream", zfs.SendOptions{Compressed: true, LargeBlocks: true}); err != nil {
		return nil, err
	}
	pool, _, _ := strings.Cut(o.Snapshot, "/")
	if fs, err := z.PoolProperties(ctx, pool, "all"); err == nil {
		for k, v := range fs {
			if f, ok := strings.CutPrefix(k, "feature@"); ok && v.Value == "active" {
				m.Features = append(m.Features, f)
			}
		}
		slices.Sort(m.Features)
	}
	data, err := m.Marshal()
	if err != nil {
		return nil, err
	}
	sig, err := Sign(data, o.Secret)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(o.Dir, ManifestFile), data, 0o644); err != nil {
		return nil, err
	}
	return m, os.WriteFile(filepath.Join(o.Dir, SignatureFile), sig, 0o644)
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

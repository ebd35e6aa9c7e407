package release

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode"
)

// FormatVersion is the manifest format this package writes and reads.
const FormatVersion = 1

// Stream kinds.
const (
	Full        = "full"
	Incremental = "incremental"
)

// Manifest describes one release.
type Manifest struct {
	Format   int       `json:"format"`
	Name     string    `json:"name"`    // the product, e.g. "paczfs-lab"
	Version  string    `json:"version"` // compared by numeric runs: 1.10 > 1.9
	Previous string    `json:"previous,omitempty"`
	Created  time.Time `json:"created"`
	// Snapshot is the release's snapshot name (dataset@Snapshot on the
	// build side) and GUID its guid, which a received copy keeps.
	Snapshot string `json:"snapshot"`
	GUID     string `json:"guid"`
	// BaseGUID is the guid of the previous release's snapshot, the base
	// of the incremental stream.
	BaseGUID string    `json:"base_guid,omitempty"`
	Kernel   string    `json:"kernel"`
	Packages []Package `json:"packages"`
	Changes  Changes   `json:"changes"`
	// Features are the pool features the stream needs (zpool get).
	Features []string `json:"features,omitempty"`
	Streams  []Stream `json:"streams"`
	// Disk is the identity of the disk a build made the release on (its
	// GPT GUIDs): a build derived from this release gives its own disk
	// the same GUIDs, so the root's /etc/fstab names the same partitions
	// as on every device the earlier image was written to. Absent in a
	// release written from a snapshot alone.
	Disk *Disk `json:"disk,omitempty"`
}

// Disk is a disk's GPT identity.
type Disk struct {
	GUID string `json:"guid"`
	// Partitions are the partitions' unique GUIDs by partition number.
	Partitions map[int]string `json:"partitions"`
}

// Package is one installed package.
type Package struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

// Changes is the package list's difference from the previous release.
type Changes struct {
	Added    []Package `json:"added,omitempty"`
	Removed  []Package `json:"removed,omitempty"`
	Upgraded []Upgrade `json:"upgraded,omitempty"`
}

// Upgrade is one package whose version changed.
type Upgrade struct {
	Name string `json:"name"`
	From string `json:"from"`
	To   string `json:"to"`
}

// Stream is one send stream of the release.
type Stream struct {
	Kind   string `json:"kind"` // full or incremental
	File   string `json:"file"` // its file name beside the manifest
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// checkVersion checks a release version: no space, slash, backslash, @
// or control character, not . or .. (stream files and environments are
// named after it).
func checkVersion(field, v string) error {
	if v == "" || v == "." || v == ".." || strings.ContainsAny(v, " /\\@") || strings.ContainsFunc(v, unicode.IsControl) {
		return fmt.Errorf("%s %q: a version such as 2 or 2026.12.1", field, v)
	}
	return nil
}

// maxStreamSize bounds a stream's size (1 PiB): sizes are added to
// margins and offsets, which must not overflow.
const maxStreamSize = 1 << 50

// ErrManifest: the manifest is malformed.
var ErrManifest = errors.New("bad release manifest")

// Validate checks a manifest's fields.
func (m *Manifest) Validate() error {
	var errs []string
	if m.Format != FormatVersion {
		errs = append(errs, fmt.Sprintf("format %d, want %d", m.Format, FormatVersion))
	}
	if err := checkVersion("version", m.Version); err != nil {
		errs = append(errs, err.Error())
	}
	if !isGUID(m.GUID) {
		errs = append(errs, fmt.Sprintf("guid %q: a decimal snapshot guid", m.GUID))
	}
	if m.Snapshot == "" || strings.ContainsAny(m.Snapshot, "@/ ") {
		errs = append(errs, fmt.Sprintf("snapshot %q: a snapshot name", m.Snapshot))
	}
	full, incr := 0, 0
	for i, s := range m.Streams {
		switch s.Kind {
		case Full:
			full++
		case Incremental:
			incr++
			if !isGUID(m.BaseGUID) {
				errs = append(errs, "an incremental stream needs base_guid")
			}
		default:
			errs = append(errs, fmt.Sprintf("streams[%d]: kind %q, want full or incremental", i, s.Kind))
		}
		if s.File == "" || strings.ContainsAny(s.File, "/\\") || s.File == "." || s.File == ".." {
			errs = append(errs, fmt.Sprintf("streams[%d]: file %q: a plain file name", i, s.File))
		}
		if s.Size <= 0 || len(s.SHA256) != 64 {
			errs = append(errs, fmt.Sprintf("streams[%d]: size and sha256 are required", i))
		} else if s.Size > maxStreamSize {
			errs = append(errs, fmt.Sprintf("streams[%d]: size %d is over %d", i, s.Size, int64(maxStreamSize)))
		}
	}
	if full > 1 || incr > 1 || full+incr == 0 {
		errs = append(errs, "streams: one full and/or one incremental stream")
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %s", ErrManifest, strings.Join(errs, "; "))
	}
	return nil
}

func isGUID(s string) bool {
	if s == "" || len(s) > 20 {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// Stream returns the stream of a kind, if the release has one.
func (m *Manifest) Stream(kind string) (Stream, bool) {
	for _, s := range m.Streams {
		if s.Kind == kind {
			return s, true
		}
	}
	return Stream{}, false
}

// Marshal renders the manifest as the bytes that are signed.
func (m *Manifest) Marshal() ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(m, "", "  ")
	return append(b, '\n'), err
}

// ParseManifest reads a manifest (verify its signature first: Verify).
// Fields this version does not know are ignored when the format is
// FormatVersion: a format's later fields are additions an older device
// may skip (it is signed, so they are the publisher's). A newer format
// is refused.
func ParseManifest(data []byte) (*Manifest, error) {
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrManifest, err)
	}
	return &m, m.Validate()
}

// Diff is the change from one package list to the next.
func Diff(from, to []Package) Changes {
	old := map[string]string{}
	for _, p := range from {
		old[p.Name] = p.Version
	}
	var c Changes
	seen := map[string]bool{}
	for _, p := range to {
		seen[p.Name] = true
		v, ok := old[p.Name]
		switch {
		case !ok:
			c.Added = append(c.Added, p)
		case v != p.Version:
			c.Upgraded = append(c.Upgraded, Upgrade{Name: p.Name, From: v, To: p.Version})
		}
	}
	for _, p := range from {
		if !seen[p.Name] {
			c.Removed = append(c.Removed, p)
		}
	}
	return c
}

// Open reads the release in dir (a directory Write made, or Download
// fetched): its manifest, verified against its detached signature with
// the trusted keys, and parsed. It returns the signer's fingerprint. The
// streams are not read: VerifyStream checks one before it is used.
func Open(dir string, trusted [][]byte) (*Manifest, string, error) {
	data, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		return nil, "", err
	}
	sig, err := os.ReadFile(filepath.Join(dir, SignatureFile))
	if err != nil {
		return nil, "", err
	}
	signer, err := Verify(data, sig, trusted...)
	if err != nil {
		return nil, "", err
	}
	m, err := ParseManifest(data)
	return m, signer, err
}

// VerifyStream checks that st's file in dir has the size and SHA-256 the
// manifest gives (ErrStream when not): run it before zfs receive reads
// the file, since the kernel parses what it receives, and from a
// directory no one else can write in (Apply checks and receives through
// one open file).
func VerifyStream(dir string, st Stream) error {
	return checkStreamFile(context.Background(), filepath.Join(dir, st.File), st)
}

package release

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/paczfs/paczfs/boot"
	"github.com/paczfs/paczfs/bootenv"
	"github.com/paczfs/paczfs/hooks"
	"github.com/paczfs/paczfs/zfs"
)

// Release file names in a release directory.
const (
	ManifestFile  = "manifest.json"
	SignatureFile = "manifest.json.sig"
	// PropVersion records an environment's release version on the pool.
	PropVersion = "org.paczfs:version"
)

// Errors Apply refuses with, before anything is created.
var (
	ErrDowngrade = errors.New("not newer than the booted release")
	ErrNoBase    = errors.New("the release's base snapshot is not on this pool and it has no full stream")
	ErrStream    = errors.New("stream does not match the manifest")
	ErrSpace     = errors.New("not enough space")
	// ErrApplied: the release is on the pool already, and no interrupted
	// apply left it (it booted well, or failed its trial).
	ErrApplied = errors.New("applied on this device before")
	// ErrWorkDir: the work directory is not this user's alone.
	ErrWorkDir = errors.New("unsafe work directory")
)

// DefaultWorkDir is where Apply keeps what a Source delivers: kept across
// reboots (a download cut by a power loss resumes), emptied of the
// stream once it is received.
const DefaultWorkDir = "/var/tmp/paczfs-release"

// maxManifest bounds a manifest or signature read from a Source.
const maxManifest = 4 << 20

// ApplyOptions say what to apply and how.
type ApplyOptions struct {
	// Dir holds manifest.json, manifest.json.sig and the stream files;
	// with Source, it is where they are fetched to (default
	// DefaultWorkDir).
	Dir string
	// Source, when set, delivers the release (HTTPSource, ArchiveSource,
	// release/oci): the manifest and signature are fetched and verified
	// before the one stream Apply needs is fetched.
	Source Source
	// Trusted are the armored public keys a release must be signed by.
	Trusted [][]byte
	// Name of the new environment (default release-<version>).
	Name string
	// Tries for the trial (default 3).
	Tries int
	// Runner runs zfs (default hooks.ExecRunner); Logger logs.
	Runner hooks.Runner
	Logger *slog.Logger
	// Step, when set, is called as Apply reaches each Step: progress for
	// a caller, and the points where tests cut the power.
	Step func(Step)
}

// Step is a point Apply reaches, in this order (the fetch steps only
// with a Source; a resumed apply skips to StepReceived).
type Step string

const (
	StepVerified  Step = "verified"  // the manifest's signature is good
	StepFetching  Step = "fetching"  // half the stream is fetched
	StepFetched   Step = "fetched"   // the stream is here and matches the manifest
	StepReceiving Step = "receiving" // half the stream is in zfs receive
	StepReceived  Step = "received"  // the new environment exists, unmounted, state new
	StepBootFiles Step = "boot-files"
	StepActivated Step = "activated" // a trial: the next boot tries it
)

// Result says what Apply did.
type Result struct {
	Env     string `json:"env"`
	Version string `json:"version"`
	Stream  string `json:"stream"`  // full or incremental
	Signer  string `json:"signer"`  // the signing key's fingerprint
	Resumed bool   `json:"resumed"` // the stream had been received by an earlier, interrupted run
}

// Apply applies the release in o.Dir to the system m manages: checks,
// receive, boot files, trial (see the package documentation). Reboot to
// try it; the boot decides.
func Apply(ctx context.Context, m *bootenv.Manager, o ApplyOptions) (Result, error) {
	var r Result
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	run := o.Runner
	if run == nil {
		run = &hooks.ExecRunner{Logger: log}
	}
	z := zfs.New(zfs.WithRunner(run), zfs.WithLogger(log))

	dir := o.Dir
	if o.Source != nil {
		if dir == "" {
			dir = DefaultWorkDir
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return r, err
		}
		if err := checkWorkDir(dir); err != nil {
			return r, err
		}
		// The manifest and signature are fetched whole every time: a
		// release republished since the last try is read afresh.
		for _, n := range []string{ManifestFile, SignatureFile} {
			os.Remove(filepath.Join(dir, n+".part"))
			if _, err := fetch(ctx, o.Source, dir, n, maxManifest, -1); err != nil {
				return r, err
			}
		}
	}
	// 1. The signature, over the exact bytes read.
	manifest, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		return r, err
	}
	sig, err := os.ReadFile(filepath.Join(dir, SignatureFile))
	if err != nil {
		return r, err
	}
	if r.Signer, err = Verify(manifest, sig, o.Trusted...); err != nil {
		return r, err
	}
	step := func(s Step) {
		log.Debug("apply", "step", s)
		if o.Step != nil {
			o.Step(s)
		}
	}
	step(StepVerified)
	mf, err := ParseManifest(manifest)
	if err != nil {
		return r, err
	}
	r.Version = mf.Version
	name := o.Name
	if name == "" {
		name = "release-" + mf.Version
	}
	if err := bootenv.ValidName(name); err != nil {
		return r, err
	}
	r.Env = name
	pool := m.Pool()
	container := pool + "/system"
	var fetched string // the stream file fetched from o.Source

	// 2. Where this pool stands, in one zfs list: its snapshots by guid,
	// the environments with their versions, the space left. (Each zfs
	// command is a process and a pool walk; apply's own cost beside
	// zfs receive is mostly such commands.)
	st, err := survey(ctx, z, container)
	if err != nil {
		return r, err
	}
	byGUID := st.byGUID
	// The release must be newer than the booted one, whether its stream
	// is received now or was by an interrupted run: an older signed
	// release replayed is refused, not activated again.
	current := m.Booted()
	if current == "" {
		// An image, not a running system: what it boots by default.
		bf, err := z.PoolProperties(ctx, pool, "bootfs")
		if err != nil {
			return r, err
		}
		if v := bf["bootfs"].Value; strings.HasPrefix(v, container+"/") {
			current = strings.TrimPrefix(v, container+"/")
		}
	}
	if current != "" {
		if cur := st.versions[m.Dataset(current)]; cur != "" && cur != "-" && boot.CompareVersions(mf.Version, cur) <= 0 {
			return r, fmt.Errorf("release %s: %w (%s)", mf.Version, ErrDowngrade, cur)
		}
	}
	activated := false
	if have, ok := byGUID[mf.GUID]; ok {
		// Received already: carry on with that environment if an
		// interrupted run left it (new, or activated as a trial that has
		// not booted yet), and it is the one wanted.
		ds, _, _ := strings.Cut(have, "@")
		if ds != m.Dataset(name) {
			return r, fmt.Errorf("release %s is on this pool already, as %s", mf.Version, have)
		}
		switch state := st.states[ds]; state {
		case "", "-":
			// zfs receive sets its properties after the snapshot is
			// there: a power cut between leaves them unset.
			if err := z.SetProperties(ctx, ds, receiveProps(mf, "")); err != nil {
				return r, err
			}
		case string(bootenv.StateNew):
		case string(bootenv.StateTrying):
			activated = true
		default:
			return r, fmt.Errorf("release %s: %w: %s is %s (destroy it to apply the release again)", mf.Version, ErrApplied, name, state)
		}
		r.Resumed = true
		log.Info("release received by an earlier run; continuing", "env", name)
		if o.Source != nil {
			// What the interrupted run fetched, not needed again.
			for _, s := range mf.Streams {
				os.Remove(filepath.Join(dir, s.File))
				os.Remove(filepath.Join(dir, s.File+".part"))
			}
		}
	} else {
		if _, ok := st.versions[m.Dataset(name)]; ok {
			return r, fmt.Errorf("%s exists and is not this release: %w", m.Dataset(name), bootenv.ErrExists)
		}
		// 3. Which stream: the incremental one when its base is here.
		stream, base, err := pick(mf, byGUID)
		if err != nil {
			return r, err
		}
		r.Stream = stream.Kind
		file := filepath.Join(dir, stream.File)
		// 4. Space: the stream's size and a margin on the pool; the
		// booted environment's boot files on the ESP; and, to fetch it,
		// the stream in the work directory.
		if err := checkSpace(m, container, st.available, stream.Size); err != nil {
			return r, err
		}
		if o.Source != nil {
			if err := checkDirSpace(dir, stream); err != nil {
				return r, err
			}
			// A complete copy left by an earlier run is kept only if it
			// is this release's stream.
			if _, err := os.Stat(file); err == nil && checkStreamFile(ctx, file, stream) != nil {
				os.Remove(file)
			}
			src := halfway(o.Source, stream.File, stream.Size, func() { step(StepFetching) })
			if file, err = fetch(ctx, src, dir, stream.File, stream.Size, stream.Size); err != nil {
				return r, err
			}
			fetched = file
		}
		// 5. The stream's bytes, before the kernel parses any of them,
		// read from the one open file zfs receive then reads: a file
		// put in its place after the check is never received.
		f, err := os.Open(file)
		if err != nil {
			return r, err
		}
		defer f.Close()
		err = checkStream(ctx, f, stream)
		if err == nil {
			_, err = f.Seek(0, io.SeekStart)
		}
		if err != nil {
			if fetched != "" {
				os.Remove(fetched) // fetched anew by the next run
			}
			return r, err
		}
		if fetched != "" {
			step(StepFetched)
		}
		// 6. Receive, unmounted; interrupted, ZFS keeps nothing of it.
		err = z.Receive(ctx, &halfReader{r: f, half: stream.Size / 2, at: func() { step(StepReceiving) }}, m.Dataset(name), zfs.ReceiveOptions{Props: receiveProps(mf, base)})
		if err != nil {
			return r, err
		}
	}
	if fetched != "" {
		// Received: the copy is not needed again (a rerun finds the
		// snapshot by its guid).
		os.Remove(fetched)
	}
	step(StepReceived)
	// 7. Boot files from its own root, then the trial (an environment
	// already activated has them, and is activated again).
	if !activated {
		if err := m.InstallBootFiles(ctx, name); err != nil {
			return r, err
		}
	}
	step(StepBootFiles)
	tries := o.Tries
	if tries == 0 {
		tries = 3
	}
	if err := m.Activate(ctx, name, bootenv.ActivateOptions{Mode: bootenv.Trial, Tries: tries}); err != nil {
		return r, err
	}
	step(StepActivated)
	return r, nil
}

// receiveProps are the properties a received environment gets: unmounted
// until booted, state new, the release's version; and its origin, base,
// when the stream is incremental.
func receiveProps(mf *Manifest, base string) map[string]string {
	props := map[string]string{"canmount": "noauto", "mountpoint": "/", bootenv.PropState: string(bootenv.StateNew), PropVersion: mf.Version}
	if base != "" {
		props["origin"] = base
	}
	return props
}

// checkWorkDir refuses a work directory someone else could write in
// (Apply runs as root, and receives and deletes what is in it): it must
// be a directory, not a link, owned by this user and writable by no one
// else.
func checkWorkDir(dir string) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%w: %s is not a directory (a link is not followed); set ApplyOptions.Dir to one", ErrWorkDir, dir)
	}
	uid := -1
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		uid = int(st.Uid)
	}
	if uid != os.Geteuid() || fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("%w: %s is owned by uid %d with mode %v; it must be uid %d's and writable by no one else (chown it and chmod go-w, or set ApplyOptions.Dir to another)", ErrWorkDir, dir, uid, fi.Mode().Perm(), os.Geteuid())
	}
	return nil
}

// ctxReader stops reading once ctx is done: copying and hashing a stream
// of gigabytes stop when the caller cancels.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// halfReader calls at once, when half of what it reads has passed.
type halfReader struct {
	r    io.Reader
	half int64
	n    int64
	at   func()
}

func (h *halfReader) Read(p []byte) (int, error) {
	if h.at != nil && h.n < h.half && h.n+int64(len(p)) > h.half {
		p = p[:h.half-h.n] // stop at half, so what follows has not been read
	}
	n, err := h.r.Read(p)
	h.n += int64(n)
	if h.at != nil && h.n >= h.half {
		at := h.at
		h.at = nil
		at()
	}
	return n, err
}

// halfway wraps src so that reading file name past half its size calls at.
func halfway(src Source, name string, size int64, at func()) Source {
	return &halfSource{Source: src, name: name, size: size, at: at}
}

type halfSource struct {
	Source
	name string
	size int64
	at   func()
}

func (h *halfSource) Open(ctx context.Context, name string, offset int64) (io.ReadCloser, int64, error) {
	rc, start, err := h.Source.Open(ctx, name, offset)
	if err != nil || name != h.name || start >= h.size/2 {
		return rc, start, err
	}
	return struct {
		io.Reader
		io.Closer
	}{&halfReader{r: rc, half: h.size/2 - start, at: h.at}, rc}, start, nil
}

// poolState is what Apply needs to know of the pool before it receives.
type poolState struct {
	byGUID    map[string]string // snapshot guid -> name
	versions  map[string]string // environment dataset -> org.paczfs:version ("-" when unset)
	states    map[string]string // environment dataset -> org.paczfs:state ("-" when unset)
	available int64             // bytes free for the container's children
}

// survey reads the container's filesystems and snapshots in one zfs list.
func survey(ctx context.Context, z *zfs.Client, container string) (poolState, error) {
	st := poolState{byGUID: map[string]string{}, versions: map[string]string{}, states: map[string]string{}}
	list, err := z.List(ctx, container, zfs.ListOptions{Types: []string{"filesystem", "snapshot"}, Recursive: true,
		Props: []string{"guid", PropVersion, "available", bootenv.PropState}})
	if err != nil {
		return st, err
	}
	found := false
	for _, d := range list {
		switch {
		case d.Type == "snapshot":
			st.byGUID[d.Props["guid"]] = d.Name
		case d.Name == container:
			found = true
			v := d.Props["available"]
			if st.available, err = strconv.ParseInt(v, 10, 64); err != nil {
				return st, fmt.Errorf("available space of %s: %q", container, v)
			}
		default:
			st.versions[d.Name] = d.Props[PropVersion]
			st.states[d.Name] = d.Props[bootenv.PropState]
		}
	}
	if !found {
		return st, fmt.Errorf("%s: %w", container, zfs.ErrNotFound)
	}
	return st, nil
}

// checkDirSpace refuses to fetch st into dir when its file system cannot
// hold what is still missing of it.
func checkDirSpace(dir string, st Stream) error {
	var have int64
	for _, n := range []string{st.File, st.File + ".part"} {
		if fi, err := os.Stat(filepath.Join(dir, n)); err == nil {
			have = max(have, fi.Size())
		}
	}
	var fs syscall.Statfs_t
	if err := syscall.Statfs(dir, &fs); err != nil {
		return err
	}
	if free := int64(fs.Bavail) * int64(fs.Bsize); free < st.Size-have {
		return fmt.Errorf("%w: %s has %d bytes free, the %s stream needs %d more", ErrSpace, dir, free, st.Kind, st.Size-have)
	}
	return nil
}

// pick chooses the incremental stream when its base snapshot is present,
// else the full stream.
func pick(mf *Manifest, byGUID map[string]string) (Stream, string, error) {
	if s, ok := mf.Stream(Incremental); ok {
		if base, ok := byGUID[mf.BaseGUID]; ok {
			return s, base, nil
		}
	}
	if s, ok := mf.Stream(Full); ok {
		return s, "", nil
	}
	return Stream{}, "", fmt.Errorf("release %s: %w (base guid %s)", mf.Version, ErrNoBase, mf.BaseGUID)
}

// checkStreamFile is checkStream on the file at file.
func checkStreamFile(ctx context.Context, file string, st Stream) error {
	f, err := os.Open(file)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrStream, err)
	}
	defer f.Close()
	return checkStream(ctx, f, st)
}

// checkStream compares the size and SHA-256 of what f holds from where it
// is with the manifest's stream.
func checkStream(ctx context.Context, f *os.File, st Stream) error {
	h := sha256.New()
	n, err := io.Copy(h, ctxReader{ctx, f})
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err != nil {
		return fmt.Errorf("%w: %w", ErrStream, err)
	}
	if n != st.Size {
		return fmt.Errorf("%w: %s is %d bytes, the manifest says %d", ErrStream, path.Base(f.Name()), n, st.Size)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != st.SHA256 {
		return fmt.Errorf("%w: %s has sha256 %s, the manifest says %s", ErrStream, path.Base(f.Name()), got, st.SHA256)
	}
	return nil
}

// spaceMargin is kept free on the pool beyond the stream's size.
const spaceMargin = 64 << 20

func checkSpace(m *bootenv.Manager, container string, avail, size int64) error {
	if avail < size+spaceMargin {
		return fmt.Errorf("%w on %s: %d bytes free, the stream needs %d and %d kept free", ErrSpace, container, avail, size, spaceMargin)
	}
	need := dirSize(filepath.Join(m.ESP(), "env", m.Booted()))
	var st syscall.Statfs_t
	if err := syscall.Statfs(m.ESP(), &st); err != nil {
		return fmt.Errorf("ESP %s: %w", m.ESP(), err)
	}
	if free := int64(st.Bavail) * st.Bsize; free < need {
		return fmt.Errorf("%w on the ESP: %d bytes free, a kernel and initramfs need about %d (destroy an environment)", ErrSpace, free, need)
	}
	return nil
}

func dirSize(dir string) int64 {
	var n int64
	_ = filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
		return nil
	})
	return n
}

// KeysDir is where an image keeps the public keys it trusts releases from.
const KeysDir = "/etc/paczfs/release-keys"

// TrustedKeys reads the armored public keys (*.asc) in dir.
func TrustedKeys(dir string) ([][]byte, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.asc"))
	if err != nil {
		return nil, err
	}
	var keys [][]byte
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		keys = append(keys, b)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w: no keys in %s (image.Config.Manage.ReleaseKeys)", ErrSignature, dir)
	}
	return keys, nil
}

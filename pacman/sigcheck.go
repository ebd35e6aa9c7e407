package pacman

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"golang.org/x/sync/errgroup"

	"github.com/paczfs/paczfs/hooks"
	"github.com/paczfs/paczfs/internal/alpm"
	"github.com/paczfs/paczfs/internal/chroot"
	"github.com/paczfs/paczfs/internal/fsx"
)

// Package signatures are checked by paczfs before libalpm commits, all
// packages at once on every CPU and in this process, instead of by
// libalpm, one package after another with a gpg process for each (about
// 0.2 s a package on the lab's emulated CPU before any hashing: most of
// a base install's time). The check is a fast path, never a second
// policy: it accepts a package only when libalpm would, and for anything
// else (a missing or unknown key, a key short of the trust the SigLevel
// asks for, a bad, expired or doubled signature, a hash gpg would not
// take) the transaction goes to libalpm's own check, which decides and
// words the error as pacman would.
//
// What it mirrors (libalpm's signing.c, _alpm_check_pgp_helper): every
// signature in the file must be good; the key's validity in the keyring
// (gpg's, from the trust the keyring's master keys give) must be full or
// ultimate, or marginal with PackageMarginalOk, or unknown with
// PackageUnknownOk (TrustAll), never "never"; a disabled, revoked or
// expired key or an expired signature fails. The validity is gpg's own
// (--list-keys), read once per transaction; the cryptography is
// go-crypto's. Where the two differ the check is the stricter: one
// binary signature packet and nothing else in the file (go-crypto's
// reader skips packets it does not know, which gpg or libalpm refuse), the
// issuer's fingerprint matching, no signature older than its key or from
// the future (gpg's "time conflict"), and an expired key refused (libalpm
// takes one). The file's SHA-256 must be the sync database's: libalpm
// checks that one again when it reads the file to install it, so the
// file installed is the file whose signature was checked. Afterwards
// the local database records the signature check as libalpm would have
// (%VALIDATION%), so pacman -Qi says "Validated By: ... Signature".

// errSigSlowPath says that the fast check did not accept a package: the
// transaction is checked by libalpm instead.
var errSigSlowPath = errors.New("package signature left to libalpm")

// keyValidity is what gpg says of a key (a primary key or a subkey).
type keyValidity struct {
	own      byte // the validity letter of the key's own line (pub or sub)
	primary  byte // that of its primary key
	disabled bool
}

// sigChecker holds a keyring's public keys and gpg's view of their
// validity.
type sigChecker struct {
	keys     openpgp.EntityList
	validity map[string]keyValidity // by upper-case hex fingerprint
}

// loadSigChecker reads the keyring at gpgdir: gpg lists its keys with
// their validity (updating the trust database when it is due, as the
// first gpgme verification would) and exports them for go-crypto.
func loadSigChecker(ctx context.Context, run hooks.Runner, gpgdir string) (*sigChecker, error) {
	gpg := []string{"gpg", "--homedir", gpgdir, "--no-permission-warning", "--batch", "--no-tty"}
	env := chroot.Environ()
	list, err := run.Run(ctx, hooks.Cmd{Args: append(gpg, "--with-colons", "--fixed-list-mode", "--list-keys"), Env: env})
	if err != nil {
		return nil, fmt.Errorf("list the keyring's keys: %w", err)
	}
	exported, err := run.Run(ctx, hooks.Cmd{Args: append(gpg, "--export"), Env: env})
	if err != nil {
		return nil, fmt.Errorf("export the keyring's keys: %w", err)
	}
	keys, err := openpgp.ReadKeyRing(bytes.NewReader(exported))
	if err != nil {
		return nil, fmt.Errorf("read the keyring's keys: %w", err)
	}
	return &sigChecker{keys: keys, validity: parseValidity(string(list))}, nil
}

// parseValidity reads gpg --with-colons --list-keys: each pub and sub
// record's validity (field 2), the primary's capabilities (field 12, "D"
// for disabled), and the fingerprint on the fpr record after it.
func parseValidity(colons string) map[string]keyValidity {
	out := map[string]keyValidity{}
	var cur keyValidity
	var primary byte
	var disabled, pending bool
	for _, line := range strings.Split(colons, "\n") {
		f := strings.Split(line, ":")
		switch f[0] {
		case "pub":
			primary, disabled, pending = 0, false, true
			if len(f) > 1 && f[1] != "" {
				primary = f[1][0]
			}
			if len(f) > 11 && strings.Contains(f[11], "D") {
				disabled = true
			}
			cur = keyValidity{own: primary, primary: primary, disabled: disabled}
		case "sub":
			pending = true
			cur = keyValidity{primary: primary, disabled: disabled}
			if len(f) > 1 && f[1] != "" {
				cur.own = f[1][0]
			}
		case "fpr":
			if pending && len(f) > 9 && f[9] != "" {
				fpr := strings.ToUpper(f[9])
				if _, seen := out[fpr]; seen {
					cur = keyValidity{} // listed twice: trusted neither way
				}
				out[fpr] = cur
			}
			pending = false
		}
	}
	return out
}

// trusted reports whether libalpm would take a signature of validity v
// at level: full and ultimate always, marginal and unknown when the
// level allows them, nothing else.
func trusted(v byte, level int) bool {
	switch v {
	case 'f', 'u':
		return true
	case 'm':
		return level&alpm.SigPackageMarginalOK != 0
	case '-', 'q', 'o':
		return level&alpm.SigPackageUnknownOK != 0
	}
	return false
}

// plainSignature accepts only what gpg reads as one plain version 4
// signature packet: a definite length that spans the whole input (gpg
// finds no signature in a partial or indeterminate length, where
// go-crypto's reader takes one), and no unhashed subpacket but the
// issuer's key ID and fingerprint (gpg refuses an unknown critical one,
// which go-crypto ignores there). Anything else goes to libalpm.
func plainSignature(sig []byte) error {
	if len(sig) < 2 || sig[0]&0x80 == 0 {
		return errors.New("not an OpenPGP packet")
	}
	var tag byte
	var hdr, n int
	if sig[0]&0x40 != 0 { // new format
		tag = sig[0] & 0x3f
		switch o := int(sig[1]); {
		case o < 192:
			hdr, n = 2, o
		case o < 224:
			if len(sig) < 3 {
				return errors.New("short packet header")
			}
			hdr, n = 3, (o-192)<<8+int(sig[2])+192
		case o == 255:
			if len(sig) < 6 {
				return errors.New("short packet header")
			}
			hdr, n = 6, int(binary.BigEndian.Uint32(sig[2:6]))
		default:
			return errors.New("a partial body length")
		}
	} else {
		tag = (sig[0] >> 2) & 0x0f
		switch sig[0] & 3 {
		case 0:
			hdr, n = 2, int(sig[1])
		case 1:
			if len(sig) < 3 {
				return errors.New("short packet header")
			}
			hdr, n = 3, int(binary.BigEndian.Uint16(sig[1:3]))
		case 2:
			if len(sig) < 5 {
				return errors.New("short packet header")
			}
			hdr, n = 5, int(binary.BigEndian.Uint32(sig[1:5]))
		default:
			return errors.New("an indeterminate length")
		}
	}
	if tag != 2 {
		return fmt.Errorf("packet tag %d, not a signature", tag)
	}
	if n < 0 || hdr+n != len(sig) {
		return errors.New("not exactly one signature packet")
	}
	body := sig[hdr:]
	// Version 4: version, type, public key and hash algorithms, then
	// the hashed and the unhashed subpackets, each with a 2-byte length.
	if len(body) < 6 || body[0] != 4 {
		return errors.New("not a version 4 signature")
	}
	hashed := int(binary.BigEndian.Uint16(body[4:6]))
	u := 6 + hashed
	if len(body) < u+2 {
		return errors.New("short signature")
	}
	unhashed := body[u+2:]
	ul := int(binary.BigEndian.Uint16(body[u : u+2]))
	if len(unhashed) < ul {
		return errors.New("short signature")
	}
	for sub := unhashed[:ul]; len(sub) > 0; {
		var l, h int
		switch o := int(sub[0]); {
		case o < 192:
			l, h = o, 1
		case o < 255:
			if len(sub) < 2 {
				return errors.New("short subpacket")
			}
			l, h = (o-192)<<8+int(sub[1])+192, 2
		default:
			if len(sub) < 5 {
				return errors.New("short subpacket")
			}
			l, h = int(binary.BigEndian.Uint32(sub[1:5])), 5
		}
		if l < 1 || len(sub) < h+l {
			return errors.New("bad subpacket length")
		}
		if t := sub[h]; t != 16 && t != 33 { // issuer, issuer fingerprint
			return fmt.Errorf("unhashed subpacket %d", t&0x7f)
		}
		sub = sub[h+l:]
	}
	return nil
}

// check verifies file against its detached signature sig at level,
// and that the file's SHA-256 is sha256 (the sync database's, which
// libalpm checks again when it reads the file to install it). It returns
// nil when libalpm would accept it, an error wrapping errSigSlowPath
// saying why not otherwise.
func (c *sigChecker) check(file string, sig []byte, level int, sha256sum string) error {
	slow := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s: %s", errSigSlowPath, filepath.Base(file), fmt.Sprintf(format, a...))
	}
	// One signature packet, binary, and nothing else: gpg checks every
	// signature in the file and fails on most packets it cannot read
	// (libalpm 15 hangs on a marker packet, which gpg ignores), where
	// go-crypto's reader skips what it does not know and verifies the
	// first signature whose key it has.
	if err := plainSignature(sig); err != nil {
		return slow("%v", err)
	}
	r := bytes.NewReader(sig)
	var sp *packet.Signature
	for n := 0; ; n++ {
		p, err := packet.Read(r)
		if err == io.EOF {
			break
		}
		if err != nil {
			return slow("signature unreadable: %v", err)
		}
		s, ok := p.(*packet.Signature)
		if !ok || n > 0 {
			return slow("not exactly one signature packet")
		}
		sp = s
	}
	if sp == nil {
		return slow("no signature")
	}
	if sp.SigType != packet.SigTypeBinary {
		return slow("signature type %#x", sp.SigType)
	}
	if sp.IssuerKeyId == nil {
		return slow("signature names no key")
	}
	f, err := os.Open(file)
	if err != nil {
		return slow("%v", err)
	}
	defer f.Close()
	sum := sha256.New()
	_, signer, err := openpgp.VerifyDetachedSignature(c.keys, io.TeeReader(f, sum), bytes.NewReader(sig), nil)
	if err != nil {
		return slow("%v", err)
	}
	if sha256sum == "" || !strings.EqualFold(hex.EncodeToString(sum.Sum(nil)), sha256sum) {
		return slow("SHA-256 is not the database's %q", sha256sum)
	}
	// The key that signed: the one key of the signer with the issuer's
	// ID, and the issuer's fingerprint when the signature gives it (as
	// gpg looks it up).
	var keys []*packet.PublicKey
	if signer.PrimaryKey.KeyId == *sp.IssuerKeyId {
		keys = append(keys, signer.PrimaryKey)
	}
	for _, sk := range signer.Subkeys {
		if sk.PublicKey.KeyId == *sp.IssuerKeyId {
			keys = append(keys, sk.PublicKey)
		}
	}
	if len(keys) != 1 {
		return slow("%d keys with ID %X", len(keys), *sp.IssuerKeyId)
	}
	key := keys[0]
	if sp.IssuerFingerprint != nil && !bytes.Equal(sp.IssuerFingerprint, key.Fingerprint) {
		return slow("issuer fingerprint %X is not key %X's", sp.IssuerFingerprint, key.Fingerprint)
	}
	// gpg refuses a signature older than its key, or a key or signature
	// from the future ("time conflict"); go-crypto does not ask.
	now := time.Now()
	if sp.CreationTime.Before(key.CreationTime) || key.CreationTime.After(now) || sp.CreationTime.After(now) {
		return slow("signature made %s by key %X created %s", sp.CreationTime.UTC().Format(time.RFC3339), key.Fingerprint, key.CreationTime.UTC().Format(time.RFC3339))
	}
	v, ok := c.validity[strings.ToUpper(hex.EncodeToString(key.Fingerprint))]
	switch {
	case !ok:
		return slow("gpg does not list key %X", key.Fingerprint)
	case v.disabled:
		return slow("key %X is disabled in the keyring", key.Fingerprint)
	case !trusted(v.own, level) || !trusted(v.primary, level):
		return slow("key %X has validity %q (primary %q) in the keyring", key.Fingerprint, v.own, v.primary)
	}
	return nil
}

// sigJob is one package to check.
type sigJob struct {
	file   string // the package file in a cache directory
	b64    string // the sync database's signature, when it has one
	level  int    // the package's signature level (its repository's)
	sha256 string // the sync database's checksum of the file
	signed *bool  // set when a signature was checked (not an optional one missing)
}

// checkAll checks jobs on every CPU. It returns nil when all pass, an
// error wrapping errSigSlowPath when any does not, or ctx's error.
// done is called after each package, with how many are done.
func (c *sigChecker) checkAll(ctx context.Context, jobs []sigJob, done func(n int)) error {
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(runtime.GOMAXPROCS(0))
	var mu sync.Mutex
	n := 0
	finished := func() {
		mu.Lock()
		defer mu.Unlock()
		n++
		done(n)
	}
	for _, j := range jobs {
		g.Go(func() error {
			if err := ctx.Err(); err != nil {
				return err
			}
			var sig []byte
			var err error
			if j.b64 != "" {
				if sig, err = base64.StdEncoding.DecodeString(j.b64); err != nil {
					return fmt.Errorf("%w: %s: the database's signature: %v", errSigSlowPath, filepath.Base(j.file), err)
				}
			} else if sig, err = os.ReadFile(j.file + ".sig"); err != nil {
				if errors.Is(err, os.ErrNotExist) && j.level&alpm.SigPackageOptional != 0 {
					finished()
					return nil // unsigned, and allowed to be (libalpm checks its checksum)
				}
				return fmt.Errorf("%w: %s: %v", errSigSlowPath, filepath.Base(j.file), err)
			}
			if err := c.check(j.file, sig, j.level, j.sha256); err != nil {
				return err
			}
			if j.signed != nil {
				*j.signed = true
			}
			finished()
			return nil
		})
	}
	return g.Wait()
}

// checkSignatures checks the signatures of pkgs, now in the cache, when
// the session is sigPaczfs (see above); otherwise libalpm will. It emits
// EventCheck ("checking package signatures") as it goes, and returns the
// packages whose signature it checked.
func (s *session) checkSignatures(pkgs []alpm.Package) ([]alpm.Package, error) {
	if s.pkgLevels == nil {
		return nil, nil
	}
	var jobs []sigJob
	signed := make([]bool, len(pkgs))
	for i, p := range pkgs {
		level, ok := s.pkgLevels[p.Repo]
		if !ok {
			return nil, fmt.Errorf("%w: %s comes from %q, a repository without a signature level here", errSigSlowPath, p.Filename, p.Repo)
		}
		if level&alpm.SigPackage == 0 {
			continue
		}
		file := ""
		for _, d := range s.cache { // libalpm takes the first cache that has it
			if _, err := os.Stat(filepath.Join(d, p.Filename)); err == nil {
				file = filepath.Join(d, p.Filename)
				break
			}
		}
		if file == "" {
			return nil, fmt.Errorf("%w: %s is not in the cache", errSigSlowPath, p.Filename)
		}
		jobs = append(jobs, sigJob{file: file, b64: p.Base64Sig, level: level, sha256: p.SHA256, signed: &signed[i]})
	}
	if len(jobs) == 0 {
		return nil, nil
	}
	const phase = "checking package signatures"
	s.in.emit(Event{Kind: EventCheck, Message: phase, Count: len(jobs)})
	c, err := loadSigChecker(s.ctx, s.in.run, s.gpgdir)
	if err != nil {
		if s.ctx.Err() != nil {
			return nil, fmt.Errorf("check package signatures: %w", s.ctx.Err())
		}
		return nil, fmt.Errorf("%w: %w", errSigSlowPath, err)
	}
	err = c.checkAll(s.ctx, jobs, func(n int) {
		s.in.emit(Event{Kind: EventCheck, Message: phase, Current: n, Count: len(jobs), Percent: n * 100 / len(jobs)})
	})
	if err != nil {
		if !errors.Is(err, errSigSlowPath) {
			err = fmt.Errorf("check package signatures: %w", err)
		}
		return nil, err
	}
	var out []alpm.Package
	for i, p := range pkgs {
		if signed[i] {
			out = append(out, p)
		}
	}
	return out, nil
}

// recordSignatures writes into the local database what libalpm would
// have recorded had it checked the signatures of pkgs, now installed:
// under %VALIDATION% in each one's desc, "sha256" and "pgp" ("pgp" alone
// for a signature the sync database carried, whose file libalpm does not
// checksum), which pacman -Qi shows as "Validated By". libalpm, given no
// package signature level, wrote "sha256" alone.
func recordSignatures(dbpath string, pkgs []alpm.Package) error {
	for _, p := range pkgs {
		desc := filepath.Join(dbpath, "local", p.Name+"-"+p.Version, "desc")
		data, err := os.ReadFile(desc)
		if err != nil {
			return fmt.Errorf("record the signature check of %s: %w", p.Name, err)
		}
		want := []string{"sha256", "pgp"}
		if p.Base64Sig != "" {
			want = []string{"pgp"}
		}
		out, ok := setValidation(string(data), want)
		if !ok {
			continue
		}
		if err := fsx.WriteFile(desc, []byte(out), 0o644); err != nil {
			return fmt.Errorf("record the signature check of %s: %w", p.Name, err)
		}
	}
	return nil
}

// setValidation replaces the methods of the %VALIDATION% section of a
// local database desc file with want, when that section holds "sha256"
// alone (what libalpm writes for a package it checked by checksum only).
// Otherwise it reports false and changes nothing.
func setValidation(desc string, want []string) (string, bool) {
	lines := strings.Split(desc, "\n")
	for i, l := range lines {
		if l != "%VALIDATION%" {
			continue
		}
		if i+2 >= len(lines) || lines[i+1] != "sha256" || lines[i+2] != "" {
			return desc, false
		}
		out := append(append(append([]string{}, lines[:i+1]...), want...), lines[i+2:]...)
		return strings.Join(out, "\n"), true
	}
	return desc, false
}

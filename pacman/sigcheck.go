package pacman

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"golang.org/x/sync/errgroup"

	"github.com/paczfs/paczfs/hooks"
	"github.com/paczfs/paczfs/internal/alpm"
	"github.com/paczfs/paczfs/internal/chroot"
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
// go-crypto's. When the packages pass, libalpm still checks each one's
// SHA-256 from the sync database, as it does for an unsigned package.

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
				out[strings.ToUpper(f[9])] = cur
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

// check verifies file against its detached signature sig at level. It
// returns nil when libalpm would accept it, an error wrapping
// errSigSlowPath saying why not otherwise.
func (c *sigChecker) check(file string, sig []byte, level int) error {
	slow := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s: %s", errSigSlowPath, filepath.Base(file), fmt.Sprintf(format, a...))
	}
	// One signature packet, binary: gpg would check every signature in
	// the file, go-crypto the first whose key it has.
	pr := packet.NewReader(bytes.NewReader(sig))
	var sp *packet.Signature
	for n := 0; ; n++ {
		p, err := pr.Next()
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
	f, err := os.Open(file)
	if err != nil {
		return slow("%v", err)
	}
	defer f.Close()
	vs, signer, err := openpgp.VerifyDetachedSignature(c.keys, f, bytes.NewReader(sig), nil)
	if err != nil {
		return slow("%v", err)
	}
	if vs.IssuerKeyId == nil {
		return slow("signature names no key")
	}
	var fpr []byte
	if signer.PrimaryKey.KeyId == *vs.IssuerKeyId {
		fpr = signer.PrimaryKey.Fingerprint
	}
	for _, sk := range signer.Subkeys {
		if sk.PublicKey.KeyId == *vs.IssuerKeyId {
			fpr = sk.PublicKey.Fingerprint
		}
	}
	if fpr == nil {
		return slow("key %X not found", *vs.IssuerKeyId)
	}
	v, ok := c.validity[strings.ToUpper(hex.EncodeToString(fpr))]
	if !ok {
		return slow("gpg does not list key %X", fpr)
	}
	if v.disabled || !trusted(v.own, level) || !trusted(v.primary, level) {
		return slow("key %X has validity %q (primary %q) in the keyring", fpr, v.own, v.primary)
	}
	return nil
}

// sigJob is one package to check.
type sigJob struct {
	file  string // the package file in a cache directory
	b64   string // the sync database's signature, when it has one
	level int    // the package's signature level (its repository's)
}

// checkAll checks jobs on every CPU. It returns nil when all pass, an
// error wrapping errSigSlowPath when any does not, or ctx's error.
// done counts the packages checked, for progress.
func (c *sigChecker) checkAll(ctx context.Context, jobs []sigJob, done func(n int)) error {
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(runtime.GOMAXPROCS(0))
	var n atomic.Int64
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
					done(int(n.Add(1)))
					return nil // unsigned, and allowed to be
				}
				return fmt.Errorf("%w: %s: %v", errSigSlowPath, filepath.Base(j.file), err)
			}
			if err := c.check(j.file, sig, j.level); err != nil {
				return err
			}
			done(int(n.Add(1)))
			return nil
		})
	}
	return g.Wait()
}

// checkSignatures checks the signatures of pkgs, now in the cache, when
// the session is sigPaczfs (see above); otherwise libalpm will. It emits
// EventCheck ("checking package signatures") as it goes.
func (s *session) checkSignatures(pkgs []alpm.Package) error {
	if s.pkgLevels == nil {
		return nil
	}
	var jobs []sigJob
	for _, p := range pkgs {
		level := s.pkgLevels[p.Repo]
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
			return fmt.Errorf("%w: %s is not in the cache", errSigSlowPath, p.Filename)
		}
		jobs = append(jobs, sigJob{file: file, b64: p.Base64Sig, level: level})
	}
	if len(jobs) == 0 {
		return nil
	}
	const phase = "checking package signatures"
	s.in.emit(Event{Kind: EventCheck, Message: phase, Count: len(jobs)})
	c, err := loadSigChecker(s.ctx, s.in.run, s.gpgdir)
	if err != nil {
		if s.ctx.Err() != nil {
			return fmt.Errorf("check package signatures: %w", s.ctx.Err())
		}
		return fmt.Errorf("%w: %w", errSigSlowPath, err)
	}
	err = c.checkAll(s.ctx, jobs, func(n int) {
		s.in.emit(Event{Kind: EventCheck, Message: phase, Current: n, Count: len(jobs), Percent: n * 100 / len(jobs)})
	})
	if err != nil && !errors.Is(err, errSigSlowPath) {
		return fmt.Errorf("check package signatures: %w", err)
	}
	return err
}

package pacman

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/ProtonMail/go-crypto/openpgp"
)

// ErrKeyFile: a trusted key file that is missing or holds no OpenPGP
// public key.
var ErrKeyFile = errors.New("not an OpenPGP public key file")

// CheckFiles checks what the configuration names on the build host,
// before a build writes anything: the keyring directory exists, and every
// trusted key file exists and parses as OpenPGP public keys (armored or
// binary) with no secret key material. It returns the fingerprints of
// each file's keys, by file, for a dry run to show.
func (c Config) CheckFiles() (map[string][]string, error) {
	var errs []error
	if c.KeyringDir != "" {
		if fi, err := os.Stat(c.KeyringDir); err != nil || !fi.IsDir() {
			errs = append(errs, fmt.Errorf("keyring_dir %s: not a directory (%v)", c.KeyringDir, err))
		}
	}
	fprs := map[string][]string{}
	for i, k := range c.TrustedKeys {
		if k.File == "" {
			continue
		}
		got, err := KeyFileFingerprints(k.File)
		if err != nil {
			errs = append(errs, fmt.Errorf("trusted_keys[%d].file: %w", i, err))
			continue
		}
		fprs[k.File] = got
	}
	return fprs, errors.Join(errs...)
}

// KeyFileFingerprints reads an OpenPGP public key file (armored or
// binary) and returns its primary keys' fingerprints, upper-case hex.
func KeyFileFingerprints(path string) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKeyFile, err)
	}
	var ents openpgp.EntityList
	if bytes.Contains(data, []byte("-----BEGIN PGP")) {
		ents, err = openpgp.ReadArmoredKeyRing(bytes.NewReader(data))
	} else {
		ents, err = openpgp.ReadKeyRing(bytes.NewReader(data))
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrKeyFile, path, err)
	}
	if len(ents) == 0 {
		return nil, fmt.Errorf("%w: %s holds no key", ErrKeyFile, path)
	}
	var out []string
	for _, e := range ents {
		if e.PrivateKey != nil {
			return nil, fmt.Errorf("%w: %s holds a secret key: give the public key only (gpg --export KEYID)", ErrKeyFile, path)
		}
		out = append(out, strings.ToUpper(fmt.Sprintf("%x", e.PrimaryKey.Fingerprint)))
	}
	return out, nil
}

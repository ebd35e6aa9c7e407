package release

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// ErrSignature: the manifest is not signed by a trusted key.
var ErrSignature = errors.New("release signature not valid for the trusted keys")

var keyConfig = &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA, Curve: packet.Curve25519}

// GenerateKey makes a release key pair (Ed25519 OpenPGP): the armored
// secret key, to keep where releases are made, and the armored public
// key, to bake into images.
func GenerateKey(name, email string) (secret, public []byte, err error) {
	if name == "" {
		return nil, nil, errors.New("release key: a name is needed (the key's user id)")
	}
	e, err := openpgp.NewEntity(name, "paczfs release key", email, keyConfig)
	if err != nil {
		return nil, nil, err
	}
	var sb, pb bytes.Buffer
	w, err := armor.Encode(&sb, openpgp.PrivateKeyType, nil)
	if err != nil {
		return nil, nil, err
	}
	if err := e.SerializePrivate(w, nil); err != nil {
		return nil, nil, err
	}
	w.Close()
	w, err = armor.Encode(&pb, openpgp.PublicKeyType, nil)
	if err != nil {
		return nil, nil, err
	}
	if err := e.Serialize(w); err != nil {
		return nil, nil, err
	}
	w.Close()
	return sb.Bytes(), pb.Bytes(), nil
}

// Sign makes the detached armored signature of manifest with an armored
// secret key (from GenerateKey or gpg --export-secret-keys --armor).
func Sign(manifest, secretKey []byte) ([]byte, error) {
	ents, err := openpgp.ReadArmoredKeyRing(bytes.NewReader(secretKey))
	if err != nil {
		return nil, fmt.Errorf("release key: %w", err)
	}
	if len(ents) != 1 || ents[0].PrivateKey == nil {
		return nil, errors.New("release key: want exactly one secret key")
	}
	var sig bytes.Buffer
	if err := openpgp.ArmoredDetachSign(&sig, ents[0], bytes.NewReader(manifest), nil); err != nil {
		return nil, err
	}
	return sig.Bytes(), nil
}

// Verify checks a detached signature of manifest against armored public
// keys and returns the signer's fingerprint (upper-case hex).
func Verify(manifest, signature []byte, trusted ...[]byte) (string, error) {
	var ring openpgp.EntityList
	for i, k := range trusted {
		ents, err := openpgp.ReadArmoredKeyRing(bytes.NewReader(k))
		if err != nil {
			return "", fmt.Errorf("trusted key %d: %w", i, err)
		}
		for _, e := range ents {
			if e.PrivateKey != nil {
				return "", fmt.Errorf("trusted key %d holds a secret key: give public keys only", i)
			}
		}
		ring = append(ring, ents...)
	}
	if len(ring) == 0 {
		return "", fmt.Errorf("%w: no trusted keys", ErrSignature)
	}
	signer, err := openpgp.CheckArmoredDetachedSignature(ring, bytes.NewReader(manifest), bytes.NewReader(signature), nil)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrSignature, err)
	}
	return strings.ToUpper(fmt.Sprintf("%x", signer.PrimaryKey.Fingerprint)), nil
}

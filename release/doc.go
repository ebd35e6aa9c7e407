// Package release makes, signs, verifies and applies paczfs releases:
// a boot environment shipped as a ZFS send stream (full, or incremental
// from the previous release) with a manifest that says what it is.
//
// It is a package of its own: it joins the zfs and bootenv packages with
// cryptography and the rules of an update transaction, which belong to
// neither.
//
// # Manifest and signature
//
// The manifest is JSON (Manifest): version, previous version, the target
// snapshot's guid and the base snapshot's guid for the incremental
// stream, each stream's file name, size and SHA-256, the kernel version,
// the package list with versions and its difference from the previous
// release, and the pool features the stream needs. It is signed with a
// detached, armored OpenPGP signature (manifest.json.sig), the format of
// pacman's own database and package signatures, so a person checks a
// release with a standard tool:
//
//	gpg --import release-key.asc && gpg --verify manifest.json.sig manifest.json
//
// Format 1 may gain fields: a reader ignores the ones it does not know
// (the manifest is signed, so they are the publisher's), and refuses a
// higher format number. A build writes Disk, its disk's GPT GUIDs, which
// a build derived from the release gives its own disk (image.Release).
//
// Keys are Ed25519 OpenPGP keys (GenerateKey); an image trusts the public
// keys baked into it (image.Config.Manage.ReleaseKeys, installed under
// /etc/paczfs/release-keys/) and no other.
//
// # Apply
//
// Apply works in this order, and nothing is created before the checks
// pass: the signature against the trusted keys; the manifest; no
// downgrade (the version must be newer than the booted environment's);
// the stream's size and SHA-256 (the kernel parses what zfs receive
// reads, so it reads only verified bytes: the one open file that was
// hashed, never the file's name opened again); the base snapshot present for
// an incremental stream (else the full one, else a refusal); space on the
// pool. Then zfs receive -u into <pool>/system/<name> (as a clone of the
// base for an incremental stream); a receive that is interrupted leaves
// nothing, ZFS discards it. Its kernel and initramfs go on the ESP and it
// becomes a trial (package bootenv): a boot that fails falls back by
// itself. Running Apply again after a power cut finds the received
// environment by its snapshot's guid and carries on from there, if an
// interrupted run left it (state new, or trying and not yet booted) and it
// is still newer than the booted release: an older signed release
// replayed is a downgrade even when its environment is on the pool, and
// one that booted well or failed its trial is ErrApplied.
//
// With a Source, what it delivers is fetched into the work directory
// (DefaultWorkDir), which must be this user's and writable by no one
// else (ErrWorkDir otherwise): Apply runs as root and receives what is in
// it. A directory applied in place is the caller's to keep so.
//
// # Needs
//
// Write and Apply: root and OpenZFS's zfs and zpool; Apply also the
// ESP mounted and what package bootenv needs. Keys, signing and
// verifying need nothing (pure Go).
package release

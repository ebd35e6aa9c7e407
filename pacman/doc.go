// Package pacman installs Arch Linux packages into a new root through
// libalpm, pacman's library, as pacstrap does but from Go.
//
// Config holds pacman's configuration as data (repositories, signature
// levels, caches, keyrings, trusted keys) and renders the target's own
// /etc/pacman.conf and mirrorlists, which never name build-host paths.
// The build host's pacman.conf, keyring and mirrorlist are never read.
//
// An Installer plans (Plan: names, groups and provisions resolved to the
// full package set with versions and sizes, in a scratch database, before
// anything is written) and installs (Install: databases refreshed,
// packages downloaded in parallel by Go, their signatures checked in
// this process on every CPU, then checked against the database's
// checksums and installed by libalpm, scriptlets and hooks run chrooted
// with /proc, /sys, /dev and /run mounted in a mount namespace of the
// installing thread only).
//
// The signature check is libalpm's, made faster, never loosened: it
// passes a package only when libalpm would at its repository's SigLevel
// (good signatures from keys whose validity in the target's keyring,
// gpg's own, is full or ultimate, or marginal and unknown where the level
// allows them); anything else (an unknown or untrusted key, a bad or
// expired signature) goes to libalpm's own check, one gpg process per
// package, which decides and words the error as pacman does.
// InitKeyring gives the target a keyring of its own. Progress arrives as
// Events; failures as errors wrapping the sentinels below, naming the
// package, file, repository or URL.
//
// Needs root, and cgo with libalpm (13 to 15); without cgo the package
// builds and Plan and Install return ErrUnavailable. InitKeyring runs
// pacman-key, gpg and gpgconf through the hooks.Runner. libalpm keeps
// process-wide state, so transactions in one process run one at a time.
package pacman

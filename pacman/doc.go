// Package pacman installs Arch Linux packages into a new root through
// libalpm, pacman's library, as pacstrap does but from Go.
//
// Config holds pacman's configuration as data (repositories, signature
// levels, caches, keyrings, trusted keys) and renders the target's own
// /etc/pacman.conf and mirrorlists, which never name build-host paths.
// The build host's pacman.conf, keyring and mirrorlist are never read.
package pacman

// Package labrepo builds the lab's signed Arch-format package repository,
// paczfs-lab, from Debian 13 packages, so that libalpm installs can be
// tested offline: the package sets are installed with dpkg into a
// reference root, each .deb becomes a .pkg.tar.zst (.PKGINFO, .MTREE,
// zstd) as makepkg would make it, unowned files become the "filesystem"
// package, the lab kernel's ZFS module becomes zfs-modules-lab, and
// everything is signed with a key made for the lab and indexed by
// repo-add. Built once and cached beside the lab.
//
// Needs root, debootstrap, unshare, dpkg-deb and the built lab (its root
// filesystem provides bsdtar, zstd, gpg and repo-add).
package labrepo

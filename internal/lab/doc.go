// Package lab builds and runs the paczfs lab: a qemu VM with a Debian 13
// kernel, OpenZFS 2.3 (built by DKMS), libalpm 15 and pacman 7, in which
// every test that needs a real kernel runs (ZFS, partitions on loop
// devices, vfat).
//
// Build debootstraps Debian 13 from the host's Debian mirror, provisions it
// in a chroot (assets/image/provision.sh, assets/image/lab-packages.txt)
// and packs it into an ext4 image under DefaultCacheDir()/lab/<recipe>.
// The recipe is a hash of assets/image: changing it rebuilds the lab, and
// the same recipe reuses it.
//
// Run boots a fresh VM from that image with snapshot=on (changes are thrown
// away), the repository shared read-write at /src over 9p, a sparse scratch
// disk at /scratch (TMPDIR), runs a command as root and returns its exit
// status. The kernel console goes to console.log in the run directory; the
// command's output to the caller. qemu uses TCG: KVM hangs on these build
// machines (set PACZFS_LAB_ACCEL=kvm where it works).
//
// BuildTests compiles test binaries inside the lab's root filesystem (a
// chroot with the host's Go toolchain bind-mounted), so that cgo code links
// against the lab's libraries.
//
// Needs root, debootstrap, qemu-system-x86_64, qemu-img, mkfs.ext4 and unshare.
package lab

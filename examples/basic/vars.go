package main

// varSpec describes one configuration variable of the original tool (or
// one paczfs added). The order of variables is the evaluation order: a
// value can use ${NAME} of any variable listed before it.
type varSpec struct {
	Name string
	// List variables hold several values: NAME=( 'a' 'b' ) in a file,
	// whitespace-separated words in the environment.
	List bool
	// Literal values are taken as written: no ${NAME} expansion.
	Literal bool
	// Section, when set, starts a "## section" in the -C output.
	Section string
	Help    string
}

var variables = []varSpec{
	{Name: "PROFILE", Literal: true, Section: "profile and version",
		Help: "the defaults to start from: arch (Arch Linux mirrors and archzfs, mkinitcpio), arch-dracut (the same with dracut), or a file holding an image configuration as JSON (a built image's /etc/paczfs/config.json, or a profile of your own); --profile overrides it"},
	{Name: "CONFIG_VERSION", Help: "the paczfs version the configuration was written for; another version only warns"},
	{Name: "SUFFIX", Help: "used in file names; the default ${EPOCHSECONDS} is the current Unix time, taken once per run"},

	{Name: "BLOCK_DEV", Section: "target(s)", Help: "a whole disk to write instead of an image file, e.g. /dev/sdb"},
	{Name: "IMAGE_FILE", Help: "the raw image to build (default ./paczfs-${SUFFIX}.img); with BLOCK_DEV set, a raw copy of the disk to save as well"},
	{Name: "VDI_FILE", Help: "also write a VirtualBox VDI copy here"},
	{Name: "QCOW_FILE", Help: "also write a qcow (version 1) copy here"},
	{Name: "QCOW2_FILE", Help: "also write a compressed qcow2 copy here"},
	{Name: "VMDK_FILE", Help: "also write a VMware VMDK (stream-optimized) copy here"},
	{Name: "VHDX_FILE", Help: "also write a Hyper-V VHDX copy here"},
	{Name: "QCOW2_COMPRESSION", Help: "zlib (default, read everywhere), zstd (much faster; qemu 5.1+) or none"},

	{Name: "IMAGE_SIZE", Section: "image properties", Help: "size of the sparse image file (K, M, G, T are powers of 1024); unused for BLOCK_DEV"},
	{Name: "SWAP_SIZE", Help: "size of the swap partition; 0 or empty for none"},
	{Name: "ESP_SIZE", Help: "size of the EFI system partition"},

	{Name: "CHROOT_PATH", Section: "misc. filesystem info",
		Help: "work directory holding the build's mount point; empty (the default) = a fresh temporary directory (the original mounted on /mnt)"},
	{Name: "CACHE_PATH",
		Help: "package cache directory on this host; empty = the target's own /var/cache/pacman/pkg, emptied after each layer so the image does not carry the downloads; host:path = mounted read-only with sshfs for the build"},
	{Name: "BUILD_CACHE",
		Help: "a directory of yours (writable by no one else) where builds keep what a later build can reuse: the base and bootable layers (taken back when their resolved packages, pacman settings, layout and, for bootable, HOSTID and initramfs files are unchanged) and each kernel's initramfs (taken back when everything it is made from is unchanged; set HOSTID and GUID_SEED for that); empty = none"},
	{Name: "BUILD_CACHE_MAX",
		Help: "how much BUILD_CACHE may hold: after a build, the entries used least recently go until the rest fits (never one the build used); empty = 10G"},
	{Name: "POOL_NAME", Help: "the pool's name on disk"},
	{Name: "TRUSTED_KEYS", List: true,
		Help: "keys to trust in the target's keyring: key ids, or public key files (a path with a / or ending in .asc, .gpg, .pgp, .key)"},
	{Name: "LOCALES", List: true, Help: "locale.gen lines, e.g. ( 'en_US.UTF-8 UTF-8' ); the first one becomes LANG"},
	{Name: "BASE_PKGS", List: true, Help: "the base layer (snapshot @base)"},
	{Name: "BASE_EXCLUDE_PKGS", List: true, Help: "packages never installed (pacman IgnorePkg)"},
	{Name: "BOOTABLE_PKGS", List: true, Help: "kernel, ZFS and boot tools: the bootable layer"},
	{Name: "WORKSTATION_PKGS", List: true, Help: "the workstation layer and boot environment; empty disables both"},

	{Name: "HOSTNAME", Section: "system", Help: "the target's host name"},
	{Name: "TIMEZONE", Help: "zoneinfo name, e.g. UTC or Europe/Berlin"},
	{Name: "KEYMAP", Help: "console keymap, e.g. us or de-latin1; empty = none"},
	{Name: "ROOT_PASSWORD_HASH", Literal: true,
		Help: "crypt(3) hash for root (openssl passwd -6), taken literally; empty locks the password"},
	{Name: "AUTHORIZED_KEYS_FILE", Help: "file of ssh public keys for root, one per line"},
	{Name: "HOSTID", Help: "the target's hostid, 8 hex digits; empty = a random one"},
	{Name: "GUID_SEED", Help: "derive the disk and partition GUIDs from this text (reproducible tables); empty = random"},
	{Name: "ENCRYPT_DATASETS", List: true,
		Help: "datasets to encrypt with ZFS native encryption (aes-256-gcm, a passphrase), e.g. ( data/home ); each is an encryption root, its children inherit; the boot environments stay unencrypted"},
	{Name: "ENCRYPT_KEY_FILE", Help: "the file holding their passphrase (8 to 512 bytes on one line)"},
	{Name: "ENCRYPT_ROOT", Help: "yes: also encrypt the boot environments (<pool>/system) with the same passphrase, asked for by the initramfs at every boot; no (default)"},
	{Name: "ENCRYPT_PROMPT", Help: "no (default): the passphrase is kept in the image (/etc/zfs/keys/paczfs.key, 0400) and loaded at boot; yes: it stays out of the image and is asked for on the console at every boot"},

	{Name: "BIOS_BOOT", Help: "yes (default): the image also boots under legacy BIOS, from the same ESP and entries (SYSLINUX's gptmbr.bin in the MBR, SYSLINUX on the ESP; a trial there gets one try); no: UEFI only"},

	{Name: "MANAGE", Section: "boot environments",
		Help: "yes (default): the image carries paczfs-bootenv and boot assessment (trial boots, automatic fallback, a snapshot per good boot); no: neither"},
	{Name: "BOOTENV_TOOL", Help: "the device-side tool to install, a static build (CGO_ENABLED=0 go build -o paczfs-bootenv ./examples/bootenv); empty = paczfs-bootenv beside this program, or in PATH"},
	{Name: "KEEP_GOOD", Help: "how many @good- snapshots (one per good boot) each environment keeps; empty = 5"},
	{Name: "RELEASE_KEYS", List: true, Help: "armored public keys (paczfs-release keygen's .asc) whose signed releases the image applies"},

	{Name: "RELEASE_DIR", Section: "release",
		Help: "also write a signed release of the root environment here (new or empty directory): its ZFS streams and manifest, for paczfs-bootenv apply"},
	{Name: "RELEASE_VERSION", Help: "the release's version, e.g. 2 or 2026.12.1 (newer than RELEASE_FROM's)"},
	{Name: "RELEASE_SIGNING_KEY", Help: "the armored secret key that signs the release (paczfs-release keygen's .key)"},
	{Name: "RELEASE_NAME", Help: "the product the release is of; empty = the pool name"},
	{Name: "RELEASE_FROM", Help: "build from this previous release (a directory) instead of from scratch: its full stream becomes the root, the packages are synced to these sets, and the incremental stream from it is written too; needs RELEASE_KEYS to trust it; the image then has the root environment only (no bootable/workstation clones, no miniroot)"},

	{Name: "HOOKS_DIR", Section: "hooks",
		Help: "directory of executable hooks named <before|after|replace>-<stage>[.sh]; a .target. part (after-system.target.sh) runs it chrooted in the target"},
}

// lookupVar returns the spec of a variable, or false.
func lookupVar(name string) (varSpec, bool) {
	for _, v := range variables {
		if v.Name == name {
			return v, true
		}
	}
	return varSpec{}, false
}

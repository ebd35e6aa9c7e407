package labrepo

import (
	"bytes"
	"context"
	"embed"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/paczfs/paczfs/hooks"
	"github.com/paczfs/paczfs/internal/lab"
	"github.com/paczfs/paczfs/pacman"
)

//go:embed assets
var assets embed.FS

// recipeVersion changes when the Go side of the build changes.
const recipeVersion = "labrepo-v3"

// RepoName is the repository's name in pacman.conf.
const RepoName = "paczfs-lab"

// ZFSModules is the package holding the lab kernel's DKMS-built ZFS module.
const ZFSModules = "zfs-modules-lab"

// Package sets, by Debian package name (also the Arch name after
// conversion). Base is a minimal root; Bootable adds the kernel, ZFS, the
// initramfs generator, systemd-boot and ssh; Workstation a few tools.
var (
	Base = []string{
		"filesystem", "base-files", "base-passwd", "bash", "coreutils", "dash", "debianutils", "diffutils",
		"findutils", "grep", "gzip", "hostname", "libc-bin", "login", "mawk", "ncurses-base", "ncurses-bin",
		"sed", "tar", "util-linux", "sysvinit-utils", "passwd", "procps", "iproute2", "kmod", "systemd",
		"systemd-sysv", "systemd-resolved", "udev", "dbus", "locales", "less", "ca-certificates", "netbase",
		// systemd-nspawn and machinectl: Arch's systemd ships them, Debian
		// splits them out; without them the miniroot under
		// /var/lib/machines could not be tried in the lab.
		"systemd-container",
	}
	// dracut and OpenZFS's dracut module (zfs-dracut), as
	// image.ArchDracutProfile has them (dracut conflicts with
	// initramfs-tools).
	// SYSLINUX for legacy BIOS boot: the mtools installer (syslinux,
	// mtools), gptmbr.bin and the modules (syslinux-common), extlinux for
	// the device's boot-once.
	bootableDebian = []string{"zfsutils-linux", "zfs-dracut", "dracut", "systemd-boot-efi",
		"openssh-server", "pacman-package-manager", "syslinux", "syslinux-common", "extlinux", "mtools"}
	Workstation = []string{"vim-tiny", "tmux", "htop", "rsync"}
)

// Bootable returns the bootable set for the lab kernel version.
func Bootable(kver string) []string {
	return append([]string{"linux-image-" + kver, ZFSModules}, bootableDebian...)
}

// Repo is a built lab repository.
type Repo struct {
	Dir         string // the repository files: RepoName.db, packages, signatures
	KeyringDir  string // RepoName.gpg, -trusted, -revoked: for pacman-key --populate
	Fingerprint string // the signing key
	Kernel      string // the kernel version its linux-image and ZFS modules are for
}

// Builder builds the lab repository from Debian 13 packages, once, cached
// beside the lab. It logs and runs commands with the lab's logger and runner.
type Builder struct {
	Lab    *lab.Lab
	Mirror string
	// Progress receives the output of long steps.
	Progress io.Writer
}

// Recipe hashes what decides the repository: the conversion scripts and
// hooks, the package sets, and the lab it takes the kernel from.
func Recipe() string {
	sets := strings.Join(Base, " ") + "\n" + strings.Join(bootableDebian, " ") + "\n" + strings.Join(Workstation, " ")
	return lab.RecipeHash(recipeVersion+"\n"+lab.Recipe()+"\n"+sets, assets, "assets")
}

// Dir is where the repository for the current recipe lives.
func (b *Builder) Dir() string { return filepath.Join(b.Lab.CacheDir, "labrepo", Recipe()) }

func (b *Builder) repo() (*Repo, error) { return Open(b.Dir()) }

// Ensure returns the repository, building it (and the lab) if needed.
func (b *Builder) Ensure(ctx context.Context) (*Repo, error) {
	if _, err := os.Stat(filepath.Join(b.Dir(), "ready")); err == nil {
		return b.repo()
	}
	if err := b.Lab.Ensure(ctx); err != nil {
		return nil, err
	}
	if err := b.Build(ctx); err != nil {
		return nil, err
	}
	return b.repo()
}

func (b *Builder) log() *slog.Logger    { return b.Lab.Logger() }
func (b *Builder) runner() hooks.Runner { return b.Lab.CmdRunner() }

func q(s string) string { return hooks.QuoteArgs([]string{s}) }

// chroot runs script in root with /proc, /sys, /dev and binds mounted in
// a private mount namespace.
func (b *Builder) chroot(ctx context.Context, root string, binds map[string]string, script string, args ...string) error {
	var m strings.Builder
	fmt.Fprintf(&m, "set -e; r=%s; mount -t proc proc \"$r/proc\"; mount --rbind /sys \"$r/sys\"; mount --rbind /dev \"$r/dev\"\n", q(root))
	for host, in := range binds {
		fmt.Fprintf(&m, "mkdir -p \"$r\"%s; mount --bind %s \"$r\"%s\n", q(in), q(host), q(in))
	}
	fmt.Fprintf(&m, "exec chroot \"$r\" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root /bin/sh -c %s sh", q(script))
	for _, a := range args {
		m.WriteString(" " + q(a))
	}
	_, err := b.runner().Run(ctx, hooks.Cmd{Args: []string{"unshare", "--mount", "--propagation", "private", "sh", "-c", m.String()}, Stdout: b.Progress})
	return err
}

// Build makes the repository: a reference Debian root with the package
// sets installed by dpkg, each of its packages converted to an Arch
// package, the files no package owns gathered in "filesystem", the lab
// kernel's ZFS module in ZFSModules, all signed with a key made for the
// lab, and the database made by repo-add. It builds in a temporary
// directory renamed into place.
func (b *Builder) Build(ctx context.Context) (err error) {
	start := time.Now()
	mirror, err := lab.Mirror(b.Mirror)
	if err != nil {
		return err
	}
	kver, err := b.Lab.Kernel()
	if err != nil {
		return err
	}
	final := b.Dir()
	work := final + ".build"
	if err := os.RemoveAll(work); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(work)
		}
	}()
	ref := filepath.Join(work, "refroot")
	for _, d := range []string{ref, filepath.Join(work, "pkgs")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	step := func(name string) {
		b.log().Info("lab repository", "step", name, "elapsed", time.Since(start).Round(time.Second))
	}

	step("debootstrap")
	if _, err := b.runner().Run(ctx, hooks.Cmd{Args: []string{"debootstrap", "--variant=minbase", "trixie", ref, mirror}, Stdout: b.Progress}); err != nil {
		return fmt.Errorf("lab repository: debootstrap: %w", err)
	}
	script, _ := assets.ReadFile("assets/refroot.sh")
	if err := os.WriteFile(filepath.Join(ref, "tmp/refroot.sh"), script, 0o755); err != nil {
		return err
	}
	var debian []string
	for _, p := range append(append(append([]string{}, Base...), Bootable(kver)...), Workstation...) {
		if p != "filesystem" && p != ZFSModules {
			debian = append(debian, p)
		}
	}
	step("install the reference root")
	if err := b.chroot(ctx, ref, nil, "sh /tmp/refroot.sh \"$@\"", append([]string{mirror}, debian...)...); err != nil {
		return fmt.Errorf("lab repository: reference root: %w", err)
	}

	step("convert packages")
	if err := b.prepare(ctx, work, ref, kver); err != nil {
		return err
	}
	mk, _ := assets.ReadFile("assets/mkpkg.sh")
	if err := os.WriteFile(filepath.Join(work, "mkpkg.sh"), mk, 0o755); err != nil {
		return err
	}
	table, _ := assets.ReadFile("assets/maintscript-files")
	if err := os.WriteFile(filepath.Join(work, "maintscript-files"), table, 0o644); err != nil {
		return err
	}
	step("build, sign and index")
	if err := b.chroot(ctx, b.Lab.RootFS(), map[string]string{work: "/work"}, "sh /work/mkpkg.sh \"$@\"", RepoName); err != nil {
		return fmt.Errorf("lab repository: build packages: %w", err)
	}
	if err := os.WriteFile(filepath.Join(work, "kernel"), []byte(kver+"\n"), 0o644); err != nil {
		return err
	}
	// Only the repository, its keys and the signing key are kept.
	for _, d := range []string{"refroot", "pkgs", "debs"} {
		os.RemoveAll(filepath.Join(work, d))
	}
	if err := os.WriteFile(filepath.Join(work, "ready"), []byte(time.Now().UTC().Format(time.RFC3339)+"\n"), 0o644); err != nil {
		return err
	}
	if err := lab.Promote(work, final); err != nil {
		return err
	}
	b.log().Info("lab repository built", "dir", final, "took", time.Since(start).Round(time.Second))
	return nil
}

// prepare writes, for every package, pkgs/NAME/PKGINFO and either the
// .deb to unpack (pkgs/NAME/deb) or a ready root (filesystem, ZFS modules).
func (b *Builder) prepare(ctx context.Context, work, ref, kver string) error {
	listed, err := os.ReadFile(filepath.Join(ref, "tmp/installed.txt"))
	if err != nil {
		return err
	}
	debs, _ := filepath.Glob(filepath.Join(ref, "var/cache/apt/archives/*.deb"))
	controls := map[string]Control{}
	files := map[string]string{}
	for _, d := range debs {
		c, err := ReadDebControl(d)
		if err != nil {
			return err
		}
		controls[c["Package"]] = c
		files[c["Package"]] = d
	}
	available := map[string]bool{"filesystem": true, ZFSModules: true, "zfs-modules": true}
	var names []string
	for _, n := range strings.Fields(string(listed)) {
		c, ok := controls[n]
		if !ok {
			return fmt.Errorf("lab repository: no .deb for installed package %s", n)
		}
		names = append(names, n)
		available[n] = true
		for _, p := range Provides(c) {
			available[p] = true
		}
	}
	var broken []string
	for _, n := range names {
		info, missing, err := FromControl(controls[n], available)
		if err != nil {
			return fmt.Errorf("lab repository: %s: %w", n, err)
		}
		for _, m := range missing {
			broken = append(broken, n+" needs "+m)
		}
		if n == "libc6" { // as Arch's glibc: everything comes after the filesystem
			info.Depends = append([]string{"filesystem"}, info.Depends...)
		}
		dir := filepath.Join(work, "pkgs", n)
		if err := os.MkdirAll(filepath.Join(dir, "root"), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, "PKGINFO"), info.Render(), 0o644); err != nil {
			return err
		}
		// Unpacked by dpkg-deb, which keeps owners and modes.
		if _, err := b.runner().Run(ctx, hooks.Cmd{Args: []string{"dpkg-deb", "-x", files[n], filepath.Join(dir, "root")}}); err != nil {
			return fmt.Errorf("lab repository: unpack %s: %w", n, err)
		}
	}
	if len(broken) > 0 {
		sort.Strings(broken)
		return fmt.Errorf("lab repository: unsatisfiable dependencies: %s", strings.Join(broken, "; "))
	}
	if err := b.filesystem(ctx, work, ref); err != nil {
		return err
	}
	if err := b.brokenPackage(work); err != nil {
		return err
	}
	return b.zfsModules(work, kver)
}

// Broken is a package in the repository whose dependency is in no
// repository: tests check that planning it fails and names the dependency.
const (
	Broken        = "paczfs-test-broken"
	BrokenMissing = "paczfs-test-missing-dependency"
)

func (b *Builder) brokenPackage(work string) error {
	dir := filepath.Join(work, "pkgs", Broken)
	if err := os.MkdirAll(filepath.Join(dir, "root/usr/share/paczfs-test"), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "root/usr/share/paczfs-test/broken"), []byte("never installed\n"), 0o644); err != nil {
		return err
	}
	info := PkgInfo{Name: Broken, Version: "1.0-1", Desc: "A package whose dependency exists nowhere (for tests)", Arch: "any",
		Size: 16, Depends: []string{"bash", BrokenMissing}}
	return os.WriteFile(filepath.Join(dir, "PKGINFO"), info.Render(), 0o644)
}

// filesystem gathers the files no package owns into the "filesystem" package.
func (b *Builder) filesystem(ctx context.Context, work, ref string) error {
	dir := filepath.Join(work, "pkgs", "filesystem")
	root := filepath.Join(dir, "root")
	if err := os.MkdirAll(root, 0o755); err != nil {
		return err
	}
	list := filepath.Join(ref, "tmp/unowned.txt")
	if _, err := b.runner().Run(ctx, hooks.Cmd{Args: []string{"sh", "-c",
		`tar -C "$1" --no-recursion -cf - -T "$2" 2>/dev/null | tar -C "$3" -xpf -`, "sh", ref, list, root}}); err != nil {
		return fmt.Errorf("lab repository: gather unowned files: %w", err)
	}
	hookDir := filepath.Join(root, "usr/share/libalpm/hooks")
	if err := os.MkdirAll(hookDir, 0o755); err != nil {
		return err
	}
	entries, _ := assets.ReadDir("assets/hooks")
	for _, e := range entries {
		data, _ := assets.ReadFile("assets/hooks/" + e.Name())
		if err := os.WriteFile(filepath.Join(hookDir, e.Name()), data, 0o644); err != nil {
			return err
		}
	}
	info := PkgInfo{Name: "filesystem", Version: "2026.11-1", Desc: "Files the Debian maintainer scripts make (users, alternatives, enabled units), and the lab's libalpm hooks",
		Arch: "any", Backup: []string{"etc/passwd", "etc/group", "etc/shadow", "etc/gshadow"}}
	return os.WriteFile(filepath.Join(dir, "PKGINFO"), info.Render(), 0o644)
}

// zfsModules packages the lab kernel's DKMS-built zfs and spl modules.
func (b *Builder) zfsModules(work, kver string) error {
	dir := filepath.Join(work, "pkgs", ZFSModules)
	dst := filepath.Join(dir, "root/usr/lib/modules", kver, "updates/dkms")
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	src := filepath.Join(b.Lab.RootFS(), "lib/modules", kver, "updates/dkms")
	mods, _ := filepath.Glob(filepath.Join(src, "*.ko*"))
	if len(mods) == 0 {
		return fmt.Errorf("lab repository: no ZFS modules in %s", src)
	}
	var size int64
	for _, m := range mods {
		data, err := os.ReadFile(m)
		if err != nil {
			return err
		}
		size += int64(len(data))
		if err := os.WriteFile(filepath.Join(dst, filepath.Base(m)), data, 0o644); err != nil {
			return err
		}
	}
	info := PkgInfo{Name: ZFSModules, Version: strings.NewReplacer("-", "_", "+", "_").Replace(kver) + "-1",
		Desc: "OpenZFS kernel modules for the lab kernel " + kver + " (built by DKMS)", Arch: "x86_64", Size: size,
		Depends: []string{"linux-image-" + kver}, Provides: []string{"zfs-modules"}}
	return os.WriteFile(filepath.Join(dir, "PKGINFO"), bytes.TrimSpace(info.Render()), 0o644)
}

// PacmanConfig is the pacman configuration that installs from this
// repository served at url: signatures required for packages and the
// database, the lab's key populated from KeyringDir.
func (r *Repo) PacmanConfig(url string) pacman.Config {
	return pacman.Config{
		Architecture:      "x86_64",
		Repos:             []pacman.Repo{{Name: RepoName, Servers: []string{url}}},
		SigLevel:          "Required",
		LocalFileSigLevel: "Optional TrustedOnly",
		ParallelDownloads: 5,
		Keyrings:          []string{RepoName},
		KeyringDir:        r.KeyringDir,
	}
}

// Open returns the repository built in dir (a labrepo recipe directory,
// as shared into the lab VM).
func Open(dir string) (*Repo, error) {
	fpr, err := os.ReadFile(filepath.Join(dir, "keys/fingerprint"))
	if err != nil {
		return nil, fmt.Errorf("lab repository in %s: %w", dir, err)
	}
	kver, err := os.ReadFile(filepath.Join(dir, "kernel"))
	if err != nil {
		return nil, fmt.Errorf("lab repository in %s: %w", dir, err)
	}
	return &Repo{Dir: filepath.Join(dir, "repo"), KeyringDir: filepath.Join(dir, "keys"),
		Fingerprint: strings.TrimSpace(string(fpr)), Kernel: strings.TrimSpace(string(kver))}, nil
}

package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/paczfs/paczfs/hooks"
)

// RunOptions describe one lab VM run.
type RunOptions struct {
	// Args is the command to run as root in the VM, from /src.
	Args []string
	// Src is the host directory shared read-write as /src (the repository).
	Src string
	// Stdout receives the command's output (stdout and stderr, as the
	// serial console interleaves them).
	Stdout io.Writer
	// Env is added to the command's environment (KEY=VALUE).
	Env []string
	// Files are copied into the run directory, visible in the VM as /lab/NAME.
	Files map[string]string
	// Memory in MiB (default 4096), CPUs (default 2), scratch disk in GiB
	// mounted at /scratch with TMPDIR under it (default 40, sparse).
	Memory, CPUs, ScratchGiB int
	// Shares are host directories shared read-only into the VM, by name:
	// Shares["labrepo"] appears at /shares/labrepo.
	Shares map[string]string
	// Writable names the shares the guest may write (results for the
	// host); the others are read-only.
	Writable map[string]bool
	// Keep leaves the run directory (console log, exit status) in place.
	Keep bool
	// Timeout bounds the whole VM run (default 30 minutes): a hung guest
	// must not hang the caller (or CI).
	Timeout time.Duration
}

// ExitError is a command in the VM that exited non-zero.
type ExitError struct{ Code int }

func (e *ExitError) Error() string { return fmt.Sprintf("lab command exited with status %d", e.Code) }

// accel picks KVM only when asked: on these build machines a Debian guest
// kernel hangs under KVM (nested PVM), while TCG always works.
func accel() string {
	if a := os.Getenv("PACZFS_LAB_ACCEL"); a != "" {
		return a
	}
	return "tcg"
}

// cpu picks the guest CPU model. Under TCG a plain x86-64 model is faster
// than "max": emulated AVX-512 makes ZFS's load-time benchmarks and
// vectorised code crawl.
func cpu() string {
	if c := os.Getenv("PACZFS_LAB_CPU"); c != "" {
		return c
	}
	if accel() != "tcg" {
		return "host"
	}
	// RDRAND (emulated by TCG) lets the kernel seed its random pool at
	// boot, before the second CPU starts; see the append line below.
	return "qemu64,+rdrand"
}

// scratchTemplate returns an empty ext4 filesystem of size GiB (sparse),
// made once on the host where mkfs is fast; each run writes to a
// copy-on-write overlay of it.
func (l *Lab) scratchTemplate(ctx context.Context, gib int) (string, error) {
	path := filepath.Join(l.CacheDir, fmt.Sprintf("scratch-%dG.ext4", gib))
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	tmp := path + ".tmp"
	_, err := l.runner().Run(ctx, hooks.Cmd{Args: []string{"mkfs.ext4", "-q", "-F", "-L", "scratch",
		"-E", "lazy_itable_init=1,lazy_journal_init=1", tmp, strconv.Itoa(gib) + "G"}})
	if err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("lab run: scratch template: %w", err)
	}
	return path, os.Rename(tmp, path)
}

// Run boots a fresh VM from the lab image (all changes are discarded),
// runs o.Args and returns nil when it exits 0, an *ExitError otherwise,
// or another error when the VM did not get as far as running it.
func (l *Lab) Run(ctx context.Context, o RunOptions) (err error) {
	if !l.Ready() {
		return fmt.Errorf("lab not built for recipe %s: run `go run ./internal/lab/cmd/lab build` (or make lab)", Recipe())
	}
	if len(o.Args) == 0 {
		return errors.New("lab run: no command")
	}
	if o.Memory == 0 {
		o.Memory = 4096
	}
	if o.CPUs == 0 {
		o.CPUs = 2
	}
	if o.ScratchGiB == 0 {
		o.ScratchGiB = 40
	}
	if o.Stdout == nil {
		o.Stdout = os.Stdout
	}
	if o.Timeout == 0 {
		o.Timeout = 30 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	src, err := filepath.Abs(o.Src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(l.CacheDir, "runs"), 0o755); err != nil {
		return err
	}
	dir, err := os.MkdirTemp(filepath.Join(l.CacheDir, "runs"), "run-")
	if err != nil {
		return err
	}
	defer func() {
		if !o.Keep && err == nil {
			os.RemoveAll(dir)
		} else {
			fmt.Fprintf(os.Stderr, "lab: run directory kept: %s\n", dir)
		}
	}()
	initScript, _ := assets.ReadFile("assets/run/init.sh")
	if err := os.WriteFile(filepath.Join(dir, "init.sh"), initScript, 0o755); err != nil {
		return err
	}
	var env strings.Builder
	for _, e := range o.Env {
		k, v, _ := strings.Cut(e, "=")
		fmt.Fprintf(&env, "export %s=%s\n", k, hooks.QuoteArgs([]string{v}))
	}
	if err := os.WriteFile(filepath.Join(dir, "env"), []byte(env.String()), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "cmd.sh"), []byte("exec "+hooks.QuoteArgs(o.Args)+"\n"), 0o755); err != nil {
		return err
	}
	for name, from := range o.Files {
		if err := copyFile(from, filepath.Join(dir, name)); err != nil {
			return err
		}
	}
	var shares strings.Builder
	for tag := range o.Shares {
		mode := "ro"
		if o.Writable[tag] {
			mode = "rw"
		}
		shares.WriteString(tag + " " + mode + "\n")
	}
	if err := os.WriteFile(filepath.Join(dir, "shares"), []byte(shares.String()), 0o644); err != nil {
		return err
	}
	r := l.runner()
	template, err := l.scratchTemplate(ctx, o.ScratchGiB)
	if err != nil {
		return err
	}
	scratch := filepath.Join(dir, "scratch.qcow2")
	if _, err := r.Run(ctx, hooks.Cmd{Args: []string{"qemu-img", "create", "-q", "-f", "qcow2", "-b", template, "-F", "raw", scratch}}); err != nil {
		return fmt.Errorf("lab run: scratch disk: %w", err)
	}
	console := filepath.Join(dir, "console.log")
	args := []string{
		"qemu-system-x86_64", "-accel", accel(), "-cpu", cpu(), "-smp", strconv.Itoa(o.CPUs), "-m", strconv.Itoa(o.Memory),
		"-nodefaults", "-display", "none", "-no-reboot",
		"-serial", "file:" + console,
		"-chardev", "stdio,id=out,signal=off", "-serial", "chardev:out",
		"-kernel", l.kernel(), "-initrd", l.initrd(),
		// random.trust_cpu: the random pool is ready before SMP starts, so
		// nothing (gpg key generation) waits for entropy, and the kernel
		// flips its "random ready" code patch while one CPU runs: flipped
		// later, under TCG with two CPUs, it once crashed the guest in
		// get_random_u64.
		"-append", "console=ttyS0 panic=-1 quiet loglevel=4 random.trust_cpu=on",
		"-drive", "file=" + l.image() + ",format=raw,if=virtio,snapshot=on",
		"-drive", "file=" + scratch + ",format=qcow2,if=virtio,cache=unsafe,discard=unmap",
		"-virtfs", "local,path=" + dir + ",mount_tag=lab,security_model=none,id=lab",
		"-virtfs", "local,path=" + src + ",mount_tag=src,security_model=none,id=src,multidevs=remap",
		"-device", "virtio-rng-pci",
	}
	for tag, host := range o.Shares {
		abs, err := filepath.Abs(host)
		if err != nil {
			return err
		}
		ro := ",readonly=on"
		if o.Writable[tag] {
			ro = ""
		}
		args = append(args, "-virtfs", "local,path="+abs+",mount_tag="+tag+",security_model=none"+ro+",id="+tag)
	}
	start := time.Now()
	var runErr error
	for boot := 1; ; boot++ {
		_, runErr = r.Run(ctx, hooks.Cmd{Args: args, Stdout: o.Stdout, Stdin: eofReader{}})
		if runErr != nil || boot == maxBoots || !diedBeforeCommand(dir, console) {
			break
		}
		l.log().Warn("lab run: the guest kernel died before the command started; booting again", "boot", boot, "console", tail(console))
		if _, err := r.Run(ctx, hooks.Cmd{Args: []string{"qemu-img", "create", "-q", "-f", "qcow2", "-b", template, "-F", "raw", scratch}}); err != nil {
			return fmt.Errorf("lab run: scratch disk: %w", err)
		}
	}
	l.log().Info("lab run", "took", time.Since(start).Round(100*time.Millisecond))
	if runErr != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("lab run: the VM did not finish within %v and was stopped%s", o.Timeout, tail(console))
		}
		return fmt.Errorf("lab run: qemu: %w%s", runErr, tail(console))
	}
	b, rerr := os.ReadFile(filepath.Join(dir, "exit-status"))
	if rerr != nil {
		return fmt.Errorf("lab run: the VM stopped before the command finished (no exit status)%s", tail(console))
	}
	code, cerr := strconv.Atoi(strings.TrimSpace(string(b)))
	if cerr != nil {
		return fmt.Errorf("lab run: bad exit status %q", b)
	}
	if code != 0 {
		return &ExitError{Code: code}
	}
	return nil
}

// maxBoots bounds the boots of one run whose guest kernel dies before the
// command starts.
const maxBoots = 3

// diedBeforeCommand: the guest's kernel panicked before init.sh started
// the command (no started mark in the run directory), as TCG with two
// CPUs sometimes makes it do while the kernel patches its own code early
// in boot (an int3 in sched_clock_cpu, once a fault in get_random_u64).
// Nothing of the command ran, so booting again is safe; once the command
// has started, a failure is the command's and is reported.
func diedBeforeCommand(dir, console string) bool {
	if _, err := os.Stat(filepath.Join(dir, "started")); err == nil {
		return false
	}
	b, err := os.ReadFile(console)
	return err == nil && bytes.Contains(b, []byte("Kernel panic"))
}

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil || len(b) == 0 {
		return ""
	}
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return "\n--- VM console (tail) ---\n" + string(b)
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, st.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// BuildTests compiles the test binaries of pkgs (import paths or ./dirs,
// relative to src) inside the lab's root filesystem, so they link against
// the lab's libraries (libalpm 15), and writes them to outDir as
// <last path element>.test. The host's Go toolchain and module cache are
// bind-mounted in a private mount namespace; nothing is downloaded.
func (l *Lab) BuildTests(ctx context.Context, src, outDir string, tags string, pkgs []string) (map[string]string, error) {
	bins := map[string]string{}
	var script strings.Builder
	for _, p := range pkgs {
		name := filepath.Base(p) + ".test"
		bins[p] = filepath.Join(outDir, name)
		fmt.Fprintf(&script, "go test -c -tags %s -o /out/%s %s\n", q(tags), name, q(p))
	}
	if err := l.buildInLab(ctx, src, outDir, script.String()); err != nil {
		return nil, fmt.Errorf("lab build tests: %w", err)
	}
	return bins, nil
}

// BuildCommand builds the main package pkg (e.g. ./examples/basic) for
// the lab, against its libalpm, and returns the binary's path in outDir.
func (l *Lab) BuildCommand(ctx context.Context, src, outDir, pkg string) (string, error) {
	name := filepath.Base(pkg)
	if err := l.buildInLab(ctx, src, outDir, fmt.Sprintf("go build -o /out/%s %s\n", name, q(pkg))); err != nil {
		return "", fmt.Errorf("lab build %s: %w", pkg, err)
	}
	return filepath.Join(outDir, name), nil
}

// buildInLab runs a go build script in the lab's root filesystem (so cgo
// links against the lab's libalpm 15), with the host's Go toolchain and
// module cache bind-mounted: /src is src, /out is outDir.
func (l *Lab) buildInLab(ctx context.Context, src, outDir, build string) error {
	if !l.Ready() {
		return fmt.Errorf("lab not built: run make lab")
	}
	goroot, modcache, err := goEnv()
	if err != nil {
		return err
	}
	// The module cache must hold every dependency: fill it from the host,
	// where the network is.
	dl := exec.CommandContext(ctx, "go", "mod", "download")
	dl.Dir = src
	if out, err := dl.CombinedOutput(); err != nil {
		return fmt.Errorf("go mod download: %w: %s", err, out)
	}
	gocache := filepath.Join(l.CacheDir, "gocache-lab")
	if err := os.MkdirAll(gocache, 0o755); err != nil {
		return err
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return err
	}
	script := "set -e\ncd /src\n" + build
	absSrc, _ := filepath.Abs(src)
	absOut, _ := filepath.Abs(outDir)
	root := l.rootfs()
	mounts := fmt.Sprintf(`set -e; r=%s
mount -t proc proc "$r/proc"; mount --bind /dev "$r/dev"
mount --bind %s "$r/src"; mount --bind %s "$r/out"
mount --bind -o ro %s "$r/usr/local/go"; mount --bind %s "$r/gomodcache"; mount --bind %s "$r/gocache"
exec chroot "$r" /usr/bin/env -i PATH=/usr/local/go/bin:/usr/bin:/bin HOME=/tmp GOCACHE=/gocache GOMODCACHE=/gomodcache GOPROXY=off GOFLAGS=-buildvcs=false GOTOOLCHAIN=local CGO_ENABLED=1 /bin/sh -c %s`,
		q(root), q(absSrc), q(absOut), q(goroot), q(modcache), q(gocache), q(script))
	_, err = l.runner().Run(ctx, hooks.Cmd{Args: []string{"unshare", "--mount", "--propagation", "private", "sh", "-c", mounts}, Stdout: os.Stderr})
	return err
}

func q(s string) string { return hooks.QuoteArgs([]string{s}) }

// Makepkg runs makepkg in the lab's root filesystem (Debian 13's makepkg
// and pacman 7) on dir, which holds a PKGBUILD and its sources, as an
// unprivileged user (makepkg refuses root), offline: the host's Go
// toolchain and module cache are bind-mounted read-only and GOPROXY is
// off, so a PKGBUILD that downloads anything but Go modules fails. Its
// dependencies are not checked (-d: the lab's pacman database is not
// Arch's). The package files are left in dir.
func (l *Lab) Makepkg(ctx context.Context, dir string, args ...string) error {
	if !l.Ready() {
		return fmt.Errorf("lab not built: run make lab")
	}
	goroot, modcache, err := goEnv()
	if err != nil {
		return err
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	// nobody builds: the directory is its.
	const nobody = "65534"
	if _, err := l.runner().Run(ctx, hooks.Cmd{Args: []string{"chown", "-R", nobody + ":" + nobody, abs}}); err != nil {
		return err
	}
	makepkg := "makepkg -d --noconfirm " + hooks.QuoteArgs(args)
	script := fmt.Sprintf(`set -e; cd /out
exec setpriv --reuid=%[1]s --regid=%[1]s --clear-groups /usr/bin/env -i PATH=/usr/local/go/bin:/usr/bin:/bin HOME=/out/.home \
	GOCACHE=/out/.gocache GOMODCACHE=/gomodcache GOPROXY=off GOTOOLCHAIN=local %s`, nobody, makepkg)
	mounts := fmt.Sprintf(`set -e; r=%s
mount -t proc proc "$r/proc"; mount --bind /dev "$r/dev"; mount -t tmpfs tmpfs "$r/tmp"
mount --bind %s "$r/out"
mount --bind -o ro %s "$r/usr/local/go"; mount --bind -o ro %s "$r/gomodcache"
exec chroot "$r" /bin/sh -c %s`,
		q(l.rootfs()), q(abs), q(goroot), q(modcache), q(script))
	if _, err := l.runner().Run(ctx, hooks.Cmd{Args: []string{"unshare", "--mount", "--propagation", "private", "sh", "-c", mounts}, Stdout: os.Stderr}); err != nil {
		return fmt.Errorf("lab makepkg: %w", err)
	}
	return nil
}

// goEnv returns the host Go toolchain's GOROOT and GOMODCACHE, which the
// lab's builds bind-mount.
func goEnv() (goroot, modcache string, err error) {
	out, err := exec.Command("go", "env", "GOROOT", "GOMODCACHE").Output()
	if err != nil {
		return "", "", fmt.Errorf("go env GOROOT GOMODCACHE: %w", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 2 {
		return "", "", fmt.Errorf("go env GOROOT GOMODCACHE: %q", out)
	}
	return strings.TrimSpace(lines[0]), strings.TrimSpace(lines[1]), nil
}

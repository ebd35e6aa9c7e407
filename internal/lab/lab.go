package lab

import (
	"bufio"
	"context"
	"embed"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/paczfs/paczfs/hooks"
)

//go:embed assets
var assets embed.FS

// recipeVersion changes whenever the build steps in this file change in a
// way that must rebuild existing labs.
const recipeVersion = "lab-v1"

// Lab is the cached VM image and the means to run commands in it.
type Lab struct {
	// CacheDir holds labs and run directories (DefaultCacheDir()).
	CacheDir string
	// Mirror is the Debian archive to build from; empty means the one the
	// host's apt uses.
	Mirror string
	// Log receives progress lines (the default discards).
	Log *slog.Logger
	// Runner runs host commands (the default runs them on the host).
	Runner hooks.Runner
	// Progress, when set, receives the output of long build steps.
	Progress io.Writer
}

// DefaultCacheDir is $PACZFS_CACHE, else $XDG_CACHE_HOME/paczfs, else
// ~/.cache/paczfs. Nothing the lab makes goes into the repository.
func DefaultCacheDir() string {
	if d := os.Getenv("PACZFS_CACHE"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "paczfs")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		home = os.TempDir()
	}
	return filepath.Join(home, ".cache", "paczfs")
}

// Logger returns the lab's logger (one that discards when none is set).
func (l *Lab) Logger() *slog.Logger {
	if l.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l.Log
}

// CmdRunner returns the runner for host commands (the host's by default).
func (l *Lab) CmdRunner() hooks.Runner {
	if l.Runner == nil {
		return &hooks.ExecRunner{Logger: l.Log}
	}
	return l.Runner
}

func (l *Lab) log() *slog.Logger    { return l.Logger() }
func (l *Lab) runner() hooks.Runner { return l.CmdRunner() }

// Recipe is the hash of everything that decides the lab image's content:
// assets/image (provisioning script, package list, boot stub) and the
// recipe version. assets/run is copied into each run and is not hashed. A change
// rebuilds the lab; the same recipe reuses it.
func Recipe() string { return RecipeHash(recipeVersion, assets, "assets/image") }

// Dir is the directory of the lab for the current recipe.
func (l *Lab) Dir() string { return filepath.Join(l.CacheDir, "lab", Recipe()) }

// RootFS is the lab's root filesystem tree on the host (a chroot for
// building against the lab's libraries).
func (l *Lab) RootFS() string { return l.rootfs() }

// Kernel returns the lab kernel's version (the name of its modules directory).
func (l *Lab) Kernel() (string, error) {
	m, err := filepath.Glob(filepath.Join(l.rootfs(), "lib/modules/*"))
	if err != nil || len(m) == 0 {
		return "", fmt.Errorf("lab: no kernel modules in %s: is the lab built?", l.rootfs())
	}
	sort.Strings(m)
	return filepath.Base(m[len(m)-1]), nil
}

// Paths of the built lab.
func (l *Lab) rootfs() string { return filepath.Join(l.Dir(), "rootfs") }
func (l *Lab) image() string  { return filepath.Join(l.Dir(), "lab.img") }
func (l *Lab) kernel() string { return filepath.Join(l.Dir(), "vmlinuz") }
func (l *Lab) initrd() string { return filepath.Join(l.Dir(), "initrd.img") }
func (l *Lab) stamp() string  { return filepath.Join(l.Dir(), "ready") }

// Ready reports whether the lab for the current recipe is built.
func (l *Lab) Ready() bool {
	_, err := os.Stat(l.stamp())
	return err == nil
}

// Ensure builds the lab unless it is already built.
func (l *Lab) Ensure(ctx context.Context) error {
	if l.Ready() {
		return nil
	}
	return l.Build(ctx)
}

// HostMirror returns the Debian archive URL the host's apt uses.
func HostMirror() (string, error) {
	var sources []string
	files, _ := filepath.Glob("/etc/apt/sources.list.d/*.sources")
	for _, f := range files {
		if b, err := os.ReadFile(f); err == nil {
			sources = append(sources, string(b))
		}
	}
	list, _ := os.ReadFile("/etc/apt/sources.list")
	if m := parseMirror(sources, string(list)); m != "" {
		return m, nil
	}
	return "", errors.New("no Debian archive found in the host's apt sources; set PACZFS_DEBIAN_MIRROR")
}

// parseMirror finds the main (not security) archive in deb822 .sources
// texts, then in a one-line sources.list.
func parseMirror(deb822 []string, list string) string {
	for _, text := range deb822 {
		for _, stanza := range strings.Split(text, "\n\n") {
			var uri, suites, comps string
			for _, line := range strings.Split(stanza, "\n") {
				k, v, ok := strings.Cut(line, ":")
				if !ok || strings.HasPrefix(strings.TrimSpace(k), "#") {
					continue
				}
				switch strings.TrimSpace(k) {
				case "URIs":
					if f := strings.Fields(v); len(f) > 0 {
						uri = f[0]
					}
				case "Suites":
					suites = v
				case "Components":
					comps = v
				}
			}
			if uri != "" && strings.Contains(comps, "main") && !strings.Contains(suites, "security") && !strings.Contains(uri, "security") {
				return uri
			}
		}
	}
	s := bufio.NewScanner(strings.NewReader(list))
	for s.Scan() {
		f := strings.Fields(s.Text())
		if len(f) >= 4 && f[0] == "deb" && !strings.Contains(f[1], "security") && !strings.Contains(f[2], "security") {
			return f[1]
		}
	}
	return ""
}

// Build makes the lab from scratch: debootstrap Debian 13, provision it in
// a chroot (kernel, OpenZFS via DKMS, libalpm, tools), pack it into an
// ext4 image. It builds in a temporary directory and renames it into
// place, so an interrupted build leaves no half-made lab.
func (l *Lab) Build(ctx context.Context) (err error) {
	mirror, err := Mirror(l.Mirror)
	if err != nil {
		return err
	}
	final := l.Dir()
	tmp := final + ".build"
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	r := l.runner()
	rootfs := filepath.Join(tmp, "rootfs")
	start := time.Now()
	step := func(name string, args ...string) error {
		l.log().Info("lab build", "step", name, "elapsed", time.Since(start).Round(time.Second))
		_, err := r.Run(ctx, hooks.Cmd{Args: args, Stdout: l.Progress})
		if err != nil {
			return fmt.Errorf("lab build: %s: %w", name, err)
		}
		return nil
	}
	if err := step("debootstrap", "debootstrap", "--variant=minbase", "--include=ca-certificates", "trixie", rootfs, mirror); err != nil {
		return err
	}
	for _, name := range []string{"provision.sh", "lab-packages.txt", "lab-initramfs.sh"} {
		b, _ := assets.ReadFile("assets/image/" + name)
		if err := os.WriteFile(filepath.Join(rootfs, "tmp", name), b, 0o755); err != nil {
			return err
		}
	}
	if err := step("provision", "unshare", "--mount", "--propagation", "private", "sh", "-c",
		`set -e; r=$1; mount -t proc proc "$r/proc"; mount --rbind /sys "$r/sys"; mount --rbind /dev "$r/dev"; exec chroot "$r" /bin/sh /tmp/provision.sh "$2"`,
		"sh", rootfs, mirror); err != nil {
		return err
	}
	boot, _ := assets.ReadFile("assets/image/lab-boot")
	if err := os.WriteFile(filepath.Join(rootfs, "usr/local/sbin/lab-boot"), boot, 0o755); err != nil {
		return err
	}
	// Mount points for building test binaries in the rootfs (see BuildTests).
	for _, d := range []string{"src", "lab", "scratch", "usr/local/go", "gomodcache", "gocache", "out"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			return err
		}
	}
	for _, k := range []struct{ glob, dst string }{{"boot/vmlinuz-*", "vmlinuz"}, {"boot/lab-initrd.img", "initrd.img"}} {
		m, _ := filepath.Glob(filepath.Join(rootfs, k.glob))
		if len(m) == 0 {
			return fmt.Errorf("lab build: no %s in the rootfs", k.glob)
		}
		sort.Strings(m)
		b, err := os.ReadFile(m[len(m)-1])
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(tmp, k.dst), b, 0o644); err != nil {
			return err
		}
	}
	if err := step("pack", "mkfs.ext4", "-q", "-F", "-L", "labroot", "-d", rootfs, filepath.Join(tmp, "lab.img"), "8G"); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(tmp, "ready"), []byte(time.Now().UTC().Format(time.RFC3339)+"\n"), 0o644); err != nil {
		return err
	}
	if err := Promote(tmp, final); err != nil {
		return err
	}
	l.log().Info("lab built", "dir", final, "took", time.Since(start).Round(time.Second))
	return nil
}

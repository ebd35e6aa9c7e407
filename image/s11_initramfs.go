package image

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/paczfs/paczfs/boot"
	"github.com/paczfs/paczfs/hooks"
	"github.com/paczfs/paczfs/internal/fsx"
)

// expand fills a profile's command or path template for kernel kver of
// root: {kver}, {pkgbase} (boot.ExpandPath) and {initrd}.
func expand(root, s, kver, initrd string) (string, error) {
	return boot.ExpandPath(root, strings.ReplaceAll(s, "{initrd}", initrd), kver)
}

// expandAll is expand for each argument of a command.
func expandAll(root string, argv []string, kver, initrd string) ([]string, error) {
	out := make([]string, 0, len(argv))
	for _, a := range argv {
		e, err := expand(root, a, kver, initrd)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// stageInitramfs generates the initramfs while the workstation layer's
// packages download (prefetchWorkstation): the download is the one part
// of a later stage that can run beside the generator without changing
// what it reads.
func stageInitramfs(ctx context.Context, st *build) (err error) {
	wait := st.prefetchWorkstation(ctx)
	ok := false
	defer func() { wait(!ok) }()
	err = generateInitramfs(ctx, st)
	ok = err == nil
	return err
}

func generateInitramfs(ctx context.Context, st *build) error {
	root := st.state.Root
	b := st.cfg.Boot
	kvers, err := boot.KernelVersions(root, b.Kernel)
	if err != nil {
		return err
	}
	if len(kvers) == 0 {
		return fmt.Errorf("no kernel at %s in the target: is the kernel in packages.bootable?", b.Kernel)
	}
	if why := st.initramfsRebuildReason(kvers); why == "" {
		st.b.log.Info("initramfs kept from the previous release: its kernel, packages and configuration are unchanged")
		st.res.InitramfsReused = true
		st.kver = kvers[len(kvers)-1]
		return nil
	} else if st.previous != nil {
		st.b.log.Info("initramfs rebuilt", "why", why)
	}
	if err := st.writeInitramfsFiles(); err != nil {
		return err
	}
	cache, why, err := st.initramfsCache()
	if err != nil {
		st.warn("initramfs cache not used: %v", err)
	} else if why != "" {
		st.b.log.Info("initramfs cache not used", "why", why)
	}
	var common []byte
	if cache != nil {
		pkgs, err := localFiles(root)
		if err == nil {
			common, err = commonKey(keyInput{root: root, pkgs: pkgs, systemFiles: st.cfg.System.Files,
				initramfsFiles: b.InitramfsFiles, hooks: cache.hooks})
		}
		if err != nil {
			st.warn("initramfs cache: not used: its key: %v", err)
			cache = nil
		}
	}
	cached := 0
	for _, k := range kvers {
		initrd, err := expand(root, b.Initrd, k, "")
		if err != nil {
			return fmt.Errorf("boot.initrd: %w", err)
		}
		argv, err := expandAll(root, b.InitramfsCommand, k, initrd)
		if err != nil {
			return fmt.Errorf("boot.initramfs_command: %w", err)
		}
		method := ""
		if len(b.InitramfsUncompressed) > 0 {
			method = initramfsCompression(root, k)
			argv = slices.Concat(argv[:1], b.InitramfsUncompressed, argv[1:])
		}
		var key []byte
		if cache != nil {
			key = initramfsKey(k, initrd, append(slices.Clone(argv), "paczfs-compress="+method), common)
			hit, err := cache.restore(key, root, initrd)
			if err != nil {
				st.warn("initramfs cache: %v (building the image)", err)
			}
			if hit {
				st.usedCacheEntry(cache.entry(key))
				if err := st.checkInitramfs(ctx, k, initrd); err != nil {
					return err
				}
				st.b.log.Info("initramfs taken from the cache", "kernel", k, "entry", filepath.Base(cache.entry(key)))
				cached++
				continue
			}
		}
		if err := st.chroot(ctx, argv...); err != nil {
			return fmt.Errorf("initramfs for %s: %w", k, err)
		}
		if fi, err := os.Stat(filepath.Join(root, initrd)); err != nil || fi.Size() == 0 {
			return fmt.Errorf("initramfs for %s: %s was not written by %v", k, initrd, argv)
		}
		if method != "" {
			if err := compressInitramfs(filepath.Join(root, initrd), method); err != nil {
				return fmt.Errorf("initramfs for %s: %w", k, err)
			}
		}
		if err := st.checkInitramfs(ctx, k, initrd); err != nil {
			return err
		}
		if cache != nil {
			if err := cache.store(key, root, initrd); err != nil {
				st.warn("initramfs cache: not stored: %v", err)
			} else {
				st.usedCacheEntry(cache.entry(key))
			}
		}
	}
	st.res.InitramfsReused = cached == len(kvers)
	st.kver = kvers[len(kvers)-1]
	return nil
}

// ErrInitramfsContent: the initramfs lacks a file boot.initramfs_must
// names.
var ErrInitramfsContent = errors.New("the initramfs lacks a file it must have")

// checkInitramfs requires every path of boot.initramfs_must in initrd:
// it reads the image itself or, with boot.initramfs_list, lists it with
// that command in the target.
func (st *build) checkInitramfs(ctx context.Context, kver, initrd string) error {
	b := st.cfg.Boot
	if len(b.InitramfsMust) == 0 {
		return nil
	}
	if len(b.InitramfsList) == 0 {
		return checkInitramfsFile(st.state.Root, kver, initrd, b.InitramfsMust)
	}
	argv, err := expandAll(st.state.Root, b.InitramfsList, kver, initrd)
	if err != nil {
		return fmt.Errorf("boot.initramfs_list: %w", err)
	}
	out, err := st.b.runner.Run(ctx, hooks.Cmd{Args: chrootArgs(st.state.Root, argv...)})
	if err != nil {
		return fmt.Errorf("initramfs for %s: list its files: %w", kver, err)
	}
	if missing := missingFiles(string(out), b.InitramfsMust); len(missing) > 0 {
		return fmt.Errorf("initramfs for %s: %w: %s (listed by %v; boot.initramfs_files should add them)", kver, ErrInitramfsContent, strings.Join(missing, ", "), argv)
	}
	return nil
}

// checkInitramfsFile reads initrd (in root, never through a link out of
// it) with boot.InitramfsMissing. Listing a dracut image with lsinitrd
// took 50 s of a 280 s initramfs stage in the emulated lab; this stops at
// the last path found.
func checkInitramfsFile(root, kver, initrd string, must []string) error {
	f, err := os.OpenInRoot(root, strings.TrimPrefix(initrd, "/"))
	if err != nil {
		return fmt.Errorf("initramfs for %s: %w", kver, err)
	}
	defer f.Close()
	missing, err := boot.InitramfsMissing(f, must)
	if errors.Is(err, boot.ErrInitramfsFormat) {
		return fmt.Errorf("initramfs for %s: %s: %w (set boot.initramfs_list to the generator's listing command, e.g. lsinitcpio {initrd})", kver, initrd, err)
	} else if err != nil {
		return fmt.Errorf("initramfs for %s: %s: %w", kver, initrd, err)
	}
	if len(missing) > 0 {
		return fmt.Errorf("initramfs for %s: %w: %s (read from %s; boot.initramfs_files should add them)", kver, ErrInitramfsContent, strings.Join(missing, ", "), initrd)
	}
	return nil
}

// missingFiles returns the paths of must that a listing (one path a line,
// with or without a leading ./ or /) does not have.
func missingFiles(listing string, must []string) []string {
	have := map[string]bool{}
	add := func(p string) {
		have[strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(p, "./"), "/"), "/")] = true
	}
	for _, l := range strings.Split(listing, "\n") {
		l = strings.TrimSpace(l)
		// A path per line (lsinitcpio, lsinitramfs), or a long listing
		// whose last field is the path (lsinitrd: cpio -tv's columns,
		// "link -> target" for a symbolic link).
		add(l)
		if i := strings.Index(l, " -> "); i >= 0 {
			l = l[:i]
		}
		if f := strings.Fields(l); len(f) > 1 {
			add(f[len(f)-1])
		}
	}
	var missing []string
	for _, m := range must {
		if !have[strings.Trim(m, "/")] {
			missing = append(missing, m)
		}
	}
	return missing
}

// initramfsCompression is how the build compresses kernel kver's
// initramfs: zstd, unless the kernel's configuration in the target
// (/usr/lib/modules/{kver}/config, /boot/config-{kver}) says it cannot
// unpack zstd, then gzip. Without a configuration file, zstd, as dracut
// assumes too: every distribution kernel paczfs builds for has it.
func initramfsCompression(root, kver string) string {
	for _, p := range []string{"usr/lib/modules/" + kver + "/config", "boot/config-" + kver} {
		data, err := os.ReadFile(filepath.Join(root, p))
		if err != nil {
			continue
		}
		if strings.Contains("\n"+string(data), "\nCONFIG_RD_ZSTD=y") {
			return boot.CompressZstd
		}
		return boot.CompressGzip
	}
	return boot.CompressZstd
}

// compressInitramfs compresses the uncompressed initramfs at path in
// place, keeping its mode (fsx.WriteFile: a temporary file renamed over
// it).
func compressInitramfs(path, method string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	image, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var out bytes.Buffer
	if _, err := boot.CompressInitramfs(&out, image, method); err != nil {
		return fmt.Errorf("compressing %s (%s): %w", path, method, err)
	}
	return fsx.WriteFile(path, out.Bytes(), fi.Mode().Perm())
}

package image

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// kernelVersions finds the kernels installed in root, by the profile's
// kernel path pattern, newest last.
func kernelVersions(root, pattern string) ([]string, error) {
	prefix, suffix, _ := strings.Cut(pattern, "{kver}")
	matches, err := filepath.Glob(filepath.Join(root, prefix+"*"+suffix))
	if err != nil {
		return nil, err
	}
	var kvers []string
	for _, m := range matches {
		rel := "/" + strings.TrimPrefix(m, filepath.Clean(root)+"/")
		k := strings.TrimSuffix(strings.TrimPrefix(rel, prefix), suffix)
		if k != "" && !strings.Contains(k, "/") {
			kvers = append(kvers, k)
		}
	}
	slices.SortFunc(kvers, compareVersions)
	return kvers, nil
}

// compareVersions orders kernel versions numerically where they are
// numbers ("6.12.9" < "6.12.10").
func compareVersions(a, b string) int {
	split := func(s string) []string {
		return strings.FieldsFunc(s, func(r rune) bool { return r == '.' || r == '-' || r == '_' || r == '+' })
	}
	pa, pb := split(a), split(b)
	for i := 0; i < len(pa) && i < len(pb); i++ {
		var na, nb int
		_, ea := fmt.Sscanf(pa[i], "%d", &na)
		_, eb := fmt.Sscanf(pb[i], "%d", &nb)
		if ea == nil && eb == nil && na != nb {
			return na - nb
		}
		if c := strings.Compare(pa[i], pb[i]); (ea != nil || eb != nil) && c != 0 {
			return c
		}
	}
	return len(pa) - len(pb)
}

func expand(s, kver, initrd string) string {
	return strings.NewReplacer("{kver}", kver, "{initrd}", initrd).Replace(s)
}

func stageInitramfs(ctx context.Context, st *build) error {
	root := st.state.Root
	b := st.cfg.Boot
	kvers, err := kernelVersions(root, b.Kernel)
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
	for name, content := range b.InitramfsFiles {
		mode := os.FileMode(0o644)
		if strings.HasPrefix(content, "#!") {
			mode = 0o755
		}
		if err := writeFile(root, strings.TrimPrefix(name, "/"), []byte(content), mode); err != nil {
			return err
		}
	}
	for _, k := range kvers {
		initrd := expand(b.Initrd, k, "")
		var argv []string
		for _, a := range b.InitramfsCommand {
			argv = append(argv, expand(a, k, initrd))
		}
		if err := st.chroot(ctx, argv...); err != nil {
			return fmt.Errorf("initramfs for %s: %w", k, err)
		}
		if fi, err := os.Stat(filepath.Join(root, initrd)); err != nil || fi.Size() == 0 {
			return fmt.Errorf("initramfs for %s: %s was not written by %v", k, initrd, argv)
		}
	}
	st.kver = kvers[len(kvers)-1]
	return nil
}

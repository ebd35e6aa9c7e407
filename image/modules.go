package image

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/paczfs/paczfs/pacman"
)

// ModuleChoice is what the plan chose for a ModulePair.
type ModuleChoice struct {
	Pair ModulePair
	// Kernel is the version of the kernel package the repositories
	// offer; Needs the version the module package depends on exactly
	// ("" when it names none).
	Kernel, Needs string
	// Fallback: Pair.Fallback is installed instead of Pair.Module.
	Fallback bool
	// Why says it in words, for a person.
	Why string
}

// chooseModules decides, for each ModulePair whose module is in the
// bootable set, between the module built for one kernel version and the
// fallback, from what the sync databases say; it returns the choices and
// the bootable set to install.
func chooseModules(pairs []ModulePair, bootable []string, info map[string]pacman.SyncPackage) ([]ModuleChoice, []string) {
	out := slices.Clone(bootable)
	var choices []ModuleChoice
	for _, p := range pairs {
		at := slices.Index(out, p.Module)
		if at < 0 {
			continue
		}
		c := ModuleChoice{Pair: p, Kernel: info[p.Kernel].Version}
		mod, ok := info[p.Module]
		if ok {
			for _, d := range mod.Depends {
				if name, ver, exact := strings.Cut(d, "="); exact && name == p.Kernel {
					c.Needs = ver
				}
			}
		}
		switch {
		case !ok:
			c.Why = fmt.Sprintf("no repository has %s (the plan names it)", p.Module)
		case c.Needs == "":
			c.Why = fmt.Sprintf("%s %s depends on no exact %s version", p.Module, mod.Version, p.Kernel)
		case c.Kernel == "":
			c.Why = fmt.Sprintf("no repository has %s (the plan names it)", p.Kernel)
		case sameVersion(c.Kernel, c.Needs):
			c.Why = fmt.Sprintf("%s %s is built for %s %s, the version %s has", p.Module, mod.Version, p.Kernel, c.Needs, info[p.Kernel].Repo)
		default:
			c.Fallback = true
			c.Why = fmt.Sprintf("%s %s (%s) is built for %s %s, but %s has %s %s: installing %s instead, which builds the module for the kernel installed",
				p.Module, mod.Version, mod.Repo, p.Kernel, c.Needs, info[p.Kernel].Repo, p.Kernel, c.Kernel, strings.Join(p.Fallback, " "))
			var rest []string
			for _, f := range p.Fallback {
				if !slices.Contains(out, f) {
					rest = append(rest, f)
				}
			}
			out = slices.Concat(out[:at], rest, out[at+1:])
		}
		choices = append(choices, c)
	}
	return choices, out
}

// sameVersion is pacman's = for a dependency: a version without a pkgrel
// ("6.12.40") matches any pkgrel of it.
func sameVersion(have, want string) bool {
	if have == want {
		return true
	}
	if !strings.Contains(want, "-") {
		if i := strings.LastIndex(have, "-"); i > 0 {
			return have[:i] == want
		}
	}
	return false
}

// pairModules reads the module pairs' packages from the sync databases
// and makes the choices (st.modules, st.bootable).
func (st *build) pairModules(ctx context.Context) error {
	pairs := st.cfg.Packages.ModulePairs
	var names []string
	for _, p := range pairs {
		if slices.Contains(st.cfg.Packages.Bootable, p.Module) {
			names = append(names, p.Kernel, p.Module)
		}
	}
	if len(names) == 0 {
		return nil
	}
	info, err := st.b.installer.Lookup(ctx, names)
	if err != nil {
		return fmt.Errorf("packages.module_pairs: %w", err)
	}
	st.modules, st.bootable = chooseModules(pairs, st.cfg.Packages.Bootable, info)
	for _, c := range st.modules {
		if c.Fallback {
			st.warn("%s", c.Why)
		} else {
			st.b.log.Info("kernel module", "package", c.Pair.Module, "why", c.Why)
		}
	}
	return nil
}

// bootablePackages is the bootable layer's set as the plan chose it.
func (st *build) bootablePackages() []string {
	if st.bootable != nil {
		return st.bootable
	}
	return st.cfg.Packages.Bootable
}

package image

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/paczfs/paczfs/pacman"
)

// What locale-gen needs for a locale.gen line "NAME CHARSET": localedef
// reads the source /usr/share/i18n/locales/<language_TERRITORY[@modifier]>
// and the charmap /usr/share/i18n/charmaps/<CHARSET>(.gz). Arch's glibc
// and Debian's locales ship both there.
const (
	localeSourceDir = "usr/share/i18n/locales/"
	localeCharmaps  = "usr/share/i18n/charmaps/"
)

// localeNeeds returns the source and charmap paths (relative to the root)
// a locale.gen line needs; ok is false for a line New would refuse.
func localeNeeds(line string) (source, charmap string, ok bool) {
	f := strings.Fields(line)
	if len(f) != 2 {
		return "", "", false
	}
	name, mod, _ := strings.Cut(f[0], "@")
	name, _, _ = strings.Cut(name, ".")
	if mod != "" {
		name += "@" + mod
	}
	return localeSourceDir + name, localeCharmaps + f[1], true
}

// missingLocales lists, per locales[i], what no planned package ships,
// given has (is this path in a package's file list?).
func missingLocales(locales []string, has func(string) bool) problems {
	var p problems
	for i, l := range locales {
		src, cm, ok := localeNeeds(l)
		if !ok {
			continue
		}
		field := fmt.Sprintf("system.locales[%d]", i)
		if !has(src) {
			p.add(field, "use a locale glibc ships (listed in its /usr/share/i18n/SUPPORTED), or add the package that has its source",
				"%q: no planned package has /%s, so locale-gen would fail minutes into the build", l, src)
		}
		if !has(cm) && !has(cm+".gz") {
			p.add(field, "use a charmap glibc ships, e.g. UTF-8",
				"%q: no planned package has /%s(.gz)", l, cm)
		}
	}
	return p
}

// checkLocales checks system.locales against the file lists of the
// planned packages, before anything is written. It reads the files
// database of each repository the plan installs from, in the order the
// configuration lists them, and stops as soon as every locale is found
// (on Arch: core's, about 1 MB, which has glibc). A repository that
// offers no file lists makes the check say so and pass: what is not known
// is not refused.
func (st *build) checkLocales(ctx context.Context, plan *pacman.Plan) error {
	locales := st.cfg.System.Locales
	if len(locales) == 0 || plan == nil || len(plan.Packages) == 0 {
		return nil
	}
	byRepo := map[string][]string{}
	for _, p := range plan.Packages {
		byRepo[p.Repo] = append(byRepo[p.Repo], p.Name)
	}
	paths := map[string]bool{}
	has := func(p string) bool { return paths[p] }
	for _, r := range st.cfg.Pacman.Repos {
		names := byRepo[r.Name]
		if len(names) == 0 {
			continue
		}
		lists, err := st.b.installer.Files(ctx, r.Name, names)
		if errors.Is(err, pacman.ErrNoFileLists) {
			st.warn("system.locales not checked against the packages: repository %s offers no file lists (%v)", r.Name, err)
			return nil
		}
		if err != nil {
			return fmt.Errorf("system.locales: file lists of %s: %w", r.Name, err)
		}
		for _, files := range lists {
			for _, f := range files {
				if strings.HasPrefix(f, localeSourceDir) || strings.HasPrefix(f, localeCharmaps) {
					paths[f] = true
				}
			}
		}
		if len(missingLocales(locales, has)) == 0 {
			return nil
		}
	}
	if p := missingLocales(locales, has); len(p) > 0 {
		return &ConfigError{Problems: slices.Clip(p)}
	}
	return nil
}

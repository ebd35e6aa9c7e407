package alpm

import (
	"fmt"
	"strings"
)

// Signature level bits, as libalpm's alpm_siglevel_t.
const (
	SigPackage            = 1 << 0
	SigPackageOptional    = 1 << 1
	SigPackageMarginalOK  = 1 << 2
	SigPackageUnknownOK   = 1 << 3
	SigDatabase           = 1 << 10
	SigDatabaseOptional   = 1 << 11
	SigDatabaseMarginalOK = 1 << 12
	SigDatabaseUnknownOK  = 1 << 13
	SigUseDefault         = 1 << 30
)

// DefaultSigLevel is pacman's built-in level before pacman.conf applies:
// signatures checked, but optional, for packages and databases.
const DefaultSigLevel = SigPackage | SigPackageOptional | SigDatabase | SigDatabaseOptional

// ParseSigLevel applies a pacman.conf SigLevel value to base, as pacman's
// process_siglevel does: each word sets or clears bits for packages,
// databases, or both (no prefix).
func ParseSigLevel(value string, base int) (int, error) {
	level := base
	for _, w := range strings.Fields(value) {
		pkg, db := true, true
		word := w
		switch {
		case strings.HasPrefix(w, "Package"):
			db, word = false, strings.TrimPrefix(w, "Package")
		case strings.HasPrefix(w, "Database"):
			pkg, word = false, strings.TrimPrefix(w, "Database")
		}
		set := func(on bool, p, d int) {
			if pkg {
				if on {
					level |= p
				} else {
					level &^= p
				}
			}
			if db {
				if on {
					level |= d
				} else {
					level &^= d
				}
			}
		}
		switch word {
		case "Never":
			set(false, SigPackage, SigDatabase)
		case "Optional":
			set(true, SigPackage|SigPackageOptional, SigDatabase|SigDatabaseOptional)
		case "Required":
			set(true, SigPackage, SigDatabase)
			set(false, SigPackageOptional, SigDatabaseOptional)
		case "TrustedOnly":
			set(false, SigPackageMarginalOK|SigPackageUnknownOK, SigDatabaseMarginalOK|SigDatabaseUnknownOK)
		case "TrustAll":
			set(true, SigPackageMarginalOK|SigPackageUnknownOK, SigDatabaseMarginalOK|SigDatabaseUnknownOK)
		default:
			return 0, fmt.Errorf("SigLevel %q: unknown word %q", value, w)
		}
	}
	return level &^ SigUseDefault, nil
}

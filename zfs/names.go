package zfs

import (
	"fmt"
	"strings"
)

// maxNameLen is ZFS_MAX_DATASET_NAME_LEN - 1.
const maxNameLen = 255

func validComponent(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("_-.: ", r)) {
			return false
		}
	}
	return true
}

// ValidatePoolName applies zpool's rules: starts with a letter, then
// letters, digits, _ - . : or space; not a reserved vdev word, not
// c[0-9]*, and no '%' or '/'.
func ValidatePoolName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("empty; use for example zroot")
	case len(name) > maxNameLen:
		return fmt.Errorf("%q is longer than %d characters", name, maxNameLen)
	case !(name[0] >= 'a' && name[0] <= 'z' || name[0] >= 'A' && name[0] <= 'Z'):
		return fmt.Errorf("%q must start with a letter", name)
	case !validComponent(name):
		return fmt.Errorf("%q may contain only letters, digits, _ - . : and space", name)
	}
	for _, w := range []string{"mirror", "raidz", "draid", "spare", "log", "cache", "special", "dedup"} {
		if strings.HasPrefix(name, w) {
			return fmt.Errorf("%q begins with the reserved word %q; choose another name", name, w)
		}
	}
	if len(name) >= 2 && name[0] == 'c' && name[1] >= '0' && name[1] <= '9' {
		return fmt.Errorf("%q looks like a Solaris device name (c[0-9]...); choose another name", name)
	}
	return nil
}

// ValidateDatasetName checks a full dataset name "pool/a/b", with an
// optional "@snapshot" or "#bookmark" part.
func ValidateDatasetName(name string) error {
	if len(name) > maxNameLen {
		return fmt.Errorf("dataset %q is longer than %d characters", name, maxNameLen)
	}
	base, tail := name, ""
	if i := strings.IndexAny(name, "@#"); i >= 0 {
		base, tail = name[:i], name[i+1:]
		if !validComponent(tail) || strings.ContainsAny(tail, "@#") {
			return fmt.Errorf("dataset %q: the part after %c may contain only letters, digits, _ - . : and space", name, name[i])
		}
	}
	parts := strings.Split(base, "/")
	if err := ValidatePoolName(parts[0]); err != nil {
		return fmt.Errorf("dataset %q: pool %w", name, err)
	}
	for _, p := range parts[1:] {
		if !validComponent(p) || p == "." || p == ".." {
			return fmt.Errorf("dataset %q: component %q may contain only letters, digits, _ - . : and space, and must not be empty", name, p)
		}
	}
	return nil
}

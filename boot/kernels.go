package boot

import (
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// KernelVersions lists the versions of the kernels in root whose file
// matches pattern (a profile's Kernel path with {kver}: Arch's
// "/usr/lib/modules/{kver}/vmlinuz", Debian's "/boot/vmlinuz-{kver}"),
// oldest first (CompareVersions). None is an empty list, not an error.
func KernelVersions(root, pattern string) ([]string, error) {
	pre, suf, _ := strings.Cut(pattern, VarKernelVersion)
	// One pattern joined whole: joining the prefix alone would drop its
	// trailing / (/usr/lib/modules/).
	matches, err := filepath.Glob(filepath.Join(root, strings.TrimPrefix(pre+"*"+suf, "/")))
	if err != nil {
		return nil, err
	}
	var vers []string
	for _, m := range matches {
		rel := "/" + strings.TrimPrefix(m, filepath.Clean(root)+"/")
		v := strings.TrimSuffix(strings.TrimPrefix(rel, "/"+strings.TrimPrefix(pre, "/")), suf)
		if v != "" && !strings.Contains(v, "/") {
			vers = append(vers, v)
		}
	}
	slices.SortFunc(vers, CompareVersions)
	return vers, nil
}

// CompareVersions orders versions (kernels, releases) by their runs of
// digits as numbers and the rest byte by byte: 6.9 < 6.12, 2 < 10,
// 6.12.9-arch1 < 6.12.10-1.
func CompareVersions(a, b string) int {
	for a != "" && b != "" {
		da, db := digits(a), digits(b)
		if da > 0 && db > 0 {
			na, _ := strconv.ParseUint(a[:da], 10, 64)
			nb, _ := strconv.ParseUint(b[:db], 10, 64)
			if na != nb {
				if na < nb {
					return -1
				}
				return 1
			}
			a, b = a[da:], b[db:]
			continue
		}
		if a[0] != b[0] {
			if a[0] < b[0] {
				return -1
			}
			return 1
		}
		a, b = a[1:], b[1:]
	}
	return len(a) - len(b)
}

func digits(s string) int {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return i
}

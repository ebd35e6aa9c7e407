package lab

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// RecipeHash hashes a recipe: the version string, then every file under
// root in fsys, by name and content. The first 16 hex digits name a cache
// directory.
func RecipeHash(version string, fsys fs.FS, root string) string {
	h := sha256.New()
	io.WriteString(h, version+"\n")
	var names []string
	fs.WalkDir(fsys, root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			names = append(names, p)
		}
		return nil
	})
	sort.Strings(names)
	for _, n := range names {
		b, _ := fs.ReadFile(fsys, n)
		fmt.Fprintf(h, "%s %d\n", n, len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// Promote moves a finished build directory into place as final and
// removes the other recipes' directories beside it: they are dead weight.
// Builds happen in final+".build", so an interrupted one never looks done.
func Promote(build, final string) error {
	if err := os.RemoveAll(final); err != nil {
		return err
	}
	if err := os.Rename(build, final); err != nil {
		return err
	}
	old, _ := filepath.Glob(filepath.Join(filepath.Dir(final), "*"))
	for _, o := range old {
		if o != final && !strings.HasSuffix(o, ".build") {
			os.RemoveAll(o)
		}
	}
	return nil
}

// Mirror returns the Debian archive to build from: explicit when set,
// else $PACZFS_DEBIAN_MIRROR, else the host's apt mirror.
func Mirror(explicit string) (string, error) {
	if explicit != "" {
		return explicit, nil
	}
	if m := os.Getenv("PACZFS_DEBIAN_MIRROR"); m != "" {
		return m, nil
	}
	return HostMirror()
}

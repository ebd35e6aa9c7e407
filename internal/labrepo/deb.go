package labrepo

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// Control is the control file of a Debian package: the fields paczfs
// turns into an Arch .PKGINFO.
type Control map[string]string

// ParseControl reads RFC 822 style fields; continuation lines are joined.
func ParseControl(text string) Control {
	c := Control{}
	var key string
	s := bufio.NewScanner(strings.NewReader(text))
	s.Buffer(make([]byte, 1<<20), 1<<20)
	for s.Scan() {
		l := s.Text()
		if l == "" {
			continue
		}
		if (l[0] == ' ' || l[0] == '\t') && key != "" {
			c[key] += "\n" + strings.TrimSpace(l)
			continue
		}
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		key = strings.TrimSpace(k)
		c[key] = strings.TrimSpace(v)
	}
	return c
}

// ReadDebControl reads the control file out of a .deb (an ar archive
// holding control.tar.{gz,xz,zst}).
func ReadDebControl(path string) (Control, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := bufio.NewReader(f)
	magic := make([]byte, 8)
	if _, err := io.ReadFull(r, magic); err != nil || string(magic) != "!<arch>\n" {
		return nil, fmt.Errorf("%s: not a Debian package (no ar header)", path)
	}
	hdr := make([]byte, 60)
	for {
		if _, err := io.ReadFull(r, hdr); err != nil {
			return nil, fmt.Errorf("%s: no control member", path)
		}
		name := strings.TrimRight(strings.TrimSpace(string(hdr[0:16])), "/")
		var size int64
		fmt.Sscan(strings.TrimSpace(string(hdr[48:58])), &size)
		body := io.LimitReader(r, size)
		if strings.HasPrefix(name, "control.tar") {
			var tr io.Reader
			switch {
			case strings.HasSuffix(name, ".xz"):
				x, err := xz.NewReader(body)
				if err != nil {
					return nil, err
				}
				tr = x
			case strings.HasSuffix(name, ".zst"):
				z, err := zstd.NewReader(body)
				if err != nil {
					return nil, err
				}
				defer z.Close()
				tr = z
			case strings.HasSuffix(name, ".gz"):
				g, err := gzip.NewReader(body)
				if err != nil {
					return nil, err
				}
				tr = g
			default:
				tr = body
			}
			t := tar.NewReader(tr)
			for {
				h, err := t.Next()
				if err != nil {
					return nil, fmt.Errorf("%s: control.tar has no control file: %w", path, err)
				}
				if strings.TrimPrefix(h.Name, "./") == "control" {
					b, err := io.ReadAll(t)
					if err != nil {
						return nil, err
					}
					return ParseControl(string(b)), nil
				}
			}
		}
		if _, err := io.Copy(io.Discard, body); err != nil {
			return nil, err
		}
		if size%2 == 1 {
			r.ReadByte()
		}
	}
}

// ArchVersion turns a Debian version into an Arch one: the epoch stays,
// the Debian revision's '-' and '~' become '_' (Arch pkgver allows neither
// '-' nor '~'), and pkgrel is 1. "1:2.3-4~deb13u1" -> "1:2.3_4_deb13u1-1".
func ArchVersion(deb string) string {
	epoch := ""
	if i := strings.Index(deb, ":"); i >= 0 {
		epoch, deb = deb[:i+1], deb[i+1:]
	}
	return epoch + strings.NewReplacer("-", "_", "~", "_").Replace(deb) + "-1"
}

// ArchArch maps a Debian architecture to an Arch one.
func ArchArch(deb string) string {
	switch deb {
	case "all":
		return "any"
	case "amd64":
		return "x86_64"
	}
	return deb
}

// depName strips version constraints and architecture qualifiers:
// "libc6 (>= 2.38)" -> "libc6", "python3:any" -> "python3".
func depName(alt string) string {
	alt = strings.TrimSpace(alt)
	if i := strings.IndexAny(alt, " ("); i >= 0 {
		alt = alt[:i]
	}
	if i := strings.Index(alt, ":"); i >= 0 {
		alt = alt[:i]
	}
	return alt
}

// ArchDepends turns Pre-Depends and Depends into Arch depends: for each
// "a | b" the first alternative that available holds (a package or a
// provision in the repository), versions dropped: Debian and Arch order
// versions differently (~, revisions), and the repository holds one
// version of each package anyway. A dependency nothing satisfies is
// reported, so a broken set fails the build instead of the install.
func ArchDepends(c Control, available map[string]bool) (deps []string, missing []string) {
	seen := map[string]bool{}
	for _, field := range []string{"Pre-Depends", "Depends"} {
		for _, clause := range strings.Split(c[field], ",") {
			if strings.TrimSpace(clause) == "" {
				continue
			}
			alts := strings.Split(clause, "|")
			chosen := ""
			for _, a := range alts {
				if n := depName(a); available[n] {
					chosen = n
					break
				}
			}
			if chosen == "" {
				missing = append(missing, strings.TrimSpace(clause))
				continue
			}
			if chosen != c["Package"] && !seen[chosen] {
				seen[chosen] = true
				deps = append(deps, chosen)
			}
		}
	}
	return deps, missing
}

// Provides lists the package's provisions, versions dropped.
func Provides(c Control) []string {
	var out []string
	for _, p := range strings.Split(c["Provides"], ",") {
		if n := depName(p); n != "" {
			out = append(out, n)
		}
	}
	return out
}

// PkgInfo is an Arch package's .PKGINFO.
type PkgInfo struct {
	Name, Version, Desc, Arch, URL string
	Size                           int64 // installed bytes
	Depends, Provides, Backup      []string
}

// Render writes the .PKGINFO text, as makepkg does.
func (p PkgInfo) Render() []byte {
	var b bytes.Buffer
	b.WriteString("# Generated by paczfs labrepo from a Debian package\n")
	fmt.Fprintf(&b, "pkgname = %s\npkgbase = %s\npkgver = %s\n", p.Name, p.Name, p.Version)
	fmt.Fprintf(&b, "pkgdesc = %s\n", strings.ReplaceAll(p.Desc, "\n", " "))
	if p.URL != "" {
		fmt.Fprintf(&b, "url = %s\n", p.URL)
	}
	fmt.Fprintf(&b, "builddate = 0\npackager = paczfs lab <lab@paczfs.invalid>\nsize = %d\narch = %s\n", p.Size, p.Arch)
	b.WriteString("license = custom\n")
	for _, d := range sorted(p.Provides) {
		fmt.Fprintf(&b, "provides = %s\n", d)
	}
	for _, d := range p.Depends {
		fmt.Fprintf(&b, "depend = %s\n", d)
	}
	for _, d := range sorted(p.Backup) {
		fmt.Fprintf(&b, "backup = %s\n", d)
	}
	return b.Bytes()
}

func sorted(s []string) []string {
	out := append([]string(nil), s...)
	sort.Strings(out)
	return out
}

// FromControl builds the .PKGINFO of a converted Debian package.
func FromControl(c Control, available map[string]bool) (PkgInfo, []string, error) {
	if c["Package"] == "" || c["Version"] == "" {
		return PkgInfo{}, nil, errors.New("control file without Package or Version")
	}
	deps, missing := ArchDepends(c, available)
	var size int64
	fmt.Sscan(c["Installed-Size"], &size)
	desc, _, _ := strings.Cut(c["Description"], "\n")
	return PkgInfo{
		Name: c["Package"], Version: ArchVersion(c["Version"]), Desc: desc,
		Arch: ArchArch(c["Architecture"]), URL: c["Homepage"], Size: size * 1024,
		Depends: deps, Provides: Provides(c),
	}, missing, nil
}

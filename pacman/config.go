package pacman

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"unicode"
)

// Repo is one package repository.
type Repo struct {
	// Name is the repository's name: core, extra, archzfs.
	Name string `json:"name"`
	// Servers are URL templates with $repo and $arch, tried in order.
	Servers []string `json:"servers"`
	// SigLevel overrides Config.SigLevel for this repository ("" = inherit),
	// in pacman.conf syntax: "Required DatabaseOptional".
	SigLevel string `json:"sig_level,omitempty"`
	// Mirrorlist, when set, makes the target's pacman.conf read the
	// servers from /etc/pacman.d/<Mirrorlist> instead of listing them.
	Mirrorlist string `json:"mirrorlist,omitempty"`
	// RefreshRetries is how many times a refresh whose download of this
	// repository's database failed (a 404, a 5xx, a network error) is
	// tried again, after waits of 5, 15, 40 and then 60 seconds. 0 fails
	// at once, which is what a wrong URL wants. ArchZFSRepo sets it:
	// archzfs recreates its release on every publish, and its database
	// answers 404 meanwhile.
	RefreshRetries int `json:"refresh_retries,omitempty"`
}

// TrustedKey is a key to import into the target's keyring and locally
// sign, as the original's TRUSTED_KEYS: from a file (armored or binary
// public key) or by id from a keyserver.
type TrustedKey struct {
	ID   string `json:"id,omitempty"`   // fingerprint or long key id
	File string `json:"file,omitempty"` // path to a public key file on the build host
}

// Config is pacman's configuration as data. It says what to install from
// where; where it is installed (the root) is given to the installer.
type Config struct {
	// Architecture of the target (x86_64). Never taken from the build host.
	Architecture string `json:"architecture"`
	// Repos in priority order.
	Repos []Repo `json:"repos"`
	// SigLevel is the default signature level (pacman.conf syntax).
	SigLevel string `json:"sig_level"`
	// LocalFileSigLevel applies to packages installed from files.
	LocalFileSigLevel string `json:"local_file_sig_level"`
	// CacheDirs on the build host where packages are downloaded and reused.
	// Empty means the target's /var/cache/pacman/pkg (image.Builder
	// empties it after each layer, so downloads do not ship in the image).
	CacheDirs []string `json:"cache_dirs,omitempty"`
	// ParallelDownloads is how many packages download at once.
	ParallelDownloads int `json:"parallel_downloads"`
	// IgnorePkgs are never installed or upgraded; NoExtract are path
	// patterns never extracted.
	IgnorePkgs []string `json:"ignore_pkgs,omitempty"`
	NoExtract  []string `json:"no_extract,omitempty"`
	// Keyrings are populated into the target's fresh keyring from
	// KeyringDir (archlinux). Empty KeyringDir means the target's own
	// /usr/share/pacman/keyrings; the build host's is read only when
	// KeyringDir names it.
	Keyrings    []string     `json:"keyrings"`
	KeyringDir  string       `json:"keyring_dir,omitempty"`
	TrustedKeys []TrustedKey `json:"trusted_keys,omitempty"`
	// DownloadUser is pacman 7's download sandbox user, written to the
	// target's pacman.conf when the target has that user.
	DownloadUser string `json:"download_user,omitempty"`
}

// Arch Linux defaults.
const (
	ArchMirror      = "https://geo.mirror.pkgbuild.com/$repo/os/$arch"
	ArchZFSServer   = "https://github.com/archzfs/archzfs/releases/download/experimental"
	ArchZFSKey      = "3A9917BF0DED5C13F69AC68FABEC0A1208037BE9"
	DefaultSig      = "Required DatabaseOptional"
	DefaultLocalSig = "Optional TrustedOnly"
)

// ArchConfig is the default for Arch Linux: core and extra over https
// from the mirrorlist, signatures required, and archzfs when withZFS.
func ArchConfig(withZFS bool) Config {
	c := Config{
		Architecture: "x86_64",
		Repos: []Repo{
			{Name: "core", Servers: []string{ArchMirror}, Mirrorlist: "mirrorlist"},
			{Name: "extra", Servers: []string{ArchMirror}, Mirrorlist: "mirrorlist"},
		},
		SigLevel:          DefaultSig,
		LocalFileSigLevel: DefaultLocalSig,
		ParallelDownloads: 5,
		Keyrings:          []string{"archlinux"},
		// The public key files of the build host's archlinux-keyring
		// package (never the host's keyring itself): the target's keyring
		// package is not installed yet when its keyring is made.
		KeyringDir:   "/usr/share/pacman/keyrings",
		DownloadUser: "alpm",
	}
	if withZFS {
		c.Repos = append(c.Repos, ArchZFSRepo())
		c.TrustedKeys = append(c.TrustedKeys, TrustedKey{ID: ArchZFSKey})
	}
	return c
}

// ArchZFSRepo is the archzfs repository (ZFS modules for Arch kernels).
func ArchZFSRepo() Repo {
	return Repo{Name: "archzfs", Servers: []string{ArchZFSServer}, RefreshRetries: 4}
}

var (
	repoName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]*$`)
	sigWords = map[string]bool{
		"Never": true, "Optional": true, "Required": true, "TrustedOnly": true, "TrustAll": true,
		"PackageNever": true, "PackageOptional": true, "PackageRequired": true, "PackageTrustedOnly": true, "PackageTrustAll": true,
		"DatabaseNever": true, "DatabaseOptional": true, "DatabaseRequired": true, "DatabaseTrustedOnly": true, "DatabaseTrustAll": true,
	}
)

// ValidateSigLevel checks a pacman.conf SigLevel value.
func ValidateSigLevel(s string) error {
	if strings.TrimSpace(s) == "" {
		return errors.New("empty")
	}
	if strings.ContainsFunc(s, isBreak) {
		return fmt.Errorf("%q: words on one line, separated by spaces", s)
	}
	for _, w := range strings.Fields(s) {
		if !sigWords[w] {
			return fmt.Errorf("unknown word %q; use Never, Optional, Required, TrustedOnly, TrustAll, optionally prefixed by Package or Database", w)
		}
	}
	return nil
}

// Clone returns a deep copy: changing the copy's lists leaves c as it is.
func (c Config) Clone() Config {
	c.Repos = slices.Clone(c.Repos)
	for i := range c.Repos {
		c.Repos[i].Servers = slices.Clone(c.Repos[i].Servers)
	}
	c.CacheDirs = slices.Clone(c.CacheDirs)
	c.IgnorePkgs = slices.Clone(c.IgnorePkgs)
	c.NoExtract = slices.Clone(c.NoExtract)
	c.Keyrings = slices.Clone(c.Keyrings)
	c.TrustedKeys = slices.Clone(c.TrustedKeys)
	return c
}

// keyID is a key's fingerprint or long id, as gpg takes it.
var keyID = regexp.MustCompile(`^(0x)?([0-9A-Fa-f]{16}|[0-9A-Fa-f]{40})$`)

// isBreak: a character that would break a configuration line.
func isBreak(r rune) bool { return unicode.IsControl(r) || r == '\u2028' || r == '\u2029' }

func isSpaceOrBreak(r rune) bool { return unicode.IsSpace(r) || isBreak(r) }

// Validate reports every problem, each naming its field.
func (c Config) Validate() error {
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, fmt.Errorf("pacman.%s: %s", field, fmt.Sprintf(format, a...)))
	}
	if c.Architecture == "" {
		bad("architecture", "empty; set x86_64")
	} else if strings.ContainsFunc(c.Architecture, isBreak) {
		bad("architecture", "%q: one line, e.g. x86_64", c.Architecture)
	}
	// Values written into the target's pacman.conf as words of a line:
	// never a line break (it would start a line of its own) or a space.
	for _, list := range []struct {
		field string
		words []string
	}{{"ignore_pkgs", c.IgnorePkgs}, {"no_extract", c.NoExtract}, {"keyrings", c.Keyrings}} {
		for i, w := range list.words {
			if w == "" || strings.ContainsFunc(w, isSpaceOrBreak) {
				bad(fmt.Sprintf("%s[%d]", list.field, i), "%q: one word per entry, no spaces or line breaks", w)
			}
		}
	}
	if c.DownloadUser != "" && strings.ContainsFunc(c.DownloadUser, isSpaceOrBreak) {
		bad("download_user", "%q: a user name", c.DownloadUser)
	}
	if len(c.Repos) == 0 {
		bad("repos", "none; add at least core")
	}
	seen := map[string]bool{}
	for i, r := range c.Repos {
		f := fmt.Sprintf("repos[%d]", i)
		if !repoName.MatchString(r.Name) || r.Name == "options" {
			bad(f+".name", "%q is not a valid repository name", r.Name)
		}
		if seen[r.Name] {
			bad(f+".name", "%q is listed twice", r.Name)
		}
		seen[r.Name] = true
		if len(r.Servers) == 0 {
			bad(f+".servers", "repository %q has no server; add a URL like https://mirror/$repo/os/$arch", r.Name)
		}
		for j, s := range r.Servers {
			u, err := url.Parse(s)
			if err != nil || (u.Scheme != "https" && u.Scheme != "http" && u.Scheme != "file") || (u.Scheme != "file" && u.Host == "") {
				bad(fmt.Sprintf("%s.servers[%d]", f, j), "%q is not an http(s):// or file:// URL", s)
			}
		}
		if r.SigLevel != "" {
			if err := ValidateSigLevel(r.SigLevel); err != nil {
				bad(f+".sig_level", "%v", err)
			}
		}
		if r.Mirrorlist != "" && (strings.ContainsAny(r.Mirrorlist, "/\\") || strings.ContainsFunc(r.Mirrorlist, isSpaceOrBreak) || r.Mirrorlist == "." || r.Mirrorlist == "..") {
			bad(f+".mirrorlist", "%q must be a file name in /etc/pacman.d", r.Mirrorlist)
		}
		if r.RefreshRetries < 0 || r.RefreshRetries > 30 {
			bad(f+".refresh_retries", "%d: want 0 to 30 (each waits up to a minute)", r.RefreshRetries)
		}
	}
	if err := ValidateSigLevel(c.SigLevel); err != nil {
		bad("sig_level", "%v", err)
	}
	if c.LocalFileSigLevel != "" {
		if err := ValidateSigLevel(c.LocalFileSigLevel); err != nil {
			bad("local_file_sig_level", "%v", err)
		}
	}
	if c.ParallelDownloads < 1 || c.ParallelDownloads > 64 {
		bad("parallel_downloads", "%d: use 1 to 64", c.ParallelDownloads)
	}
	for i, k := range c.TrustedKeys {
		if (k.ID == "") == (k.File == "") {
			bad(fmt.Sprintf("trusted_keys[%d]", i), "give exactly one of id or file")
		} else if k.ID != "" && !keyID.MatchString(k.ID) {
			bad(fmt.Sprintf("trusted_keys[%d].id", i), "%q: a fingerprint (40 hex digits) or long key id (16)", k.ID)
		}
	}
	return errors.Join(errs...)
}

// DownloadUserFor decides the DownloadUser line of the target's
// pacman.conf: the configured user when the target's /etc/passwd has it,
// else none, with a note saying why (pacman 7 then downloads as root).
func (c Config) DownloadUserFor(root string) (user, note string) {
	if c.DownloadUser == "" {
		return "", ""
	}
	b, err := os.ReadFile(filepath.Join(root, "etc/passwd"))
	if err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if name, _, ok := strings.Cut(l, ":"); ok && name == c.DownloadUser {
				return c.DownloadUser, ""
			}
		}
	}
	return "", fmt.Sprintf("the target has no user %q: pacman.conf gets no DownloadUser, so pacman 7 downloads without its sandbox user", c.DownloadUser)
}

// ExpandServer fills $repo and $arch in a server template.
func ExpandServer(server, repo, arch string) string {
	return strings.NewReplacer("$repo", repo, "$arch", arch).Replace(server)
}

// RenderConf renders the target's /etc/pacman.conf. It names only paths
// inside the target (its own cache, keyring, mirrorlists), never the build
// host's; downloadUser is written only when the target has that user.
func (c Config) RenderConf(downloadUser string) []byte {
	var b strings.Builder
	b.WriteString("# /etc/pacman.conf written by paczfs. See pacman.conf(5).\n\n[options]\n")
	fmt.Fprintf(&b, "Architecture = %s\n", c.Architecture)
	b.WriteString("HoldPkg = pacman glibc\nCheckSpace\n")
	fmt.Fprintf(&b, "ParallelDownloads = %d\n", c.ParallelDownloads)
	if downloadUser != "" {
		fmt.Fprintf(&b, "DownloadUser = %s\n", downloadUser)
	}
	fmt.Fprintf(&b, "SigLevel = %s\n", c.SigLevel)
	if c.LocalFileSigLevel != "" {
		fmt.Fprintf(&b, "LocalFileSigLevel = %s\n", c.LocalFileSigLevel)
	}
	if len(c.IgnorePkgs) > 0 {
		fmt.Fprintf(&b, "IgnorePkg = %s\n", strings.Join(c.IgnorePkgs, " "))
	}
	for _, n := range c.NoExtract {
		fmt.Fprintf(&b, "NoExtract = %s\n", n)
	}
	for _, r := range c.Repos {
		fmt.Fprintf(&b, "\n[%s]\n", r.Name)
		if r.SigLevel != "" {
			fmt.Fprintf(&b, "SigLevel = %s\n", r.SigLevel)
		}
		if r.Mirrorlist != "" {
			fmt.Fprintf(&b, "Include = /etc/pacman.d/%s\n", r.Mirrorlist)
			continue
		}
		for _, s := range r.Servers {
			fmt.Fprintf(&b, "Server = %s\n", s)
		}
	}
	return []byte(b.String())
}

// RenderMirrorlists renders each mirrorlist file the repositories include,
// by file name.
func (c Config) RenderMirrorlists() map[string][]byte {
	servers := map[string][]string{}
	for _, r := range c.Repos {
		if r.Mirrorlist == "" {
			continue
		}
		for _, s := range r.Servers {
			if !contains(servers[r.Mirrorlist], s) {
				servers[r.Mirrorlist] = append(servers[r.Mirrorlist], s)
			}
		}
	}
	out := map[string][]byte{}
	names := make([]string, 0, len(servers))
	for n := range servers {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		var b strings.Builder
		b.WriteString("# Mirrors written by paczfs, tried in order.\n")
		for _, s := range servers[n] {
			fmt.Fprintf(&b, "Server = %s\n", s)
		}
		out[n] = []byte(b.String())
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

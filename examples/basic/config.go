package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/paczfs/paczfs/disk"
	"github.com/paczfs/paczfs/image"
	"github.com/paczfs/paczfs/pacman"
)

// configVersion is CONFIG_VERSION's default: the version writing it.
var configVersion = "v" + image.Version

// loader gathers the configuration sources. The precedence is the
// original's: the -c file, then the environment, then the profile's
// defaults (--profile beats all three for PROFILE). Unlike the original,
// a value set to empty is empty, not "use the default".
type loader struct {
	File    []assignment                // parsed -c file; a later assignment wins
	Lookup  func(string) (string, bool) // the environment
	Profile string                      // --profile, "" when not given
	Now     time.Time                   // ${EPOCHSECONDS}, taken once
}

// settings are the effective variables: the templates (what -C prints)
// and their expanded values, with the profile they fill in.
type settings struct {
	Profile string
	Base    image.Config // the profile's configuration
	raw     map[string]value
	val     map[string]value
	now     time.Time
}

func (l loader) load() (*settings, error) {
	lookup := l.Lookup
	if lookup == nil {
		lookup = func(string) (string, bool) { return "", false }
	}
	file := map[string]value{}
	for _, a := range l.File {
		file[a.Name] = a.Value
	}
	s := &settings{raw: map[string]value{}, val: map[string]value{}, now: l.Now}
	for _, spec := range variables {
		var v value
		switch t, inEnv := lookup(spec.Name); {
		case spec.Name == "PROFILE" && l.Profile != "":
			v = value{Text: l.Profile, From: "--profile"}
		case file[spec.Name].From != "":
			v = file[spec.Name]
		case inEnv:
			v = value{Text: t, From: "environment"}
		default:
			v = s.defaultValue(spec)
		}
		if err := checkNoCommands(v); err != nil {
			return nil, fmt.Errorf("%s: %w", v.where(spec.Name), err)
		}
		switch {
		case spec.List && !v.List:
			words, err := splitWords(v.Text)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", v.where(spec.Name), err)
			}
			v = value{Items: words, List: true, From: v.From}
		case !spec.List && v.List:
			return nil, fmt.Errorf("%s: takes one value, not a list ( )", v.where(spec.Name))
		}
		s.raw[spec.Name] = v
		e, err := s.expandValue(spec, v)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", v.where(spec.Name), err)
		}
		s.val[spec.Name] = e
		if spec.Name == "PROFILE" {
			base, err := profileConfig(e.Text)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", v.where(spec.Name), err)
			}
			s.Profile, s.Base = base.Profile, base
		}
	}
	return s, nil
}

// profileConfig returns the named profile (arch), or the image.Config in
// a JSON file when name is a path (it holds a "/" or ends in .json): the
// /etc/paczfs/config.json of a built image, or a profile of your own such
// as the lab's.
func profileConfig(name string) (image.Config, error) {
	if !strings.Contains(name, "/") && !strings.HasSuffix(name, ".json") {
		return image.Profile(name)
	}
	data, err := os.ReadFile(name)
	if err != nil {
		return image.Config{}, fmt.Errorf("profile file: %w", err)
	}
	var c image.Config
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return image.Config{}, fmt.Errorf("profile file %s: not an image configuration (JSON): %w", name, err)
	}
	if c.Profile == "" {
		c.Profile = strings.TrimSuffix(filepath.Base(name), ".json")
	}
	return c, nil
}

// outputVars are the conversions, in the order they are written.
var outputVars = []struct {
	name   string
	format image.Format
}{
	{"VDI_FILE", image.VDI}, {"QCOW_FILE", image.QCOW}, {"QCOW2_FILE", image.QCOW2},
	{"VMDK_FILE", image.VMDK}, {"VHDX_FILE", image.VHDX},
}

// defaultValue is a variable's default: the profile's setting, written
// as a template. The variables before it are already known.
func (s *settings) defaultValue(spec varSpec) value {
	c := s.Base
	text := func(t string) value { return value{Text: t, From: "default"} }
	list := func(l []string) value { return value{Items: slices.Clone(l), List: true, From: "default"} }
	blockDev := s.val["BLOCK_DEV"].Text != ""
	switch spec.Name {
	case "PROFILE":
		return text(image.ProfileArch)
	case "CONFIG_VERSION":
		return text(configVersion)
	case "SUFFIX":
		return text("${EPOCHSECONDS}")
	case "BLOCK_DEV":
		return text(c.BlockDevice)
	case "IMAGE_FILE":
		if blockDev {
			return text("")
		}
		return text("./paczfs-${SUFFIX}.img")
	case "IMAGE_SIZE":
		if blockDev {
			return text("")
		}
		return text(c.Size.String())
	case "SWAP_SIZE":
		return text(c.SwapSize.String())
	case "ESP_SIZE":
		return text(c.ESPSize.String())
	case "CHROOT_PATH":
		return text(c.WorkDir)
	case "CACHE_PATH":
		if len(c.Pacman.CacheDirs) > 0 {
			return text(c.Pacman.CacheDirs[0])
		}
		return text("")
	case "BUILD_CACHE":
		return text(c.CacheDir)
	case "BUILD_CACHE_MAX":
		if c.CacheMax == 0 {
			return text("")
		}
		return text(c.CacheMax.String())
	case "POOL_NAME":
		return text(c.PoolName)
	case "TRUSTED_KEYS":
		var keys []string
		for _, k := range c.Pacman.TrustedKeys {
			keys = append(keys, k.ID+k.File)
		}
		return list(keys)
	case "LOCALES":
		return list(c.System.Locales)
	case "BASE_PKGS":
		return list(c.Packages.Base)
	case "BASE_EXCLUDE_PKGS":
		return list(c.Pacman.IgnorePkgs)
	case "BOOTABLE_PKGS":
		return list(c.Packages.Bootable)
	case "WORKSTATION_PKGS":
		return list(c.Packages.Workstation)
	case "HOSTNAME":
		return text(c.System.Hostname)
	case "TIMEZONE":
		return text(c.System.Timezone)
	case "KEYMAP":
		return text(c.System.Keymap)
	case "ROOT_PASSWORD_HASH":
		return text(c.System.RootPasswordHash)
	case "HOSTID":
		return text(c.System.HostID)
	case "GUID_SEED":
		return text(c.GUIDSeed)
	case "ENCRYPT_DATASETS":
		return list(c.Encryption.Datasets)
	case "ENCRYPT_KEY_FILE":
		return text(c.Encryption.KeyFile)
	case "ENCRYPT_PROMPT":
		if c.Encryption.Prompt {
			return text("yes")
		}
		return text("no")
	case "ENCRYPT_ROOT":
		if c.Encryption.Root {
			return text("yes")
		}
		return text("no")
	case "BIOS_BOOT":
		if c.Boot.BIOS == nil {
			return text("no")
		}
		return text("yes")
	case "MANAGE":
		if c.Manage.Off {
			return text("no")
		}
		return text("yes")
	case "BOOTENV_TOOL":
		return text(c.Manage.Tool)
	case "RELEASE_KEYS":
		return list(c.Manage.ReleaseKeys)
	case "RELEASE_DIR":
		return text(c.Release.Dir)
	case "RELEASE_VERSION":
		return text(c.Release.Version)
	case "RELEASE_SIGNING_KEY":
		return text(c.Release.SigningKey)
	case "RELEASE_NAME":
		return text(c.Release.Name)
	case "RELEASE_FROM":
		return text(c.Release.From)
	case "KEEP_GOOD":
		if c.Manage.KeepGood == 0 {
			return text("")
		}
		return text(strconv.Itoa(c.Manage.KeepGood))
	}
	for _, o := range c.Outputs {
		for _, ov := range outputVars {
			if ov.name == spec.Name && o.Format == ov.format {
				return text(o.Path)
			}
		}
	}
	if spec.List {
		return list(nil)
	}
	return text("")
}

func (s *settings) expandValue(spec varSpec, v value) (value, error) {
	out := value{List: v.List, From: v.From, Text: v.Text, Items: slices.Clone(v.Items)}
	if spec.Literal {
		return out, nil
	}
	var err error
	if out.Text, err = s.expand(v.Text); err != nil {
		return value{}, err
	}
	for i, t := range v.Items {
		if out.Items[i], err = s.expand(t); err != nil {
			return value{}, err
		}
	}
	return out, nil
}

// expand replaces ${NAME} with the value of a variable set before this
// one, and ${EPOCHSECONDS} with the Unix time of this run. It is string
// substitution: nothing is run, and no other shell form is understood.
// $NAME without braces is an error, so that it is not left in a file
// name by mistake; any other $ is kept.
func (s *settings) expand(t string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(t); {
		if t[i] != '$' || i+1 == len(t) {
			b.WriteByte(t[i])
			i++
			continue
		}
		rest := t[i+1:]
		switch {
		case rest[0] == '{':
			end := strings.IndexByte(rest, '}')
			if end < 0 {
				return "", fmt.Errorf("%q: ${ is not closed with }", t)
			}
			name := rest[1:end]
			if !isName(name) {
				return "", fmt.Errorf("%q: only ${NAME} is understood, not ${%s}", t, name)
			}
			v, err := s.ref(name)
			if err != nil {
				return "", err
			}
			b.WriteString(v)
			i += end + 2
		case isNameByte(rest[0], true):
			n := 1
			for n < len(rest) && isNameByte(rest[n], false) {
				n++
			}
			return "", fmt.Errorf("%q: write ${%s} with braces", t, rest[:n])
		default:
			b.WriteByte('$')
			i++
		}
	}
	return b.String(), nil
}

func (s *settings) ref(name string) (string, error) {
	if name == "EPOCHSECONDS" {
		return strconv.FormatInt(s.now.Unix(), 10), nil
	}
	if v, ok := s.val[name]; ok {
		if v.List {
			return "", fmt.Errorf("${%s}: %s is a list; only single values can be used", name, name)
		}
		return v.Text, nil
	}
	if _, ok := lookupVar(name); ok {
		return "", fmt.Errorf("${%s}: %s is set after this variable; a value can only use the variables before it (see -C for the order)", name, name)
	}
	return "", fmt.Errorf("${%s}: not a paczfs variable (use one set before this one, or ${EPOCHSECONDS})", name)
}

// str and list return expanded values; list is nil when empty.
func (s *settings) str(name string) string { return s.val[name].Text }

func (s *settings) list(name string) []string {
	if l := s.val[name].Items; len(l) > 0 {
		return slices.Clone(l)
	}
	return nil
}

// from says where a variable's value came from.
func (s *settings) from(name string) string { return s.raw[name].From }

// remoteCache returns CACHE_PATH when it names a directory on another
// host (host:path), which the build mounts with sshfs.
func (s *settings) remoteCache() (string, bool) {
	p := s.str("CACHE_PATH")
	return p, isRemoteCache(p)
}

// versionWarning is set when the configuration was written for another
// paczfs version; like the original, that is not an error.
func (s *settings) versionWarning() string {
	if v := s.str("CONFIG_VERSION"); v != configVersion {
		return fmt.Sprintf("the configuration is for paczfs %s, this is %s (not necessarily a problem)", v, configVersion)
	}
	return ""
}

// config turns the settings into the image configuration. readFile reads
// AUTHORIZED_KEYS_FILE. CACHE_PATH in host:path form is left out: the
// caller mounts it and sets the cache directories.
func (s *settings) config(readFile func(string) ([]byte, error)) (image.Config, error) {
	c := s.Base.Clone()
	var errs []error
	bad := func(name string, err error) { errs = append(errs, fmt.Errorf("%s: %w", s.raw[name].where(name), err)) }

	c.BlockDevice, c.ImageFile, c.Outputs = s.str("BLOCK_DEV"), "", nil
	if img := s.str("IMAGE_FILE"); c.BlockDevice == "" {
		c.ImageFile = img
	} else if img != "" {
		c.Outputs = append(c.Outputs, image.Output{Format: image.Raw, Path: img})
	}
	for _, o := range outputVars {
		if p := s.str(o.name); p != "" {
			out := image.Output{Format: o.format, Path: p}
			if o.format == image.QCOW2 {
				out.Compression = s.str("QCOW2_COMPRESSION")
			}
			c.Outputs = append(c.Outputs, out)
		}
	}
	size := func(name string) disk.Size {
		t := s.str(name)
		if t == "" {
			return 0
		}
		z, err := disk.ParseSize(t)
		if err != nil {
			bad(name, err)
		}
		return z
	}
	c.Size, c.SwapSize, c.ESPSize = size("IMAGE_SIZE"), size("SWAP_SIZE"), size("ESP_SIZE")
	c.WorkDir = s.str("CHROOT_PATH")
	c.Pacman.CacheDirs = nil
	switch p, remote := s.remoteCache(); {
	case p == "" || remote:
	case strings.Contains(p, ":") && !strings.Contains(p, "/"):
		// "host:" or "host:a:b": meant for sshfs, but not host:path.
		bad("CACHE_PATH", fmt.Errorf("%q is neither host:path (sshfs, a path after one colon) nor a local directory", p))
	default:
		abs, err := filepath.Abs(p)
		if err != nil {
			bad("CACHE_PATH", err)
		}
		c.Pacman.CacheDirs = []string{abs}
	}
	c.CacheDir = ""
	if p := s.str("BUILD_CACHE"); p != "" {
		abs, err := filepath.Abs(p)
		if err != nil {
			bad("BUILD_CACHE", err)
		}
		c.CacheDir = abs
	}
	c.CacheMax = size("BUILD_CACHE_MAX")
	c.PoolName = s.str("POOL_NAME")
	c.Pacman.TrustedKeys = trustedKeys(s.list("TRUSTED_KEYS"))
	c.System.Locales = s.list("LOCALES")
	c.Packages.Base = s.list("BASE_PKGS")
	c.Pacman.IgnorePkgs = s.list("BASE_EXCLUDE_PKGS")
	c.Packages.Bootable = s.list("BOOTABLE_PKGS")
	c.Packages.Workstation = s.list("WORKSTATION_PKGS")
	if len(c.Packages.Workstation) == 0 {
		// No workstation layer, so no boot environment cloned from it.
		c.BootEnvironments = slices.DeleteFunc(c.BootEnvironments, func(be string) bool { return be == image.LayerWorkstation })
	}
	c.System.Hostname = s.str("HOSTNAME")
	c.System.Timezone = s.str("TIMEZONE")
	c.System.Keymap = s.str("KEYMAP")
	c.System.RootPasswordHash = s.str("ROOT_PASSWORD_HASH")
	c.System.HostID = s.str("HOSTID")
	c.GUIDSeed = s.str("GUID_SEED")
	abs := func(name string) string {
		v := s.str(name)
		if v == "" {
			return ""
		}
		a, err := filepath.Abs(v)
		if err != nil {
			bad(name, err)
		}
		return a
	}
	c.Encryption = image.Encryption{Datasets: s.list("ENCRYPT_DATASETS"), KeyFile: abs("ENCRYPT_KEY_FILE")}
	for _, yes := range []struct {
		name string
		v    *bool
	}{{"ENCRYPT_PROMPT", &c.Encryption.Prompt}, {"ENCRYPT_ROOT", &c.Encryption.Root}} {
		name, v := yes.name, yes.v
		switch p := s.str(name); p {
		case "", "no":
		case "yes":
			*v = true
		default:
			bad(name, fmt.Errorf("%q: use yes or no", p))
		}
	}
	switch b := s.str("BIOS_BOOT"); b {
	case "", "yes":
		if c.Boot.BIOS == nil {
			bad("BIOS_BOOT", fmt.Errorf("the profile has no boot.bios (how to install SYSLINUX): add it to the profile's JSON, or use no"))
		}
	case "no":
		c.Boot.BIOS = nil
	default:
		bad("BIOS_BOOT", fmt.Errorf("%q: use yes or no", b))
	}
	switch m := s.str("MANAGE"); m {
	case "", "yes":
		c.Manage.Off = false
	case "no":
		c.Manage.Off = true
	default:
		bad("MANAGE", fmt.Errorf("%q: use yes or no", m))
	}
	c.Manage.Tool = s.str("BOOTENV_TOOL")
	if c.Manage.Tool == "" && !c.Manage.Off {
		c.Manage.Tool = findTool()
	}
	c.Manage.ReleaseKeys = nil
	for _, k := range s.list("RELEASE_KEYS") {
		abs, err := filepath.Abs(k)
		if err != nil {
			bad("RELEASE_KEYS", err)
		}
		c.Manage.ReleaseKeys = append(c.Manage.ReleaseKeys, abs)
	}
	c.Release = image.Release{Dir: abs("RELEASE_DIR"), Version: s.str("RELEASE_VERSION"), SigningKey: abs("RELEASE_SIGNING_KEY"),
		Name: s.str("RELEASE_NAME"), From: abs("RELEASE_FROM")}
	if c.Release.From != "" {
		// A release is the root environment alone: a build from one has
		// no layer snapshots to clone (image.Release).
		c.BootEnvironments, c.MinirootClone = nil, ""
	}
	if k := s.str("KEEP_GOOD"); k != "" {
		n, err := strconv.Atoi(k)
		if err != nil || n < 1 {
			bad("KEEP_GOOD", fmt.Errorf("%q: a number, at least 1", k))
		}
		c.Manage.KeepGood = n
	} else {
		c.Manage.KeepGood = 0
	}
	if f := s.str("AUTHORIZED_KEYS_FILE"); f != "" {
		data, err := readFile(f)
		if err != nil {
			bad("AUTHORIZED_KEYS_FILE", err)
		}
		c.System.AuthorizedKeys = nil
		for _, l := range strings.Split(string(data), "\n") {
			if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
				c.System.AuthorizedKeys = append(c.System.AuthorizedKeys, l)
			}
		}
	}
	return c, errors.Join(errs...)
}

// trustedKeys reads TRUSTED_KEYS: a path (with a /, or a key file
// extension) is a public key file, anything else a key id.
func trustedKeys(keys []string) []pacman.TrustedKey {
	var out []pacman.TrustedKey
	for _, k := range keys {
		ext := strings.ToLower(filepath.Ext(k))
		if strings.Contains(k, "/") || ext == ".asc" || ext == ".gpg" || ext == ".pgp" || ext == ".key" {
			out = append(out, pacman.TrustedKey{File: k})
		} else {
			out = append(out, pacman.TrustedKey{ID: k})
		}
	}
	return out
}

const configHeader = `# paczfs configuration (go run ./examples/basic -C). Load it with -c FILE.
# It is parsed, never run by a shell: NAME='value', NAME=( 'a' 'b' ), comments.
# ${NAME} is replaced by a variable set above it, ${EPOCHSECONDS} by the
# current Unix time; $( ) and backticks are errors. The file beats the
# environment, which beats these defaults. An empty value is empty: for
# example WORKSTATION_PKGS=( ) builds no workstation layer.
`

// print writes the effective configuration as a file -c reads back: the
// templates, not their expansion, so a regenerated file makes new names.
func (s *settings) print(w io.Writer) error {
	var b strings.Builder
	b.WriteString(configHeader)
	for _, spec := range variables {
		if spec.Section != "" {
			fmt.Fprintf(&b, "\n## %s\n", spec.Section)
		}
		b.WriteString(wrap(spec.Help, "# ", 78))
		fmt.Fprintf(&b, "%s=%s\n", spec.Name, s.raw[spec.Name])
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// findTool finds the device-side tool: paczfs-bootenv beside this
// program, then in PATH ("" when neither has it; New then says so).
func findTool() string {
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "paczfs-bootenv")
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p
		}
	}
	if p, err := exec.LookPath("paczfs-bootenv"); err == nil {
		if abs, err := filepath.Abs(p); err == nil {
			return abs
		}
	}
	return ""
}

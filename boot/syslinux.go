package boot

import (
	"errors"
	"fmt"
	"path"
	"strings"
)

// Legacy BIOS boot: SYSLINUX on the same FAT ESP that systemd-boot boots
// from, reading the same kernels and initramfs files. The main
// configuration names the default environment and includes one fragment
// per environment, kept in the environment's own directory beside its
// kernel, so that a kernel update on the device rewrites its fragment with
// its files and nothing else.
const (
	// SyslinuxDir holds ldlinux.sys, ldlinux.c32 and the main
	// configuration (syslinux --install --directory /syslinux).
	SyslinuxDir = "/syslinux"
	// SyslinuxConfig is the main configuration, the first file SYSLINUX
	// looks for in its install directory.
	SyslinuxConfig = SyslinuxDir + "/syslinux.cfg"
	// SyslinuxFragment is the file name of an environment's fragment in
	// its ESP directory (Environment.ESPDir).
	SyslinuxFragment = "syslinux.cfg"
)

// Syslinux is SYSLINUX's main configuration for a paczfs ESP.
type Syslinux struct {
	// Default is the label booted when nobody types one: the default
	// environment's name.
	Default string
	// Timeout in seconds to wait at the boot: prompt; 0 boots Default at
	// once (hold Shift or Alt for the prompt), as loader.conf's timeout 0.
	Timeout int
	// Serial also talks on the first serial port (115200 baud), as the
	// kernel's console=ttyS0,115200.
	Serial bool
	// Environments are the labels offered, in order; each includes
	// /env/<name>/syslinux.cfg.
	Environments []string
	// Keep are extra lines kept verbatim before the generated ones (a
	// device's own settings, read back by the device-side tool).
	Keep []string
}

// SyslinuxFragmentPath is the environment's fragment on the ESP.
func SyslinuxFragmentPath(env string) string {
	return path.Join(Environment{Name: env}.ESPDir(), SyslinuxFragment)
}

// validLabel: SYSLINUX labels end at white space; paczfs's environment
// names are letters, digits, . _ - and so always valid.
func validLabel(l string) error {
	if l == "" || strings.IndexFunc(l, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._-", r))
	}) >= 0 {
		return fmt.Errorf("syslinux label %q: use letters, digits, . _ -", l)
	}
	return nil
}

// MarshalText renders /syslinux/syslinux.cfg.
func (s Syslinux) MarshalText() ([]byte, error) {
	var errs []error
	if len(s.Environments) == 0 {
		errs = append(errs, errors.New("syslinux: no environments"))
	}
	found := false
	for _, e := range s.Environments {
		if err := validLabel(e); err != nil {
			errs = append(errs, err)
		}
		found = found || e == s.Default
	}
	if !found {
		errs = append(errs, fmt.Errorf("syslinux: default %q is not one of the environments %v", s.Default, s.Environments))
	}
	if s.Timeout < 0 || s.Timeout > MaxSyslinuxTimeout {
		errs = append(errs, fmt.Errorf("syslinux: timeout %d: use 0 to %d seconds", s.Timeout, MaxSyslinuxTimeout))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	var b strings.Builder
	b.WriteString("# Written by paczfs: legacy BIOS boot of the environments whose entries are in\n# /loader/entries. The DEFAULT and INCLUDE lines are rewritten on every change.\n")
	for _, l := range s.Keep {
		if !generatedLine(l) {
			b.WriteString(l + "\n")
		}
	}
	if s.Keep == nil {
		if s.Serial {
			b.WriteString("SERIAL 0 115200\n")
		}
		if s.Timeout > 0 {
			// Tenths of a second; the boot: prompt lists the labels on Tab.
			fmt.Fprintf(&b, "PROMPT 1\nTIMEOUT %d\n", s.Timeout*10)
		} else {
			b.WriteString("PROMPT 0\n")
		}
	}
	fmt.Fprintf(&b, "DEFAULT %s\n", s.Default)
	for _, e := range s.Environments {
		fmt.Fprintf(&b, "INCLUDE %s\n", SyslinuxFragmentPath(e))
	}
	return []byte(b.String()), nil
}

// MaxSyslinuxTimeout is the longest timeout SYSLINUX takes, in seconds
// (it counts tenths of a second, up to 35996).
const MaxSyslinuxTimeout = 3599

// SyslinuxKeep returns the lines of an existing main configuration that
// MarshalText keeps (everything but DEFAULT, INCLUDE and its own header).
func SyslinuxKeep(text string) []string {
	keep := []string{}
	for _, l := range strings.Split(strings.TrimRight(text, "\n"), "\n") {
		if l != "" && !generatedLine(l) {
			keep = append(keep, l)
		}
	}
	return keep
}

// generatedLine: the lines MarshalText writes itself every time.
func generatedLine(l string) bool {
	f := strings.Fields(l)
	if len(f) > 0 && (strings.EqualFold(f[0], "DEFAULT") || strings.EqualFold(f[0], "INCLUDE")) {
		return true
	}
	return strings.HasPrefix(l, "# Written by paczfs") || strings.HasPrefix(l, "# /loader/entries")
}

// SyslinuxLabel renders an environment's fragment from its loader entry:
// the same kernel, initramfs files and command line.
func SyslinuxLabel(env string, e Entry) ([]byte, error) {
	if err := validLabel(env); err != nil {
		return nil, err
	}
	if err := e.Validate(); err != nil {
		return nil, err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "LABEL %s\n", env)
	fmt.Fprintf(&b, "  MENU LABEL %s\n", strings.ReplaceAll(e.Title, "\n", " "))
	fmt.Fprintf(&b, "  LINUX %s\n", e.Linux)
	if len(e.Initrd) > 0 {
		for _, i := range e.Initrd {
			if strings.Contains(i, ",") {
				return nil, fmt.Errorf("syslinux label %s: initrd %q: SYSLINUX separates initrds with commas; rename it", env, i)
			}
		}
		fmt.Fprintf(&b, "  INITRD %s\n", strings.Join(e.Initrd, ","))
	}
	fmt.Fprintf(&b, "  APPEND %s\n", strings.Join(e.Options, " "))
	return []byte(b.String()), nil
}

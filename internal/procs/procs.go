package procs

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Holders lists the processes that keep anything under prefix busy (their
// root, working directory, an open file, or a mount in their mount
// namespace), so a pool that will not export says why.
func Holders(prefix string) []string {
	var out []string
	for _, p := range Find(prefix) {
		out = append(out, p.String())
	}
	return out
}

// Proc is a process that holds a directory tree, and how.
type Proc struct {
	PID     int
	Cmdline string   // at most 120 bytes
	Why     []string // root, cwd, open FILE, mounts below it in its own namespace
	Root    bool     // its root directory is under the prefix (a chrooted process)
}

func (p Proc) String() string {
	return fmt.Sprintf("pid %d (%s): %s", p.PID, p.Cmdline, strings.Join(p.Why, ", "))
}

// Find returns the processes that hold anything under prefix, as Holders
// describes them.
func Find(prefix string) []Proc {
	if prefix == "" {
		return nil
	}
	prefix = filepath.Clean(prefix)
	// At or below prefix, never beside it: /x/build is not /x/build2.
	under := func(t string) bool { return t == prefix || strings.HasPrefix(t, prefix+"/") }
	var out []Proc
	self := fmt.Sprint(os.Getpid())
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		var why []string
		for _, l := range []string{"root", "cwd"} {
			if t, err := os.Readlink(filepath.Join(p, l)); err == nil && under(t) {
				why = append(why, l)
			}
		}
		fds, _ := filepath.Glob(filepath.Join(p, "fd", "*"))
		for _, fd := range fds {
			if t, err := os.Readlink(fd); err == nil && under(t) {
				why = append(why, "open "+t)
				break
			}
		}
		if filepath.Base(p) != self {
			if mi, err := os.ReadFile(filepath.Join(p, "mountinfo")); err == nil && (strings.Contains(string(mi), " "+prefix+"/") || strings.Contains(string(mi), " "+prefix+" ")) {
				if own, err := os.ReadFile("/proc/self/mountinfo"); err != nil || string(own) != string(mi) {
					why = append(why, "mounts below it in its own namespace")
				}
			}
		}
		if len(why) > 0 {
			cmd, _ := os.ReadFile(filepath.Join(p, "cmdline"))
			c := strings.TrimSpace(strings.ReplaceAll(string(cmd), "\x00", " "))
			if len(c) > 120 {
				c = c[:120]
			}
			var pid int
			fmt.Sscan(filepath.Base(p), &pid)
			out = append(out, Proc{PID: pid, Cmdline: c, Why: why, Root: why[0] == "root"})
		}
	}
	return out
}

// WithArgUnder returns the processes one of whose arguments is a path that
// resolves (through symbolic links) to prefix or below it: a gpg-agent
// started with --homedir in a build's keyring, say, which holds no file
// there that /proc shows.
func WithArgUnder(prefix string) []Proc {
	if prefix == "" {
		return nil
	}
	var out []Proc
	self := os.Getpid()
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		var pid int
		fmt.Sscan(filepath.Base(p), &pid)
		if pid == self {
			continue
		}
		cmd, err := os.ReadFile(filepath.Join(p, "cmdline"))
		if err != nil {
			continue
		}
		for _, arg := range strings.Split(string(cmd), "\x00") {
			_, val, ok := strings.Cut(arg, "=")
			if !ok {
				val = arg
			}
			if !strings.HasPrefix(val, "/") {
				continue
			}
			r, err := filepath.EvalSymlinks(val)
			if err != nil {
				r = val
			}
			if r == prefix || strings.HasPrefix(r, prefix+"/") {
				c := strings.TrimSpace(strings.ReplaceAll(string(cmd), "\x00", " "))
				if len(c) > 120 {
					c = c[:120]
				}
				out = append(out, Proc{PID: pid, Cmdline: c, Why: []string{"argument " + val}})
				break
			}
		}
	}
	return out
}

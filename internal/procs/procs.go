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
	if prefix == "" {
		return nil
	}
	var out []string
	self := fmt.Sprint(os.Getpid())
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		var why []string
		for _, l := range []string{"root", "cwd"} {
			if t, err := os.Readlink(filepath.Join(p, l)); err == nil && strings.HasPrefix(t, prefix) {
				why = append(why, l)
			}
		}
		fds, _ := filepath.Glob(filepath.Join(p, "fd", "*"))
		for _, fd := range fds {
			if t, err := os.Readlink(fd); err == nil && strings.HasPrefix(t, prefix) {
				why = append(why, "open "+t)
				break
			}
		}
		if filepath.Base(p) != self {
			if mi, err := os.ReadFile(filepath.Join(p, "mountinfo")); err == nil && strings.Contains(string(mi), " "+prefix+"/") {
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
			out = append(out, fmt.Sprintf("pid %s (%s): %s", filepath.Base(p), c, strings.Join(why, ", ")))
		}
	}
	return out
}

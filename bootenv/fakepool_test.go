package bootenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/paczfs/paczfs/hooks"
)

// fakePool is a hooks.Runner that behaves like one small pool for the
// commands bootenv runs: zfs list/get/set/create/snapshot/clone/destroy/
// promote/rename, zpool get/set bootfs, mount -t zfs and umount (copies of
// each filesystem's files), bootctl's EFI variables and systemctl. It
// answers as the real tools do, so the Manager's logic runs unchanged.
type fakePool struct {
	mu      sync.Mutex
	dir     string // files of each filesystem and snapshot
	efivars string
	pool    string
	ds      map[string]*fakeDS
	bootfs  string
	txg     int
	mounts  map[string]string // mount dir -> dataset
	calls   []string
	// boot-complete.target's ActiveState, as systemctl show says it.
	bootComplete string
	fail         map[string]string // command prefix -> stderr: fail it
}

type fakeDS struct {
	props  map[string]string
	origin string
	txg    int
	holds  int
}

func newFakePool(dir, pool string) *fakePool {
	f := &fakePool{dir: dir, efivars: filepath.Join(dir, "efivars"), pool: pool, ds: map[string]*fakeDS{}, mounts: map[string]string{}, fail: map[string]string{}}
	os.MkdirAll(f.efivars, 0o755)
	f.add(pool, nil)
	f.add(pool+"/system", map[string]string{"canmount": "off", "mountpoint": "none"})
	f.add(pool+"/data", map[string]string{"canmount": "off", "mountpoint": "none"})
	f.add(pool+"/data/home", map[string]string{"mountpoint": "/home"})
	return f
}

func (f *fakePool) add(name string, props map[string]string) *fakeDS {
	f.txg++
	d := &fakeDS{props: map[string]string{}, txg: f.txg}
	for k, v := range props {
		d.props[k] = v
	}
	f.ds[name] = d
	os.MkdirAll(f.files(name), 0o755)
	return d
}

func (f *fakePool) files(name string) string {
	return filepath.Join(f.dir, "fs", strings.NewReplacer("/", "_", "@", "=").Replace(name))
}

// writeRoot puts a root's boot files (and boot.json) in a filesystem.
func (f *fakePool) writeRoot(name, kver string) {
	r := f.files(name)
	os.MkdirAll(filepath.Join(r, "boot"), 0o755)
	os.MkdirAll(filepath.Join(r, "etc/paczfs"), 0o755)
	os.WriteFile(filepath.Join(r, "boot/vmlinuz-"+kver), []byte("kernel "+kver), 0o644)
	os.WriteFile(filepath.Join(r, "boot/initrd.img-"+kver), []byte("initrd "+kver+" of "+name), 0o644)
	os.WriteFile(filepath.Join(r, strings.TrimPrefix(BootConfig, "/")), []byte(`{"kernel":"/boot/vmlinuz-{kver}","initrd":"/boot/initrd.img-{kver}","root_options":["boot=zfs","root=ZFS={dataset}","rw"],"extra_options":["console=ttyS0"]}`), 0o644)
}

func copyTree(from, to string) error {
	os.RemoveAll(to)
	os.MkdirAll(filepath.Dir(to), 0o755)
	out, err := exec.Command("cp", "-a", from, to).CombinedOutput()
	if err != nil {
		return fmt.Errorf("cp: %v: %s", err, out)
	}
	return nil
}

func (f *fakePool) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func notFound(name string) ([]byte, error) {
	return nil, &hooks.CmdError{ExitCode: 1, Stderr: "cannot open '" + name + "': dataset does not exist", Err: fmt.Errorf("exit status 1")}
}

func failed(msg string) ([]byte, error) {
	return nil, &hooks.CmdError{ExitCode: 1, Stderr: msg, Err: fmt.Errorf("exit status 1")}
}

func (f *fakePool) prop(name, p string) (string, string) {
	d := f.ds[name]
	switch p {
	case "origin":
		if d.origin == "" {
			return "-", "-"
		}
		return d.origin, "-"
	case "creation", "createtxg":
		return fmt.Sprint(1_700_000_000 + d.txg), "-"
	case "used":
		return fmt.Sprint(1000 * d.txg), "-"
	case "userrefs":
		return fmt.Sprint(d.holds), "-"
	case "clones":
		var cl []string
		for n, o := range f.ds {
			if o.origin == name {
				cl = append(cl, n)
			}
		}
		sort.Strings(cl)
		return strings.Join(cl, ","), "-"
	}
	if v, ok := d.props[p]; ok {
		return v, "local"
	}
	if i := strings.LastIndex(name, "/"); i > 0 && !strings.Contains(name, "@") && (p == "mountpoint") {
		v, _ := f.prop(name[:i], p)
		return v, "inherited"
	}
	switch p {
	case "canmount":
		return "on", "default"
	case "mountpoint":
		return "/", "default"
	}
	return "-", "-"
}

func (f *fakePool) Run(ctx context.Context, c hooks.Cmd) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	line := c.String()
	f.calls = append(f.calls, line)
	for prefix, msg := range f.fail {
		if strings.HasPrefix(line, prefix) {
			return failed(msg)
		}
	}
	a := c.Args
	switch {
	case len(a) >= 2 && a[0] == "zfs" && a[1] == "list":
		return f.list(a[2:])
	case len(a) >= 2 && a[0] == "zfs" && a[1] == "get":
		name := a[len(a)-1]
		if f.ds[name] == nil {
			return notFound(name)
		}
		var b strings.Builder
		for _, p := range strings.Split(a[len(a)-2], ",") {
			v, src := f.prop(name, p)
			fmt.Fprintf(&b, "%s\t%s\t%s\n", p, v, src)
		}
		return []byte(b.String()), nil
	case len(a) >= 2 && a[0] == "zfs" && a[1] == "set":
		name := a[len(a)-1]
		if f.ds[name] == nil {
			return notFound(name)
		}
		for _, kv := range a[2 : len(a)-1] {
			k, v, _ := strings.Cut(kv, "=")
			f.ds[name].props[k] = v
		}
		return nil, nil
	case len(a) >= 2 && a[0] == "zfs" && a[1] == "create":
		name := a[len(a)-1]
		if f.ds[name] != nil {
			return failed("cannot create '" + name + "': dataset already exists")
		}
		f.add(name, optProps(a[2:len(a)-1]))
		return nil, nil
	case len(a) >= 3 && a[0] == "zfs" && a[1] == "snapshot":
		for _, name := range a[2:] {
			fs, _, _ := strings.Cut(name, "@")
			if f.ds[fs] == nil {
				return notFound(fs)
			}
			if f.ds[name] != nil {
				return failed("cannot create snapshot '" + name + "': dataset already exists")
			}
			f.add(name, nil)
			if err := copyTree(f.files(fs), f.files(name)); err != nil {
				return nil, err
			}
		}
		return nil, nil
	case len(a) >= 4 && a[0] == "zfs" && a[1] == "clone":
		snap, target := a[len(a)-2], a[len(a)-1]
		if f.ds[snap] == nil {
			return notFound(snap)
		}
		if f.ds[target] != nil {
			return failed("cannot create '" + target + "': dataset already exists")
		}
		d := f.add(target, optProps(a[2:len(a)-2]))
		d.origin = snap
		return nil, copyTree(f.files(snap), f.files(target))
	case len(a) >= 3 && a[0] == "zfs" && a[1] == "destroy":
		name := a[len(a)-1]
		if f.ds[name] == nil {
			return notFound(name)
		}
		rec := len(a) > 3 && a[2] == "-r"
		for n, d := range f.ds {
			if d.origin == name || rec && strings.HasPrefix(d.origin, name+"@") {
				return failed("cannot destroy '" + name + "': filesystem has dependent clones")
			}
			if !rec && strings.HasPrefix(n, name+"@") {
				return failed("cannot destroy '" + name + "': filesystem has children")
			}
		}
		if f.ds[name].holds > 0 {
			return failed("cannot destroy snapshot " + name + ": dataset is busy")
		}
		for n := range f.ds {
			if n == name || rec && strings.HasPrefix(n, name+"@") {
				delete(f.ds, n)
			}
		}
		return nil, nil
	case len(a) == 3 && a[0] == "zfs" && a[1] == "promote":
		clone := a[2]
		d := f.ds[clone]
		if d == nil || d.origin == "" {
			return failed("cannot promote '" + clone + "': not a cloned filesystem")
		}
		origFS, snapName, _ := strings.Cut(d.origin, "@")
		// Snapshots of the origin up to the clone's origin move to the clone.
		limit := f.ds[d.origin].txg
		for n, s := range f.ds {
			if fs, sn, ok := strings.Cut(n, "@"); ok && fs == origFS && s.txg <= limit {
				delete(f.ds, n)
				f.ds[clone+"@"+sn] = s
				copyTree(f.files(n), f.files(clone+"@"+sn))
				for _, o := range f.ds {
					if o.origin == n {
						o.origin = clone + "@" + sn
					}
				}
			}
		}
		d.origin = f.ds[origFS].origin
		f.ds[origFS].origin = clone + "@" + snapName
		return nil, nil
	case len(a) >= 4 && a[0] == "zfs" && a[1] == "rename":
		from, to := a[len(a)-2], a[len(a)-1]
		if f.ds[from] == nil {
			return notFound(from)
		}
		for n, d := range f.ds {
			if n == from || strings.HasPrefix(n, from+"@") {
				nn := to + strings.TrimPrefix(n, from)
				delete(f.ds, n)
				f.ds[nn] = d
				copyTree(f.files(n), f.files(nn))
			}
		}
		for _, d := range f.ds {
			if strings.HasPrefix(d.origin, from+"@") {
				d.origin = to + strings.TrimPrefix(d.origin, from)
			}
		}
		if f.bootfs == from {
			f.bootfs = to
		}
		return nil, nil
	case len(a) >= 2 && a[0] == "zpool" && a[1] == "get":
		if a[len(a)-1] != f.pool {
			return failed("cannot open '" + a[len(a)-1] + "': no such pool")
		}
		v := f.bootfs
		if v == "" {
			v = "-"
		}
		return []byte("bootfs\t" + v + "\tlocal\n"), nil
	case len(a) == 4 && a[0] == "zpool" && a[1] == "set":
		k, v, _ := strings.Cut(a[2], "=")
		if k == "bootfs" {
			if f.ds[v] == nil {
				return failed("cannot set property for '" + f.pool + "': '" + v + "' is an invalid name")
			}
			f.bootfs = v
		}
		return nil, nil
	case len(a) == 7 && a[0] == "mount" && a[1] == "-t" && a[2] == "zfs":
		name, dir := a[5], a[6]
		if f.ds[name] == nil {
			return failed("filesystem '" + name + "' cannot be mounted, unable to open the dataset")
		}
		os.Remove(dir)
		if err := copyTree(f.files(name), dir); err != nil {
			return nil, err
		}
		if !strings.Contains(a[4], "ro") {
			f.mounts[dir] = name
		} else {
			f.mounts[dir] = ""
		}
		return nil, nil
	case len(a) == 2 && a[0] == "umount":
		name, ok := f.mounts[a[1]]
		if !ok {
			return failed("umount: " + a[1] + ": not mounted")
		}
		if name != "" {
			copyTree(a[1], f.files(name))
		}
		delete(f.mounts, a[1])
		os.RemoveAll(a[1])
		os.MkdirAll(a[1], 0o755)
		return nil, nil
	case len(a) == 3 && a[0] == "bootctl" && a[1] == "set-oneshot":
		return nil, os.WriteFile(filepath.Join(f.efivars, varOneShot+"-"+loaderGUID), EncodeEFIString(a[2]), 0o644)
	case len(a) == 3 && a[0] == "bootctl" && a[1] == "set-default":
		os.Remove(filepath.Join(f.efivars, varDefault+"-"+loaderGUID))
		return nil, nil
	case len(a) >= 2 && a[0] == "systemctl" && a[1] == "show":
		return []byte(f.bootComplete + "\n"), nil
	case a[0] == "systemd-nspawn":
		return nil, nil
	case len(a) == 3 && a[0] == "extlinux" && strings.HasPrefix(a[1], "--once="):
		// SYSLINUX's ADV, as a file the test's BIOS boot reads.
		return nil, os.WriteFile(filepath.Join(a[2], "fake-adv-once"), []byte(strings.TrimPrefix(a[1], "--once=")), 0o644)
	case len(a) >= 2 && a[0] == "systemctl" && a[1] == "reboot":
		return nil, nil
	}
	if strings.HasPrefix(a[0], "/") {
		return nil, nil // a check script that passes
	}
	return nil, fmt.Errorf("fakePool: unexpected command %s", line)
}

func optProps(args []string) map[string]string {
	m := map[string]string{}
	for i := 0; i+1 < len(args); i++ {
		if args[i] == "-o" {
			k, v, _ := strings.Cut(args[i+1], "=")
			m[k] = v
			i++
		}
	}
	return m
}

// list answers zfs list -H [-p] -o name,type[,props] [-t types] [-r [-d N]] [root].
func (f *fakePool) list(a []string) ([]byte, error) {
	var props []string
	types := "filesystem,volume"
	depth, rec := 0, false
	root := ""
	for i := 0; i < len(a); i++ {
		switch a[i] {
		case "-H", "-p":
		case "-o":
			props = strings.Split(a[i+1], ",")
			i++
		case "-t":
			types = a[i+1]
			i++
		case "-r":
			rec = true
		case "-d":
			fmt.Sscan(a[i+1], &depth)
			i++
		default:
			root = a[i]
		}
	}
	if root != "" && f.ds[root] == nil {
		return notFound(root)
	}
	var names []string
	for n := range f.ds {
		if root == "" || n == root {
			names = append(names, n)
			continue
		}
		if !rec {
			continue
		}
		rest, ok := strings.CutPrefix(n, root)
		if !ok || rest == "" || rest[0] != '/' && rest[0] != '@' {
			continue
		}
		level := strings.Count(rest, "/")
		if rest[0] == '@' {
			level = 1
		}
		if depth == 0 || level <= depth {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		typ := "filesystem"
		if strings.Contains(n, "@") {
			typ = "snapshot"
		}
		if types != "all" && !strings.Contains(types, typ) {
			continue
		}
		var row []string
		for _, p := range props {
			switch p {
			case "name":
				row = append(row, n)
			case "type":
				row = append(row, typ)
			default:
				v, _ := f.prop(n, p)
				row = append(row, v)
			}
		}
		b.WriteString(strings.Join(row, "\t") + "\n")
	}
	return []byte(b.String()), nil
}

package image

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/paczfs/paczfs/boot"
	"github.com/paczfs/paczfs/internal/chroot"
)

// stubDir is where the stubs of Boot.InitramfsStubs go in the target: the
// first directory of the PATH libalpm gives package hooks and scriptlets
// (chroot.PATH), so a hook that runs "mkinitcpio" runs the stub.
const stubDir = "usr/local/sbin"

// stubName is what a command of Boot.InitramfsStubs may be: a name looked
// up in PATH, never a path.
var stubName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]*$`)

// stubScript is a stub's content: it says what it stood in for, in the
// package hook's output the build logs, and succeeds.
func stubScript(name string) []byte {
	return []byte("#!/bin/sh\n" +
		"# paczfs: a stand-in for " + name + " while the bootable packages install;\n" +
		"# the initramfs stage builds the initramfs once the system is configured.\n" +
		"echo \"paczfs: " + name + " skipped here: the initramfs is built once the system is configured\"\n" +
		"exit 0\n")
}

// withInitramfsStubs runs fn (a package transaction in root) with a stub
// for each command of Boot.InitramfsStubs first in the PATH of its hooks
// and scriptlets, and removes the stubs after, whatever fn returned. A
// command the target already has at the stub's path is left alone (and
// runs); without the directory (a root whose filesystem package lacks
// it) nothing is stubbed: the transaction's hook then builds an
// initramfs the initramfs stage replaces, as without stubs.
func (st *build) withInitramfsStubs(fn func() error) (err error) {
	names := st.cfg.Boot.InitramfsStubs
	if len(names) == 0 {
		return fn()
	}
	if !strings.HasPrefix(chroot.PATH, "/"+stubDir+":") {
		return fmt.Errorf("boot.initramfs_stubs: /%s is not first in the PATH of package hooks (%s)", stubDir, chroot.PATH)
	}
	r, err := os.OpenRoot(st.state.Root)
	if err != nil {
		return err
	}
	defer r.Close()
	// Followed (inside the root): a /usr/local/sbin that links to bin
	// is as early in PATH.
	if fi, err := r.Stat(stubDir); errors.Is(err, fs.ErrNotExist) {
		st.b.log.Info("initramfs stubs not written: the target has no directory /" + stubDir)
		return fn()
	} else if err != nil || !fi.IsDir() {
		// A link out of the root, say: the hook builds, as without stubs.
		if err == nil {
			err = errors.New("not a directory")
		}
		st.warn("boot.initramfs_stubs not written (the transaction's initramfs hook builds an image the initramfs stage replaces): /%s: %v", stubDir, err)
		return fn()
	}
	var made []string
	defer func() {
		for _, p := range made {
			if rerr := r.Remove(p); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
				err = errors.Join(err, fmt.Errorf("remove the stub /%s: %w", p, rerr))
			}
		}
	}()
	for _, name := range names {
		p := stubDir + "/" + name
		f, err := r.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
		if errors.Is(err, fs.ErrExist) {
			st.b.log.Info("initramfs stub not written: the target has its own", "path", "/"+p)
			continue
		} else if err != nil {
			return fmt.Errorf("boot.initramfs_stubs: %w", err)
		}
		made = append(made, p)
		_, werr := f.Write(stubScript(name))
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			return fmt.Errorf("boot.initramfs_stubs: %w", werr)
		}
		// The mode asked for went through the umask.
		if err := r.Chmod(p, 0o755); err != nil {
			return fmt.Errorf("boot.initramfs_stubs: %w", err)
		}
	}
	return fn()
}

// checkStubbed warns when, with boot.initramfs_stubs, the bootable
// layer's transaction left an initramfs anyway: its hook reached the
// generator by another way than PATH (a newer hook script calling it by
// its path, say), and the image's initramfs was built twice.
func (st *build) checkStubbed() {
	b := st.cfg.Boot
	if len(b.InitramfsStubs) == 0 {
		return
	}
	kvers, err := boot.KernelVersions(st.state.Root, b.Kernel)
	if err != nil {
		return
	}
	for _, k := range kvers {
		initrd, err := expand(st.state.Root, b.Initrd, k, "")
		if err != nil {
			return
		}
		if _, err := os.Lstat(filepath.Join(st.state.Root, initrd)); err == nil {
			st.warn("boot.initramfs_stubs: the bootable packages' transaction built %s all the same (did its hook run the generator by path?): the initramfs stage builds it again", initrd)
			return
		}
	}
}

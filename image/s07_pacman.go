package image

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/paczfs/paczfs/pacman"
)

// stagePacman makes the target's keyring. The target's pacman.conf and
// mirrorlists are written by the system stage, after the packages that
// own those files (pacman, pacman-mirrorlist) are installed: written
// before, they would be file conflicts. The installs use the build's own
// configuration, never the target's file.
//
// A derived build keeps the previous release's keyring: the target's
// keys change through its keyring package, as on the devices.
func stagePacman(ctx context.Context, st *build) error {
	if st.previous != nil {
		return nil
	}
	return st.b.installer.InitKeyring(ctx, st.state.Root)
}

func writePacmanConfig(root string, cfg pacman.Config, downloadUser string) error {
	files := map[string][]byte{"etc/pacman.conf": cfg.RenderConf(downloadUser)}
	for name, data := range cfg.RenderMirrorlists() {
		files[filepath.Join("etc/pacman.d", name)] = data
	}
	for name, data := range files {
		if err := writeFile(root, name, data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

func (st *build) install(ctx context.Context, names []string) error {
	if len(names) == 0 {
		return nil
	}
	res, err := st.b.installer.Install(ctx, st.state.Root, names)
	if err != nil {
		return err
	}
	st.packages = append(st.packages, res.Installed...)
	for _, w := range res.Warnings {
		st.warn("pacman: %s", w)
	}
	if err := st.fixMountPointModes(res.DirModes); err != nil {
		return err
	}
	if len(st.cfg.Pacman.CacheDirs) == 0 {
		return st.emptyTargetCache()
	}
	return nil
}

// emptyTargetCache removes the downloaded packages from the target's own
// cache (used when pacman.cache_dirs is empty), as pacman -Scc would:
// left there, they would ship in the image and stay forever in the
// layer's held snapshot (175 MB for the lab profile).
func (st *build) emptyTargetCache() error {
	dir := filepath.Join(st.state.Root, "var/cache/pacman/pkg")
	ents, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("empty the target's package cache: %w", err)
	}
	var n int
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return fmt.Errorf("empty the target's package cache: %w", err)
		}
		n++
	}
	st.b.log.Debug("emptied the target's package cache", "dir", dir, "entries", n)
	return nil
}

// fixMountPointModes gives the layout's mount points the modes their
// packages declare. zfs made them 0755 before any package was installed,
// and libalpm keeps an existing directory's mode (it warns): /root would
// stay readable by everyone where Arch's filesystem package makes it 0750.
func (st *build) fixMountPointModes(modes map[string]os.FileMode) error {
	if len(modes) == 0 {
		return nil
	}
	r, err := os.OpenRoot(st.state.Root)
	if err != nil {
		return err
	}
	defer r.Close()
	for _, d := range st.cfg.Datasets {
		mp := d.Props["mountpoint"]
		if d.Props["canmount"] == "off" || !filepath.IsAbs(mp) || mp == "/" {
			continue
		}
		rel := strings.TrimPrefix(filepath.Clean(mp), "/")
		if m, ok := modes[rel]; ok {
			if err := r.Chmod(rel, m); err != nil {
				return fmt.Errorf("give %s its package's mode: %w", mp, err)
			}
			st.b.log.Debug("mount point given its package's mode", "dir", mp, "mode", m)
		}
	}
	return nil
}

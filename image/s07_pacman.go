package image

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

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
	if st.layers != nil && st.layers.received {
		// The cached base layer's keyring is another build's: a fresh one.
		if err := removeInRoot(st.state.Root, keyringDir); err != nil {
			return fmt.Errorf("remove the cached layer's keyring: %w", err)
		}
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

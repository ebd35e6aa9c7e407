package image

import (
	"context"
	"slices"
)

func stageBootable(ctx context.Context, st *build) error {
	if st.previous != nil {
		return nil // the base stage synced every layer's packages
	}
	if err := st.bootableLayer(ctx); err != nil {
		return err
	}
	// The keyring package's own files, whatever its install script did
	// (it populates only when pacman-key is there first) and whether the
	// layers came from the cache: the keys of the packages the image
	// ships.
	return st.b.installer.PopulateKeyring(ctx, st.state.Root)
}

// bootableLayer receives the bootable packages from the cache, or
// installs them (and stores them when there is a cache).
func (st *build) bootableLayer(ctx context.Context) error {
	if c := st.layers; c != nil && c.received && c.bootable != nil && c.bootable.hit != nil {
		if ok, err := st.receiveCachedBootable(ctx); ok || err != nil {
			return err
		}
	}
	if err := st.beforeBootable(); err != nil {
		return err
	}
	n := len(st.packages)
	if err := st.withInitramfsStubs(func() error { return st.install(ctx, st.bootablePackages()) }); err != nil {
		return err
	}
	st.checkStubbed()
	return st.storeBootable(ctx, slices.Clone(st.packages[n:]))
}

// beforeBootable writes what the bootable layer's own package hooks read
// before that layer is installed: the initramfs generator's drop-ins and
// /etc/hostid. Arch's mkinitcpio runs its pacman hook
// (90-mkinitcpio-install) in that transaction; with mkinitcpio in
// boot.initramfs_stubs (ArchProfile) the hook builds nothing, and without
// it the image it builds there (replaced by the initramfs stage's) has
// the zfs hook and the hostid.
func (st *build) beforeBootable() error {
	if err := st.writeInitramfsFiles(); err != nil {
		return err
	}
	id, err := writeHostID(st.state.Root, st.cfg.System.HostID)
	if err != nil {
		return err
	}
	st.hostID = id
	return nil
}

// writeInitramfsFiles writes boot.initramfs_files into the target
// (content starting with #! executable). Unchanged files are left alone.
func (st *build) writeInitramfsFiles() error {
	return writeFiles(st.state.Root, st.cfg.Boot.InitramfsFiles)
}

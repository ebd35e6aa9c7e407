package image

import "context"

func stageWorkstation(ctx context.Context, st *build) error {
	if len(st.cfg.Packages.Workstation) == 0 || st.previous != nil {
		return nil
	}
	if err := st.install(ctx, st.cfg.Packages.Workstation); err != nil {
		return err
	}
	// The packages fetched during the initramfs, now installed.
	if err := st.destroyPrefetchDataset(ctx); err != nil {
		return err
	}
	if err := st.writePackageList(); err != nil {
		return err
	}
	return st.layerSnapshot(ctx, LayerWorkstation)
}

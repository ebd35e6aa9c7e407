package image

import "context"

func stageDatasets(ctx context.Context, st *build) error {
	z := st.zfs()
	if st.previous != nil {
		return st.receiveRoot(ctx)
	}
	if st.layers != nil && st.layers.base.hit != nil {
		if ok, err := st.receiveCachedBase(ctx); ok || err != nil {
			return err
		}
	}
	if err := st.createDatasets(ctx, st.cfg.Datasets); err != nil {
		return err
	}
	mounted, err := z.Properties(ctx, st.state.RootDataset, "mounted")
	if err != nil {
		return err
	}
	if mounted["mounted"].Value != "yes" {
		if err := z.Mount(ctx, st.state.RootDataset); err != nil {
			return err
		}
	}
	return nil
}

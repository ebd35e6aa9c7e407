package image

import "context"

func stageBootable(ctx context.Context, st *build) error {
	if st.previous != nil {
		return nil // the base stage synced every layer's packages
	}
	return st.install(ctx, st.cfg.Packages.Bootable)
}

package image

import "context"

func stageBootable(ctx context.Context, st *build) error {
	return st.install(ctx, st.cfg.Packages.Bootable)
}

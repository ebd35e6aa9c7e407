package image

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/paczfs/paczfs/hooks"
	"github.com/paczfs/paczfs/internal/fsx"
)

func stageConvert(ctx context.Context, st *build) error {
	for _, o := range st.cfg.Outputs {
		if st.cfg.Overwrite {
			if err := os.Remove(o.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
		st.res.Outputs = append(st.res.Outputs, o)
		name := filepath.Base(o.Path)
		report := func(pct int) {
			if pct%10 == 0 {
				st.b.progress(Progress{Kind: Message, Stage: hooks.StageConvert, Message: fmt.Sprintf("%s (%s): %d%%", name, o.Format, pct)})
			}
		}
		if err := writeOutput(ctx, st.b.runner, st.target.path, o, report); err != nil {
			return err
		}
		// Outputs are the caller's files, not the image's: they get the
		// caller's umask as the image file does (qemu-img ran with the
		// build's).
		mask, err := fsx.Umask()
		if err != nil {
			return err
		}
		if err := os.Chmod(o.Path, 0o644&^mask); err != nil {
			return err
		}
	}
	return nil
}

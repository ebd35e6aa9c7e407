package image

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"golang.org/x/sync/errgroup"

	"github.com/paczfs/paczfs/hooks"
	"github.com/paczfs/paczfs/internal/fsx"
)

// stageConvert writes every output at once: each qemu-img (or the
// in-process QCOW2 writer) reads the same exported image (from the page
// cache after the first) and compresses on CPUs of its own, so two
// outputs take about as long as the slowest rather than the sum. At most GOMAXPROCS (and at least two) run
// together. The first failure stops the others; the build's cleanup then
// removes every output.
func stageConvert(ctx context.Context, st *build) error {
	// Every argv before any file is touched: a bad output fails the stage
	// with nothing written.
	for _, o := range st.cfg.Outputs {
		if _, err := OutputArgs(st.target.path, o); err != nil {
			return err
		}
	}
	mask, err := fsx.Umask()
	if err != nil {
		return err
	}
	for _, o := range st.cfg.Outputs {
		if st.cfg.Overwrite {
			if err := os.Remove(o.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
		st.res.Outputs = append(st.res.Outputs, o)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(2, runtime.GOMAXPROCS(0)))
	for _, o := range st.cfg.Outputs {
		name := filepath.Base(o.Path)
		report := func(pct int) {
			if pct%10 == 0 {
				st.b.progress(Progress{Kind: Message, Stage: hooks.StageConvert, Message: fmt.Sprintf("%s (%s): %d%%", name, o.Format, pct)})
			}
		}
		g.Go(func() error {
			if err := writeOutput(gctx, st.b.runner, st.target.path, o, report); err != nil {
				return err
			}
			// Outputs are the caller's files, not the image's: they get
			// the caller's umask as the image file does (qemu-img and
			// the writer ran with the build's).
			return os.Chmod(o.Path, 0o644&^mask)
		})
	}
	return g.Wait()
}

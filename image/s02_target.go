package image

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/paczfs/paczfs/disk"
)

// targetInfo is the disk being written.
type targetInfo struct {
	path    string
	block   bool
	created bool // this build created the file (only then may it remove it)
	size    disk.Size
	loop    *disk.Loop
	plan    disk.Plan
}

func stageTarget(ctx context.Context, st *build) error {
	cfg := st.cfg
	if err := st.ensureWorkDir(); err != nil {
		return err
	}
	var t *disk.Target
	var err error
	if cfg.BlockDevice != "" {
		t, err = disk.OpenBlockDevice(ctx, cfg.BlockDevice, disk.BlockDeviceOptions{Wipe: cfg.Overwrite, Runner: st.b.runner})
	} else {
		img, aerr := filepath.Abs(cfg.ImageFile)
		if aerr != nil {
			return aerr
		}
		if err := st.record.update(func(r *record) { r.Image = img }); err != nil {
			return err
		}
		t, err = disk.CreateImage(cfg.ImageFile, cfg.Size, disk.ImageOptions{Overwrite: cfg.Overwrite})
	}
	if err != nil {
		return err
	}
	// Only a file this build created may be removed by recovery, and
	// only while its path is still that file.
	id := ""
	if t.Created && !t.BlockDevice {
		id = fileID(t.Path)
	}
	if err := st.record.update(func(r *record) { r.Created, r.ImageID = t.Created, id }); err != nil {
		return err
	}
	// The layout on the disk as it is (a block device's own size).
	plan, err := cfg.layout().Plan(t.Size)
	if err != nil {
		return fmt.Errorf("layout: %w", err)
	}
	if st.previous != nil {
		// A derived build's disk has the previous release's GUIDs.
		if plan, err = identityPlan(plan, st.previous.Disk); err != nil {
			return fmt.Errorf("release.from: %w", err)
		}
	}
	st.target = &targetInfo{path: t.Path, block: t.BlockDevice, created: t.Created, size: t.Size, plan: plan}
	st.res.Disk = t.Path
	if !t.BlockDevice {
		st.state.ImageFile = t.Path
	}
	return st.attachLoop(ctx)
}

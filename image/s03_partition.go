package image

import (
	"context"
	"fmt"
	"strings"

	"github.com/paczfs/paczfs/disk"
	"github.com/paczfs/paczfs/hooks"
)

func stagePartition(ctx context.Context, st *build) error {
	t := st.target
	if err := disk.WriteGPT(t.path, t.plan.SeededGUIDs(st.cfg.GUIDSeed)); err != nil {
		return err
	}
	plan, err := disk.ReadGPT(t.path) // the GUIDs the table really has
	if err != nil {
		return err
	}
	t.plan = plan
	if err := st.partitionDevices(ctx); err != nil {
		return err
	}
	if sw, ok := plan.Find(disk.RoleSwap); ok {
		if _, err := st.b.runner.Run(ctx, hooks.Cmd{Args: []string{"mkswap", "-U", strings.ToLower(sw.GUID), t.loop.PartitionPath(sw.Number)}}); err != nil {
			return fmt.Errorf("swap: %w", err)
		}
	}
	return nil
}

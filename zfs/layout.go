package zfs

import (
	"context"
	"fmt"
	"strings"
)

// DatasetSpec is one dataset of a layout, named relative to the pool.
type DatasetSpec struct {
	Name  string
	Props map[string]string
	// Mount mounts it right after creation: needed for datasets with
	// canmount=noauto (the root of a boot environment), which must be
	// mounted before the datasets that mount below it are created.
	Mount bool
}

// RootDataset is where the default boot environment lives, relative to the pool.
const RootDataset = "system/default"

// DefaultDatasets is paczfs's layout, as the original tool's README has it:
// boot environments under system/ (the root at system/default, clones
// beside it), and user data under data/, outside every boot environment, so
// /home and the others stay the same whichever environment boots.
func DefaultDatasets() []DatasetSpec {
	return []DatasetSpec{
		{Name: "system", Props: map[string]string{"canmount": "off", "mountpoint": "none"}},
		// Every boot environment needs canmount=noauto (not inheritable):
		// only the one named on the kernel command line is mounted, at /.
		{Name: RootDataset, Props: map[string]string{"canmount": "noauto", "mountpoint": "/"}, Mount: true},
		{Name: "data", Props: map[string]string{"canmount": "off", "mountpoint": "none"}},
		{Name: "data/root", Props: map[string]string{"mountpoint": "/root"}},
		{Name: "data/home", Props: map[string]string{"mountpoint": "/home"}},
		{Name: "data/srv", Props: map[string]string{"mountpoint": "/srv"}},
		{Name: "data/machines", Props: map[string]string{"mountpoint": "/var/lib/machines"}},
		// PostgreSQL writes 8K pages and caches them itself.
		{Name: "data/postgres", Props: map[string]string{"mountpoint": "/var/lib/postgres", "recordsize": "8K",
			"primarycache": "metadata", "logbias": "throughput"}},
	}
}

// ValidateDatasets checks a layout's names without running anything.
func ValidateDatasets(pool string, specs []DatasetSpec) error {
	seen := map[string]bool{}
	for i, s := range specs {
		if s.Name == "" || strings.HasPrefix(s.Name, "/") || strings.ContainsAny(s.Name, "@#") {
			return fmt.Errorf("datasets[%d]: name %q must be relative to the pool, like data/home", i, s.Name)
		}
		full := pool + "/" + s.Name
		if err := ValidateDatasetName(full); err != nil {
			return fmt.Errorf("datasets[%d]: %w", i, err)
		}
		if seen[s.Name] {
			return fmt.Errorf("datasets[%d]: %q is declared twice", i, s.Name)
		}
		seen[s.Name] = true
	}
	return nil
}

// CreateDatasets creates a layout in order under pool, creating missing
// parents, and mounts the ones marked Mount.
func (c *Client) CreateDatasets(ctx context.Context, pool string, specs []DatasetSpec) error {
	if err := ValidateDatasets(pool, specs); err != nil {
		return err
	}
	for _, s := range specs {
		name := pool + "/" + s.Name
		if err := c.CreateDataset(ctx, name, s.Props, CreateOptions{Parents: true}); err != nil {
			return err
		}
		if s.Mount {
			if err := c.Mount(ctx, name); err != nil {
				return err
			}
		}
	}
	return nil
}

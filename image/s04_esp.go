package image

import (
	"context"
	"path"
	"strings"

	"github.com/paczfs/paczfs/disk"
)

// espFiles opens the ESP for each access, so nothing stays open between
// stages and hooks can use it at any point.
type espFiles struct {
	path string
	plan disk.Plan
}

func (e espFiles) WriteFile(name string, data []byte) error {
	esp, err := disk.OpenESP(e.path, e.plan)
	if err != nil {
		return err
	}
	if err := esp.MkdirAll(path.Dir(name)); err != nil {
		esp.Close()
		return err
	}
	if err := esp.WriteFile(name, strings.NewReader(string(data))); err != nil {
		esp.Close()
		return err
	}
	return esp.Close()
}

func (e espFiles) ReadFile(name string) ([]byte, error) {
	esp, err := disk.OpenESP(e.path, e.plan)
	if err != nil {
		return nil, err
	}
	defer esp.Close()
	return esp.ReadFile(name)
}

func stageESP(ctx context.Context, st *build) error {
	t := st.target
	esp, err := disk.FormatESP(t.path, t.plan, "ESP")
	if err != nil {
		return err
	}
	if err := esp.Close(); err != nil {
		return err
	}
	st.state.ESP = espFiles{path: t.path, plan: t.plan}
	return nil
}

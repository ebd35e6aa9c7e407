package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/paczfs/paczfs/hooks"
)

// scanHooks reads HOOKS_DIR: every file in it (dot files and README*
// aside) is a
// hook named <before|after|replace>-<stage>[.anything], run in file name
// order (after-system.1.sh before after-system.2.sh). A "target" part
// among the dot-separated parts (after-system.target.sh) runs the script
// chrooted in the target; other scripts run on the build host. A file
// named otherwise is an error, not skipped: a hook that silently never
// runs is worse. Whether each script is executable is checked by
// image.New.
func scanHooks(dir string) ([]hooks.Script, error) {
	if dir == "" {
		return nil, nil
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("HOOKS_DIR: %w", err)
	}
	ents, err := os.ReadDir(abs)
	if err != nil {
		return nil, fmt.Errorf("HOOKS_DIR: %w", err)
	}
	var out []hooks.Script
	var errs []error
	for _, e := range ents {
		name := e.Name()
		if strings.HasPrefix(name, ".") || strings.HasPrefix(name, "README") {
			continue
		}
		path := filepath.Join(abs, name)
		stage, when, err := hooks.ParseScriptName(path)
		if err != nil {
			errs = append(errs, fmt.Errorf("HOOKS_DIR: %w", err))
			continue
		}
		if fi, err := os.Stat(path); err != nil || !fi.Mode().IsRegular() {
			errs = append(errs, fmt.Errorf("HOOKS_DIR: hook %s: not a regular file", path))
			continue
		}
		inTarget := slices.Contains(strings.Split(name, ".")[1:], "target")
		if inTarget && !targetReady(stage, when) {
			errs = append(errs, fmt.Errorf("HOOKS_DIR: hook %s runs in the target, which has no system %s the %s stage: use a stage from after-base to before-finalize, or drop .target. from its name to run it on the host", path, when, stage))
			continue
		}
		out = append(out, hooks.Script{Path: path, AtStage: stage, Position: when, InTarget: inTarget})
	}
	return out, errors.Join(errs...)
}

// targetReady reports whether a hook at when-stage can run chrooted in
// the target: once the base stage has installed a shell there, until the
// finalize stage exports the pool.
func targetReady(stage hooks.Stage, when hooks.When) bool {
	i, base, fin := slices.Index(hooks.Stages(), stage), slices.Index(hooks.Stages(), hooks.StageBase), slices.Index(hooks.Stages(), hooks.StageFinalize)
	return i > base && i < fin || stage == hooks.StageBase && when == hooks.After || stage == hooks.StageFinalize && when == hooks.Before
}

// asHooks converts scripts for image.WithHooks.
func asHooks(scripts []hooks.Script) []hooks.Hook {
	out := make([]hooks.Hook, len(scripts))
	for i, s := range scripts {
		out[i] = s
	}
	return out
}

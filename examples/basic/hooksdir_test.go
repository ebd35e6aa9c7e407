package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/paczfs/paczfs/hooks"
)

func writeHooks(t *testing.T, names ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, n := range names {
		require.NoError(t, os.WriteFile(filepath.Join(dir, n), []byte("#!/bin/sh\n"), 0o755))
	}
	return dir
}

func TestScanHooksReadsStagePositionAndPlace(t *testing.T) {
	dir := writeHooks(t, "after-system.target.sh", "before-checks.sh", "replace-convert", "after-system.1.sh",
		"before-finalize.target", ".hidden", "after-base.target.sh")
	got, err := scanHooks(dir)
	require.NoError(t, err)
	p := func(n string) string { return filepath.Join(dir, n) }
	assert.Equal(t, []hooks.Script{
		{Path: p("after-base.target.sh"), AtStage: hooks.StageBase, Position: hooks.After, InTarget: true},
		{Path: p("after-system.1.sh"), AtStage: hooks.StageSystem, Position: hooks.After},
		{Path: p("after-system.target.sh"), AtStage: hooks.StageSystem, Position: hooks.After, InTarget: true},
		{Path: p("before-checks.sh"), AtStage: hooks.StageChecks, Position: hooks.Before},
		{Path: p("before-finalize.target"), AtStage: hooks.StageFinalize, Position: hooks.Before, InTarget: true},
		{Path: p("replace-convert"), AtStage: hooks.StageConvert, Position: hooks.Replace},
	}, got)
	assert.Len(t, asHooks(got), len(got))

	none, err := scanHooks("")
	require.NoError(t, err)
	assert.Empty(t, none)
}

func TestScanHooksRelativeDirGivesAbsolutePaths(t *testing.T) {
	dir := writeHooks(t, "after-system.sh")
	t.Chdir(dir)
	got, err := scanHooks(".")
	require.NoError(t, err)
	require.Len(t, got, 1)
	assert.Equal(t, filepath.Join(dir, "after-system.sh"), got[0].Path)
}

func TestScanHooksRejectsBadNames(t *testing.T) {
	for name, want := range map[string]string{
		"notes.txt":             "notes.txt: name it <before|after|replace>-<stage>",
		"during-system.sh":      `unknown hook position "during"`,
		"after-sytem.sh":        `unknown stage "sytem"`,
		"before-pool.target.sh": "runs in the target, which has no system before the pool stage",
		"replace-base.target":   "runs in the target, which has no system replace the base stage",
		"after-finalize.target": "after the finalize stage",
	} {
		t.Run(name, func(t *testing.T) {
			dir := writeHooks(t, "after-system.sh", name)
			_, err := scanHooks(dir)
			require.Error(t, err)
			assert.Contains(t, err.Error(), "HOOKS_DIR: hook "+filepath.Join(dir, name))
			assert.Contains(t, err.Error(), want)
		})
	}
	dir := writeHooks(t)
	require.NoError(t, os.Mkdir(filepath.Join(dir, "after-system.d"), 0o755))
	_, err := scanHooks(dir)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "after-system.d: not a regular file")

	_, err = scanHooks(filepath.Join(dir, "missing"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "HOOKS_DIR: open")
}

func TestHooksDirFromTheConfiguration(t *testing.T) {
	dir := writeHooks(t, "after-bootable.sh")
	s := load(t, "HOOKS_DIR='"+dir+"'\n", nil)
	got, err := scanHooks(s.str("HOOKS_DIR"))
	require.NoError(t, err)
	assert.Equal(t, []hooks.Script{{Path: filepath.Join(dir, "after-bootable.sh"), AtStage: hooks.StageBootable, Position: hooks.After}}, got)
}

// The shipped example hooks directory scans cleanly: its README is not a hook.
func TestExampleHooksDirectory(t *testing.T) {
	scripts, err := scanHooks("../hooks")
	require.NoError(t, err)
	require.Len(t, scripts, 1)
	assert.True(t, scripts[0].InTarget)
	assert.Equal(t, "after", string(scripts[0].Position))
	assert.Equal(t, "system", string(scripts[0].AtStage))
}

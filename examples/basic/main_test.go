package main

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/paczfs/paczfs/image"
)

// runCmd runs the command with a fake environment and no terminal.
func runCmd(t *testing.T, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(t.Context(), args, env2(env, &out, &errb))
	return code, out.String(), errb.String()
}

func env2(m map[string]string, out, errb *bytes.Buffer) env {
	return env{Lookup: envMap(m), Stdout: out, Stderr: errb, Now: testNow, ReadFile: os.ReadFile}
}

func TestPrintConfigFlagRoundTrip(t *testing.T) {
	code, out, errs := runCmd(t, map[string]string{"HOSTNAME": "fromenv", "WORKSTATION_PKGS": "vim tmux"}, "-C")
	require.Equal(t, 0, code, errs)
	assert.Empty(t, errs)
	assert.Contains(t, out, "HOSTNAME='fromenv'\n")
	assert.Contains(t, out, "WORKSTATION_PKGS=( 'vim' 'tmux' )\n")

	file := filepath.Join(t.TempDir(), "paczfs.conf")
	require.NoError(t, os.WriteFile(file, []byte(out), 0o644))
	code, again, errs := runCmd(t, nil, "-c", file, "-C")
	require.Equal(t, 0, code, errs)
	assert.Equal(t, out, again)
}

func TestHelpListsEveryVariableAndFlag(t *testing.T) {
	code, out, _ := runCmd(t, nil, "-h")
	require.Equal(t, 0, code)
	for _, v := range variables {
		assert.Regexp(t, "\n  "+v.Name+"( \\(list\\))?\n      [a-z]", out, v.Name)
	}
	for _, f := range []string{"-c FILE", "-C", "--profile", "--dry-run", "--keep", "-v", "--json", "-h"} {
		assert.Contains(t, out, "  "+f, f)
	}
}

func TestBadInputExitsTwoWithOneLine(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.conf")
	require.NoError(t, os.WriteFile(bad, []byte("HOSTNAME='x'\nSUFFIX=$(date +%s)\n"), 0o644))
	for name, args := range map[string][]string{
		"unknown flag":    {"--nope"},
		"argument":        {"build"},
		"bad file":        {"-c", bad, "-C"},
		"missing file":    {"-c", filepath.Join(t.TempDir(), "none.conf")},
		"unknown profile": {"--profile", "debian", "-C"},
	} {
		t.Run(name, func(t *testing.T) {
			code, out, errs := runCmd(t, nil, args...)
			assert.Equal(t, 2, code)
			assert.Empty(t, out)
			assert.Equal(t, 1, strings.Count(errs, "\n"), errs)
			assert.True(t, strings.HasPrefix(errs, "paczfs: "), errs)
		})
	}
	_, _, errs := runCmd(t, nil, "-c", bad)
	assert.Contains(t, errs, bad+":2: command substitution")
}

func TestConfigurationErrorsBeforeTheBuilderExitTwo(t *testing.T) {
	code, _, errs := runCmd(t, map[string]string{"IMAGE_SIZE": "big", "HOOKS_DIR": "/nonexistent"}, "--dry-run")
	assert.Equal(t, 2, code)
	assert.Equal(t, "paczfs: environment variable IMAGE_SIZE: size \"big\": does not start with a whole number; write for example 550M or 20G\n", errs)
}

func TestVersionWarningGoesToStderr(t *testing.T) {
	code, out, errs := runCmd(t, map[string]string{"CONFIG_VERSION": "v0.0.1"}, "-C")
	assert.Equal(t, 0, code)
	assert.Contains(t, out, "CONFIG_VERSION='v0.0.1'")
	assert.Contains(t, errs, "paczfs: warning: the configuration is for paczfs v0.0.1")
}

func TestOneLine(t *testing.T) {
	assert.Equal(t, "a; b: c", oneLine(errorString("a\n  b: c\n")))
}

type errorString string

func (e errorString) Error() string { return string(e) }

// The library names Config fields; the command says its variables.
func TestProblemsUseTheCommandsVariables(t *testing.T) {
	var b strings.Builder
	printProblems(&b, &image.ConfigError{Problems: []*image.FieldError{
		{Field: "image_file", Problem: "no target", Fix: "set image_file (a new sparse file) or block_device (a whole disk)"},
		{Field: "size", Problem: "the layout does not fit", Fix: "make size larger or esp_size/swap_size smaller"},
		{Field: "pacman.cache_dirs[0]", Problem: `"cache" is relative`, Fix: "give an absolute directory"},
	}})
	out := b.String()
	assert.Contains(t, out, "IMAGE_FILE: no target; fix: set IMAGE_FILE (a new sparse file) or BLOCK_DEV (a whole disk)")
	assert.Contains(t, out, "IMAGE_SIZE: the layout does not fit; fix: make IMAGE_SIZE larger or ESP_SIZE/SWAP_SIZE smaller")
	assert.Contains(t, out, "CACHE_PATH[0]:")
}

// -h is made from the flag definitions: every flag is in it.
func TestHelpListsEveryFlag(t *testing.T) {
	var b strings.Builder
	usage(&b)
	flags(&options{}).VisitAll(func(f *flag.Flag) {
		dash := "-"
		if len(f.Name) > 1 {
			dash = "--"
		}
		assert.Contains(t, b.String(), "  "+dash+f.Name+" ", f.Name)
	})
}

// Package examples_test checks that the library can be used from outside
// this module: a program in a module of its own, and copies of the example
// commands, compile against the checkout (a replace directive). Go refuses
// any import of this module's internal packages there, so this is the
// check that the public API is complete and the examples are examples.
package examples_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const userProgram = `package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/paczfs/paczfs/bootenv"
	"github.com/paczfs/paczfs/hooks"
	"github.com/paczfs/paczfs/image"
)

func main() {
	cfg := image.ArchProfile()
	cfg.ImageFile = filepath.Join(os.TempDir(), "user.img")
	cfg.System.Hostname = "from-outside"
	cfg.Manage.Tool = os.Getenv("TOOL") // the device tool, built from examples/bootenv
	motd := hooks.Func("motd", hooks.StageSystem, hooks.After, func(ctx context.Context, s *hooks.State) error {
		return os.WriteFile(filepath.Join(s.Root, "etc/motd"), []byte("hi\n"), 0o644)
	})
	b, err := image.New(cfg, image.WithHostChecks(false), image.WithHooks(motd),
		image.WithLogger(slog.New(slog.DiscardHandler)), image.WithRunner(hooks.BuildRunner(nil)))
	var ce *image.ConfigError
	if errors.As(err, &ce) {
		fmt.Println("config error:", ce)
		os.Exit(1)
	}
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	_ = b
	fmt.Println("ok", len(hooks.Stages()), "stages,", len(bootenv.EnableUnits()), "boot units")
}
`

func TestLibraryAndExamplesBuildOutsideTheModule(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds a module of its own (about a minute)")
	}
	_, here, _, _ := runtime.Caller(0)
	repo := filepath.Dir(filepath.Dir(here))
	dir := t.TempDir()
	goVersion := strings.TrimPrefix(runtime.Version(), "go")
	write := func(name, data string) {
		p := filepath.Join(dir, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(data), 0o644))
	}
	write("go.mod", "module example.com/user\n\ngo "+goVersion+"\n\nrequire github.com/paczfs/paczfs v0.0.0\n\nreplace github.com/paczfs/paczfs => "+repo+"\n")
	sum, err := os.ReadFile(filepath.Join(repo, "go.sum"))
	require.NoError(t, err)
	write("go.sum", string(sum))
	write("main.go", userProgram)
	for _, ex := range []string{"basic", "storage", "bootenv", "release"} {
		files, err := filepath.Glob(filepath.Join(repo, "examples", ex, "*.go"))
		require.NoError(t, err)
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			data, err := os.ReadFile(f)
			require.NoError(t, err)
			write(filepath.Join(ex, filepath.Base(f)), string(data))
		}
	}
	run := func(args ...string) string {
		cmd := exec.Command("go", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off", "TOOL="+filepath.Join(dir, "tool", "paczfs-bootenv"))
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "go %s:\n%s", strings.Join(args, " "), out)
		return string(out)
	}
	run("mod", "tidy")
	run("vet", "./...")
	run("build", "-o", filepath.Join(dir, "bin")+"/", "./...")
	// The device tool builds without cgo, as images need it.
	t.Setenv("CGO_ENABLED", "0")
	run("build", "-o", filepath.Join(dir, "tool", "paczfs-bootenv"), "./bootenv")
	t.Setenv("CGO_ENABLED", "")
	out := run("run", ".")
	require.Contains(t, out, "ok 15 stages, 4 boot units")
}

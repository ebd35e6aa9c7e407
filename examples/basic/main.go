// Command basic is paczfs as a command, configured like the original
// bash tool: the variables of a -c file, then the environment, then the
// profile's defaults. It builds a bootable Arch Linux disk image (or
// disk) with a ZFS root through image.Builder.
//
//	sudo go run ./examples/basic                     # ./paczfs-<time>.img, 20G
//	go run ./examples/basic -C > my.conf             # the configuration, to edit
//	sudo go run ./examples/basic -c my.conf --dry-run
//	sudo VDI_FILE='./vm-${SUFFIX}.vdi' WORKSTATION_PKGS= go run ./examples/basic
//
// Differences from the original, on purpose:
//   - The file is parsed, never sourced: no $( ), no backticks, no shell
//     functions (use HOOKS_DIR). ${NAME} of an earlier variable is plain
//     string substitution; SUFFIX defaults to ${EPOCHSECONDS}, the Unix
//     time, taken once.
//   - An empty value is empty, not "the default": WORKSTATION_PKGS=( )
//     builds no workstation layer, an empty KEYMAP sets no keymap.
//   - Lists can come from the environment: WORKSTATION_PKGS="vim tmux";
//     quote words holding spaces: LOCALES="'en_US.UTF-8 UTF-8'".
//   - CHROOT_PATH is empty by default: the build mounts the pool in a
//     fresh temporary directory, not on /mnt.
//   - CACHE_PATH=host:path is mounted read-only with sshfs on a temporary
//     directory (not over the host's cache) and unmounted at exit, also
//     after a failure or Ctrl-C.
//
// Exit status: 0 done, 1 the build failed (the last line on stderr is
// "paczfs: <error>"), 2 the command line or configuration is wrong.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"golang.org/x/term"

	"github.com/paczfs/paczfs/cleanup"
	"github.com/paczfs/paczfs/hooks"
	"github.com/paczfs/paczfs/image"
)

const (
	exitOK     = 0
	exitFailed = 1
	exitConfig = 2
)

func main() {
	// The first Ctrl-C cancels the build, which then cleans up; further
	// signals are absorbed until it has.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], hostEnv())
	stop()
	os.Exit(code)
}

// env is what run takes from the process, so tests can give their own.
type env struct {
	Lookup         func(string) (string, bool)
	Stdout, Stderr io.Writer
	TTY            bool // Stderr is a terminal: draw progress bars
	Width          int  // its width in columns
	Now            time.Time
	ReadFile       func(string) ([]byte, error)
}

func hostEnv() env {
	e := env{Lookup: os.LookupEnv, Stdout: os.Stdout, Stderr: os.Stderr, Now: time.Now(), ReadFile: os.ReadFile}
	fd := int(os.Stderr.Fd())
	if term.IsTerminal(fd) {
		e.TTY = true
		if w, _, err := term.GetSize(fd); err == nil {
			e.Width = w
		}
	}
	return e
}

type options struct {
	configFile  string
	printConfig bool
	profile     string
	dryRun      bool
	keep        bool
	verbose     bool
	json        bool
	version     bool
	recover     bool
}

// flags defines the options; -h prints them from these definitions (the
// first `word` of a usage names the option's argument, as flag does).
func flags(o *options) *flag.FlagSet {
	fs := flag.NewFlagSet("paczfs", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&o.configFile, "c", "", "load a configuration `FILE` (parsed, never executed)")
	fs.BoolVar(&o.printConfig, "C", false, "print the effective configuration in the -c format, exit")
	fs.StringVar(&o.profile, "profile", "", "arch (the default), or a `NAME`.json file: an image configuration as JSON")
	fs.BoolVar(&o.dryRun, "dry-run", false, "print the partitions, pool and dataset commands, packages with versions and sizes, boot environments and outputs; write nothing")
	fs.BoolVar(&o.keep, "keep", false, "keep the partial image and outputs when the build fails")
	fs.BoolVar(&o.recover, "recover", false, "release what builds that died on this host left (their loop devices, pools, mounts, processes, partial images; never a running build's), then exit. Every build does this first")
	fs.BoolVar(&o.verbose, "v", false, "verbose: debug logs on stderr, progress as plain lines")
	fs.BoolVar(&o.json, "json", false, "print the result as JSON on stdout (the summary on stderr)")
	fs.BoolVar(&o.version, "V", false, "print the version")
	return fs
}

func parseFlags(args []string) (options, error) {
	var o options
	fs := flags(&o)
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return o, nil
}

func run(ctx context.Context, args []string, e env) int {
	o, err := parseFlags(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		usage(e.Stdout)
		return exitOK
	case err != nil:
		fmt.Fprintf(e.Stderr, "paczfs: %v (-h lists the options)\n", err)
		return exitConfig
	case o.version:
		fmt.Fprintln(e.Stdout, "paczfs", image.Version)
		return exitOK
	case o.recover:
		return recoverBuilds(ctx, e)
	}
	s, err := loadSettings(o, e)
	if err != nil {
		fmt.Fprintln(e.Stderr, "paczfs: "+oneLine(err))
		return exitConfig
	}
	if w := s.versionWarning(); w != "" {
		fmt.Fprintln(e.Stderr, "paczfs: warning: "+w)
	}
	if o.printConfig {
		if err := s.print(e.Stdout); err != nil {
			fmt.Fprintln(e.Stderr, "paczfs: "+oneLine(err))
			return exitFailed
		}
		return exitOK
	}

	log := slog.New(slog.DiscardHandler)
	if o.verbose {
		log = slog.New(slog.NewTextHandler(e.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	for _, v := range variables {
		if from := s.from(v.Name); from != "default" {
			log.Debug("setting", "name", v.Name, "value", s.raw[v.Name].String(), "from", from)
		}
	}
	rep := newReporter(e.Stderr, e.TTY, o.verbose, e.Width)
	var stack cleanup.Stack
	stack.Logger = log
	code, err := build(ctx, o, s, e, log, rep, &stack)
	// The release actions (the sshfs cache) run after the build has
	// released its own; their failures join the build's error.
	if cerr := stack.Unwind(ctx); cerr != nil {
		err = errors.Join(err, cerr)
		if code == exitOK {
			code = exitFailed
		}
	}
	rep.finish()
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("interrupted: %w", err)
		}
		fmt.Fprintln(e.Stderr, "paczfs: "+oneLine(err))
	}
	return code
}

// loadSettings reads the -c file and the environment.
func loadSettings(o options, e env) (*settings, error) {
	l := loader{Lookup: e.Lookup, Profile: o.profile, Now: e.Now}
	if o.configFile != "" {
		data, err := e.ReadFile(o.configFile)
		if err != nil {
			return nil, fmt.Errorf("-c: %w", err)
		}
		if l.File, err = parseConfig(o.configFile, data); err != nil {
			return nil, err
		}
	}
	return l.load()
}

// build checks the configuration, then plans (--dry-run) or builds.
// Release actions of its own go on stack.
func build(ctx context.Context, o options, s *settings, e env, log *slog.Logger, rep *reporter, stack *cleanup.Stack) (int, error) {
	cfg, err := s.config(e.ReadFile)
	if err != nil {
		return exitConfig, err
	}
	scripts, err := scanHooks(s.str("HOOKS_DIR"))
	if err != nil {
		return exitConfig, err
	}
	// The build's commands start with a fixed umask and environment,
	// whatever this shell's (hooks.BuildRunner): nothing of it reaches
	// the image. The sshfs mount of a remote cache is the caller's own
	// business and keeps this environment (SSH_AUTH_SOCK, ~/.ssh).
	runner := hooks.BuildRunner(log)
	userRunner := &hooks.ExecRunner{Logger: log}
	var cache *sshfsCache
	if remote, ok := s.remoteCache(); ok && !o.dryRun {
		// A dry run resolves packages in a scratch cache: no mount.
		if cache, err = newSSHFSCache(remote, stack.Push); err != nil {
			return exitFailed, fmt.Errorf("CACHE_PATH: %w", err)
		}
		cfg.Pacman.CacheDirs = cache.CacheDirs()
	}
	// A dry run works on any host: what would stop a build here is
	// printed as warnings instead.
	b, err := image.New(cfg, image.WithLogger(log), image.WithRunner(runner), image.WithHooks(asHooks(scripts)...),
		image.WithKeepOnFailure(o.keep), image.WithProgress(rep.handle), image.WithHostChecks(!o.dryRun))
	if ce := (*image.ConfigError)(nil); errors.As(err, &ce) {
		printProblems(e.Stderr, ce)
		return exitConfig, nil
	}
	if err != nil {
		return exitFailed, err
	}
	if o.dryRun {
		for _, p := range b.HostProblems() {
			fmt.Fprintf(e.Stderr, "paczfs: warning: a build on this host would fail: %v\n", p)
		}
		plan, err := b.Plan(ctx)
		if err != nil {
			return exitFailed, err
		}
		rep.finish()
		printPlan(e.Stdout, s, cfg, plan, scripts)
		return exitOK, nil
	}
	if cache != nil {
		if err := cache.mount(ctx, userRunner, stack.Push); err != nil {
			return exitFailed, err
		}
	}
	res, err := b.Build(ctx)
	if err != nil {
		return exitFailed, err
	}
	rep.finish()
	if o.json {
		printSummary(e.Stderr, res)
		enc := json.NewEncoder(e.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return exitFailed, err
		}
		return exitOK, nil
	}
	printSummary(e.Stdout, res)
	return exitOK, nil
}

// oneLine makes an error one line: joined errors and command output
// carry newlines.
func oneLine(err error) string {
	var parts []string
	for _, l := range strings.Split(err.Error(), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			parts = append(parts, l)
		}
	}
	return strings.Join(parts, "; ")
}

func usage(w io.Writer) {
	fmt.Fprint(w, `Usage: go run ./examples/basic [options]

Builds a bootable Arch Linux disk image with a ZFS root (as root). The
configuration comes from a -c file first, then the environment, then the
profile's defaults; -C prints it.

Options:
`)
	fs := flags(&options{})
	fs.VisitAll(func(f *flag.Flag) {
		arg, help := flag.UnquoteUsage(f)
		name := "-" + f.Name
		if len(f.Name) > 1 {
			name = "-" + name
		}
		if _, isBool := f.Value.(interface{ IsBoolFlag() bool }); !isBool {
			name += " " + arg
		}
		fmt.Fprintf(w, "  %-16s %s", name, strings.TrimPrefix(wrap(help, strings.Repeat(" ", 19), 78), strings.Repeat(" ", 19)))
	})
	fmt.Fprint(w, `  -h               this help

Variables, in evaluation order (a value may use ${NAME} of a variable above
it, and ${EPOCHSECONDS}, the Unix time of this run):
`)
	for _, v := range variables {
		kind := ""
		if v.List {
			kind = " (list)"
		}
		fmt.Fprintf(w, "  %s%s\n%s", v.Name, kind, wrap(v.Help, "      ", 78))
	}
	fmt.Fprint(w, `
In a file: NAME='value', NAME="value", NAME=( 'a' 'b' ), # comments. In the
environment, lists are whitespace-separated words, quoted as in a file when a
word holds spaces: LOCALES="'en_US.UTF-8 UTF-8'". An empty value is empty,
not the default: WORKSTATION_PKGS= builds no workstation layer. Beware
that shells and containers may export HOSTNAME; --dry-run lists where each
setting came from.

Exit status: 0 done, 1 the build failed, 2 the configuration is wrong.
`)
}

// wrap fills text into lines of at most width columns, each indented.
func wrap(text, indent string, width int) string {
	var b strings.Builder
	line := indent
	for _, word := range strings.Fields(text) {
		if len(line) > len(indent) && len(line)+1+len(word) > width {
			b.WriteString(line + "\n")
			line = indent
		}
		if len(line) > len(indent) {
			line += " "
		}
		line += word
	}
	return b.String() + line + "\n"
}

// recoverBuilds is --recover: release what builds that died on this host
// left (image.Recover: only theirs, never a running build's or yours).
func recoverBuilds(ctx context.Context, e env) int {
	got, err := image.Recover(ctx)
	for _, r := range got {
		fmt.Fprintf(e.Stdout, "build %s (pid %d, started %s):\n", r.ID, r.PID, r.Started.Local().Format(time.DateTime))
		for _, what := range r.Released {
			fmt.Fprintf(e.Stdout, "  %s\n", what)
		}
	}
	if err != nil {
		fmt.Fprintln(e.Stderr, "paczfs: "+oneLine(err))
		return exitFailed
	}
	if len(got) == 0 {
		fmt.Fprintln(e.Stdout, "nothing to recover: no build died on this host")
	}
	return exitOK
}

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/paczfs/paczfs/hooks"
	"github.com/paczfs/paczfs/internal/lab"
	"github.com/paczfs/paczfs/internal/labrepo"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: lab build | lab repo | lab demo | lab run [-keep] [-repo] -- CMD [ARGS...] | lab test [-repo] [-run RE] [-bench RE] PKG...")
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	l := &lab.Lab{CacheDir: lab.DefaultCacheDir(), Log: logger, Progress: stderr}
	src, _ := os.Getwd()
	fail := func(err error) int {
		var ee *lab.ExitError
		if errors.As(err, &ee) {
			return ee.Code
		}
		fmt.Fprintln(stderr, "lab:", err)
		return 1
	}
	switch args[0] {
	case "build":
		start := time.Now()
		if l.Ready() {
			fmt.Fprintf(stderr, "lab: %s is up to date\n", l.Dir())
			return 0
		}
		if err := l.Build(ctx); err != nil {
			return fail(err)
		}
		fmt.Fprintf(stderr, "lab: built %s in %s\n", l.Dir(), time.Since(start).Round(time.Second))
		return 0
	case "demo":
		return exitCode(fail, demo(ctx, l, src, stdout, stderr))
	case "repo":
		start := time.Now()
		b := &labrepo.Builder{Lab: l, Progress: stderr}
		repo, err := b.Ensure(ctx)
		if err != nil {
			return fail(err)
		}
		fmt.Fprintf(stderr, "lab: repository %s (key %s, kernel %s) ready in %s\n", repo.Dir, repo.Fingerprint, repo.Kernel, time.Since(start).Round(time.Second))
		return 0
	case "run":
		fs := flag.NewFlagSet("run", flag.ContinueOnError)
		keep := fs.Bool("keep", false, "keep the run directory")
		withRepo := fs.Bool("repo", false, "share the lab package repository at /shares/labrepo (building it if needed)")
		if err := fs.Parse(args[1:]); err != nil {
			return 2
		}
		if fs.NArg() == 0 {
			usage(stderr)
			return 2
		}
		if err := l.Ensure(ctx); err != nil {
			return fail(err)
		}
		o := lab.RunOptions{Args: fs.Args(), Src: src, Stdout: stdout, Keep: *keep}
		if *withRepo {
			var err error
			if o.Shares, o.Env, err = shareRepo(ctx, l, stderr); err != nil {
				return fail(err)
			}
		}
		return exitCode(fail, l.Run(ctx, o))
	case "test":
		fs := flag.NewFlagSet("test", flag.ContinueOnError)
		runRE := fs.String("run", "^TestLab", "run only tests matching this regexp (the host runs the others)")
		skipRE := fs.String("skip", "", "skip tests matching this regexp")
		verbose := fs.Bool("v", true, "verbose test output")
		withRepo := fs.Bool("repo", false, "build (or reuse) the lab package repository and share it at /shares/labrepo")
		bench := fs.String("bench", "", "run benchmarks matching this regexp (and no tests)")
		outDir := fs.String("out", "", "share this host directory read-write at /shares/out (PACZFS_OUT) for files the tests produce")
		count := fs.Int("count", 1, "run each test this many times (to chase rare failures)")
		timeout := fs.Duration("timeout", 30*time.Minute, "per-package test binary timeout; a minute before it, the guest's process tree and kernel stacks are printed")
		if err := fs.Parse(args[1:]); err != nil {
			return 2
		}
		if fs.NArg() == 0 {
			usage(stderr)
			return 2
		}
		if err := l.Ensure(ctx); err != nil {
			return fail(err)
		}
		var shares map[string]string
		if *withRepo {
			var err error
			if shares, _, err = shareRepo(ctx, l, stderr); err != nil {
				return fail(err)
			}
		}
		if *outDir != "" {
			abs, err := filepath.Abs(*outDir)
			if err == nil {
				err = os.MkdirAll(abs, 0o755)
			}
			if err != nil {
				return fail(err)
			}
			if shares == nil {
				shares = map[string]string{}
			}
			shares["out"] = abs
		}
		if *bench != "" {
			*runRE = "^$"
		}
		return labTest(ctx, l, src, fs.Args(), testOptions{run: *runRE, skip: *skipRE, bench: *bench, verbose: *verbose, shares: shares, count: *count, timeout: *timeout}, stdout, stderr)
	}
	usage(stderr)
	return 2
}

// shareRepo builds (or reuses) the lab repository and returns the share
// and environment that put it at /shares/labrepo in the VM.
func shareRepo(ctx context.Context, l *lab.Lab, progress io.Writer) (map[string]string, []string, error) {
	repo, err := (&labrepo.Builder{Lab: l, Progress: progress}).Ensure(ctx)
	if err != nil {
		return nil, nil, err
	}
	return map[string]string{"labrepo": filepath.Dir(repo.Dir)}, []string{"PACZFS_LABREPO=/shares/labrepo"}, nil
}

func exitCode(fail func(error) int, err error) int {
	if err == nil {
		return 0
	}
	return fail(err)
}

// labTest builds the packages' test binaries against the lab's libraries,
// runs them all in one VM and prints a go-test-like summary, ending with
// "lab: N passed, M failed".
type testOptions struct {
	run, skip, bench string
	verbose          bool
	shares           map[string]string
	count            int
	timeout          time.Duration
}

// hangDump prints what every guest process is waiting on: the Go test
// binary's own timeout only shows goroutines, not the children libalpm or
// gpgme forked, nor where in the kernel they sleep.
const hangDump = `stack_scan() {
	p=$1
	set -- $(cat /proc/$p/syscall 2>/dev/null)
	[ $# -ge 9 ] || return 0
	echo "  user stack of $p (syscall $1, futex $2, sp $8, pc $9): return-address candidates"
	awk -v a="$2" 'function hex(s,  i, v) { s = tolower(s); sub(/^0x/, "", s); v = 0
		for (i = 1; i <= length(s); i++) v = v * 16 + index("0123456789abcdef", substr(s, i, 1)) - 1; return v }
		{ split($1, r, "-"); if (hex(a) >= hex(r[1]) && hex(a) < hex(r[2])) print "  futex word in mapping: " $0 }' /proc/$p/maps
	{ echo "$9"; dd if=/proc/$p/mem bs=4096 iflag=skip_bytes,count_bytes skip=$(($8)) count=16384 2>/dev/null | od -A n -t x8 -v | tr -s ' ' '\n' | grep .; } |
	awk -v maps=/proc/$p/maps 'function hex(s,  i, v) { s = tolower(s); sub(/^0x/, "", s); v = 0
		for (i = 1; i <= length(s); i++) v = v * 16 + index("0123456789abcdef", substr(s, i, 1)) - 1; return v }
	BEGIN { while ((getline l < maps) > 0) { split(l, f, " "); if (f[2] !~ /x/) continue
		split(f[1], r, "-"); n++; S[n] = hex(r[1]); E[n] = hex(r[2]); O[n] = hex(f[3]); P[n] = f[6] } }
	{ a = hex($1); for (i = 1; i <= n; i++) if (a >= S[i] && a < E[i]) { print P[i], a - S[i] + O[i], $1; break } }' |
	head -40 | while read -r file off addr; do
		sym=$(nm -D --defined-only "$file" 2>/dev/null | awk -v off="$off" 'function hex(s,  i, v) { s = tolower(s); v = 0
			for (i = 1; i <= length(s); i++) v = v * 16 + index("0123456789abcdef", substr(s, i, 1)) - 1; return v }
			$2 ~ /^[TtWw]$/ { v = hex($1); if (v <= off && v > best) { best = v; name = $3 } } END { if (name != "") printf "%s+%d", name, off - best }')
		[ -n "$sym" ] || sym=$(addr2line -f -e "$file" "0x$addr" 2>/dev/null | head -1)
		echo "    $addr ${file##*/}+$off $sym"
	done
}
hang_dump() {
	echo "=== lab: process tree at $(date +%T) (test binary about to time out)"
	ps -eo pid,ppid,stat,wchan:28,etime,args --forest | grep -v ' \\_ \[\| \[' 
	for p in /proc/[0-9]*; do
		[ -r "$p/stack" ] || continue
		cmd=$(tr '\0' ' ' < "$p/cmdline" 2>/dev/null | cut -c1-120)
		[ -n "$cmd" ] || continue
		echo "--- pid ${p#/proc/} $cmd"
		cat "$p/stack" 2>/dev/null | head -12
		for fd in "$p"/fd/*; do printf '  %s -> %s\n' "${fd##*/}" "$(readlink "$fd")"; done 2>/dev/null | head -24
		case "$(cat "$p/wchan" 2>/dev/null)" in *futex*) stack_scan "${p#/proc/}" ;; esac
	done
	echo "=== lab: end of process dump"
}
`

func labTest(ctx context.Context, l *lab.Lab, src string, pkgs []string, o testOptions, stdout, stderr io.Writer) int {
	out, err := os.MkdirTemp("", "paczfs-labtest-")
	if err != nil {
		fmt.Fprintln(stderr, "lab:", err)
		return 1
	}
	defer os.RemoveAll(out)
	bins, err := l.BuildTests(ctx, src, out, "lab", pkgs)
	if err != nil {
		fmt.Fprintln(stderr, "lab:", err)
		return 1
	}
	files := map[string]string{}
	// The device-side tool every image carries (image.Config.Manage.Tool).
	tool, err := buildTool(ctx, src, out)
	if err != nil {
		fmt.Fprintln(stderr, "lab:", err)
		return 1
	}
	files["paczfs-bootenv"] = tool
	// A registry for the OCI release tests (make puts Debian's binary in
	// the cache and names it in PACZFS_REGISTRY).
	registry := os.Getenv("PACZFS_REGISTRY")
	if registry == "" {
		// Where make puts it, else an installed one.
		cached := filepath.Join(lab.DefaultCacheDir(), "tools", "docker-registry")
		if _, err := os.Stat(cached); err == nil {
			registry = cached
		} else if p, err := exec.LookPath("docker-registry"); err == nil {
			registry = p
		}
	}
	if registry != "" {
		files["docker-registry"] = registry
	}
	var script strings.Builder
	script.WriteString(hangDump)
	script.WriteString("rc=0\n")
	if o.timeout <= 2*time.Minute {
		o.timeout = 2 * time.Minute
	}
	for _, p := range pkgs {
		name := filepath.Base(bins[p])
		files[name] = bins[p]
		// The binary's own timeout comes first and dumps every goroutine.
		args := []string{"/lab/" + name, "-test.timeout=" + o.timeout.String()}
		if o.count > 1 {
			args = append(args, "-test.count", fmt.Sprint(o.count))
		}
		if o.verbose {
			args = append(args, "-test.v")
		}
		if o.run != "" {
			args = append(args, "-test.run", o.run)
		}
		if o.skip != "" {
			args = append(args, "-test.skip", o.skip)
		}
		if o.bench != "" {
			args = append(args, "-test.bench", o.bench, "-test.benchtime", "1x")
		}
		dir := strings.TrimPrefix(filepath.Clean(p), "./")
		fmt.Fprintf(&script, "( sleep %d; hang_dump ) & dumper=$!\n", int((o.timeout - time.Minute).Seconds()))
		fmt.Fprintf(&script, "start=$(date +%%s); ( cd /src/%s && %s ); s=$?; t=$(( $(date +%%s) - start ))\n", dir, hooks.QuoteArgs(args))
		script.WriteString("kill $dumper 2>/dev/null\n")
		fmt.Fprintf(&script, "if [ $s = 0 ]; then echo \"ok  \t%s\t(lab) ${t}s\"; else echo \"FAIL\t%s\t(lab) ${t}s\"; rc=1; fi\n", p, p)
	}
	script.WriteString("exit $rc\n")
	scriptPath := filepath.Join(out, "tests.sh")
	if err := os.WriteFile(scriptPath, []byte(script.String()), 0o755); err != nil {
		fmt.Fprintln(stderr, "lab:", err)
		return 1
	}
	files["tests.sh"] = scriptPath
	counter := &testCounter{w: stdout}
	start := time.Now()
	env := []string{"PACZFS_REQUIRE_LAB=1", "PACZFS_BOOTENV_TOOL=/lab/paczfs-bootenv"}
	if registry != "" {
		env = append(env, "PACZFS_REGISTRY=/lab/docker-registry")
	}
	if _, ok := o.shares["labrepo"]; ok {
		env = append(env, "PACZFS_LABREPO=/shares/labrepo")
	}
	if _, ok := o.shares["out"]; ok {
		env = append(env, "PACZFS_OUT=/shares/out")
	}
	// How many runs each side of a comparing benchmark makes (default
	// three): one, to try a benchmark's code.
	if v := os.Getenv("PACZFS_BENCH_RUNS"); v != "" {
		env = append(env, "PACZFS_BENCH_RUNS="+v)
	}
	// The VM may run every package's binary to its timeout, plus boot.
	vmTimeout := time.Duration(len(pkgs))*o.timeout + 5*time.Minute
	err = l.Run(ctx, lab.RunOptions{Args: []string{"/bin/sh", "/lab/tests.sh"}, Src: src, Stdout: counter, Files: files,
		Env: env, Shares: o.shares, Writable: map[string]bool{"out": true}, Timeout: vmTimeout})
	counter.flush()
	fmt.Fprintf(stdout, "lab tests took %s\n", time.Since(start).Round(time.Second))
	// The last line is the plain summary CI reads.
	fmt.Fprintf(stdout, "lab: %d passed, %d failed\n", counter.passed, counter.failed)
	if err != nil {
		var ee *lab.ExitError
		if !errors.As(err, &ee) {
			fmt.Fprintln(stderr, "lab:", err)
		}
		return 1
	}
	if counter.failed > 0 || (counter.passed == 0 && o.bench == "") {
		if counter.passed == 0 {
			fmt.Fprintln(stderr, "lab: no test ran")
		}
		return 1
	}
	return 0
}

var topLevel = regexp.MustCompile(`^--- (PASS|FAIL): `)

// testCounter passes output through and counts top-level test results.
type testCounter struct {
	w              io.Writer
	line           []byte
	passed, failed int
}

func (c *testCounter) Write(p []byte) (int, error) {
	for _, b := range p {
		c.line = append(c.line, b)
		if b == '\n' {
			c.count()
		}
	}
	return c.w.Write(p)
}

func (c *testCounter) count() {
	line := strings.TrimRight(string(c.line), "\r\n")
	if m := topLevel.FindStringSubmatch(line); m != nil {
		if m[1] == "PASS" {
			c.passed++
		} else {
			c.failed++
		}
	}
	c.line = c.line[:0]
}

func (c *testCounter) flush() {
	if len(c.line) > 0 {
		c.count()
	}
}

// buildTool builds examples/bootenv without cgo (it runs in any target)
// into dir, on the host.
func buildTool(ctx context.Context, src, dir string) (string, error) {
	out := filepath.Join(dir, "paczfs-bootenv")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", out, "./examples/bootenv")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build the device tool: %w: %s", err, b)
	}
	return out, nil
}

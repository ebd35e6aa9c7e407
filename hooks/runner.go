package hooks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/paczfs/paczfs/internal/osthread"
)

// Cmd is one invocation of an external program.
type Cmd struct {
	// Args is the program name followed by its arguments. Args[0] is looked
	// up in PATH when it has no slash.
	Args []string
	// Dir is the working directory; empty means the caller's.
	Dir string
	// Env is added to the runner's environment (KEY=VALUE).
	Env []string
	// Stdin, when set, is fed to the program.
	Stdin io.Reader
	// Stdout, when set, receives the program's standard output as it is
	// written (for example a zfs send stream). When nil, Run returns it.
	Stdout io.Writer
}

// String quotes the command line the way a shell user would type it.
func (c Cmd) String() string { return QuoteArgs(c.Args) }

// Runner runs external commands. Every command paczfs runs goes through one,
// so a caller can log, sandbox (chroot, nsenter, ssh) or fake them.
//
// Run must honour ctx: when it is cancelled the program is stopped and Run
// returns an error that wraps ctx.Err(). When the program exits non-zero,
// Run returns a *CmdError. The returned bytes are the standard output when
// Cmd.Stdout is nil, and nil otherwise.
type Runner interface {
	Run(ctx context.Context, cmd Cmd) ([]byte, error)
}

// CmdError reports a command that failed: its argv, exit code and the tail
// of what it wrote to standard error.
type CmdError struct {
	Args     []string
	ExitCode int    // -1 when the program did not exit normally
	Stderr   string // at most StderrTail bytes, the end of stderr
	Err      error  // the underlying error (*exec.ExitError, context.Canceled...)
}

// StderrTail is how much of a failed command's standard error a CmdError keeps.
const StderrTail = 4096

func (e *CmdError) Error() string {
	msg := QuoteArgs(e.Args) + ": " + e.Err.Error()
	if s := strings.TrimSpace(e.Stderr); s != "" {
		msg += ": " + s
	}
	return msg
}

func (e *CmdError) Unwrap() error { return e.Err }

var _ error = (*CmdError)(nil)

// ExecRunner runs commands on the host with os/exec.
// The zero value is usable and logs nothing.
type ExecRunner struct {
	// Logger receives each command line at debug level and its outcome.
	Logger *slog.Logger
	// Grace is how long a cancelled command gets between SIGTERM and SIGKILL.
	// Zero means 10 seconds: zfs and zpool must be allowed to finish a txg.
	Grace time.Duration
	// Umask, when set, is the file mode creation mask every command starts
	// with. The process's own umask is never changed: each command is
	// started from an OS thread with a filesystem context of its own,
	// which ends once the command has started. Nil: the process's umask.
	Umask *fs.FileMode
	// Environ, when not nil, is the environment every command starts with
	// instead of the process's; Cmd.Env is added to it.
	Environ []string
}

// BuildUmask is the umask of every command a build runs (see BuildRunner):
// what zfs, gpg, qemu-img and the target's tools create gets 0755 and
// 0644 at most, whatever the caller's umask.
const BuildUmask fs.FileMode = 0o022

// BuildRunner returns the runner image builds use by default: an
// ExecRunner whose commands start with BuildUmask and BuildEnviron, so
// that nothing of the caller's shell (umask, locale, time zone, HOME,
// PATH order) reaches what they make.
func BuildRunner(log *slog.Logger) *ExecRunner {
	mask := BuildUmask
	return &ExecRunner{Logger: log, Umask: &mask, Environ: BuildEnviron(os.Getenv("PATH"), os.Getenv("TMPDIR"))}
}

// SystemPath is the search path of build commands, before any directory
// of the caller's PATH: the host's own tools win whatever the caller's
// order (the same list chrooted commands get, see internal/chroot).
const SystemPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// BuildEnviron is the environment of build commands on the host:
//
//	PATH      SystemPath, then the directories of callerPath not in it
//	LANG, LC_ALL=C   messages and sorting as the tools' authors wrote them
//	TZ=UTC
//	HOME=/root       the build runs as root; no tool reads the caller's files
//	TMPDIR    the caller's, when set (where temporary files go, not what they hold)
//
// Nothing else of the caller's environment is passed on. Hooks get their
// PACZFS_* variables on top (see Script).
func BuildEnviron(callerPath, tmpdir string) []string {
	path := SystemPath
	seen := map[string]bool{}
	for _, d := range strings.Split(SystemPath, ":") {
		seen[d] = true
	}
	for _, d := range strings.Split(callerPath, ":") {
		if d != "" && !seen[d] && strings.HasPrefix(d, "/") {
			seen[d] = true
			path += ":" + d
		}
	}
	env := []string{"PATH=" + path, "LANG=C", "LC_ALL=C", "TZ=UTC", "HOME=/root"}
	if tmpdir != "" {
		env = append(env, "TMPDIR="+tmpdir)
	}
	return env
}

var _ Runner = (*ExecRunner)(nil)

// Run implements Runner.
func (r *ExecRunner) Run(ctx context.Context, c Cmd) ([]byte, error) {
	if len(c.Args) == 0 {
		return nil, errors.New("run: empty command")
	}
	log := r.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	fail := func(code int, stderr string, err error) ([]byte, error) {
		return nil, &CmdError{Args: c.Args, ExitCode: code, Stderr: stderr, Err: err}
	}
	if err := ctx.Err(); err != nil {
		return fail(-1, "", err)
	}
	cmd := exec.CommandContext(ctx, c.Args[0], c.Args[1:]...)
	cmd.Dir = c.Dir
	if r.Environ != nil {
		cmd.Env = append(slices.Clone(r.Environ), c.Env...)
		// exec looked Args[0] up in the process's PATH: look again in ours.
		if !strings.Contains(c.Args[0], "/") {
			if p, err := lookPath(c.Args[0], r.Environ); err == nil {
				cmd.Path, cmd.Err = p, nil
			} else {
				cmd.Err = err
			}
		}
	} else if len(c.Env) > 0 {
		cmd.Env = append(cmd.Environ(), c.Env...)
	}
	// Each command leads a process group of its own, and cancellation
	// signals the group: a chrooted mkinitcpio or a scriptlet's children
	// must not outlive it and keep the target busy. (Ctrl-C at a terminal
	// then reaches only paczfs, which cancels in order.)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = r.Grace
	if cmd.WaitDelay == 0 {
		cmd.WaitDelay = 10 * time.Second
	}
	stderr := &tailBuffer{max: StderrTail}
	cmd.Stderr = stderr

	// Streams that are not files are copied by goroutines of ours rather
	// than os/exec's: its Wait waits for its copiers, so a consumer that
	// stops reading (or a producer that stops writing) would hang a
	// cancelled command forever.
	var stdout bytes.Buffer
	var childEnds, ourEnds []*os.File
	var copiers []func()
	var stdoutDone chan error
	switch w := c.Stdout.(type) {
	case nil:
		cmd.Stdout = &stdout
	case *os.File:
		cmd.Stdout = w
	default:
		pr, pw, err := os.Pipe()
		if err != nil {
			return fail(-1, "", err)
		}
		cmd.Stdout, childEnds, ourEnds = pw, append(childEnds, pw), append(ourEnds, pr)
		stdoutDone = make(chan error, 1)
		copiers = append(copiers, func() {
			_, err := io.Copy(w, pr)
			stdoutDone <- err
		})
	}
	switch rd := c.Stdin.(type) {
	case nil:
	case *os.File:
		cmd.Stdin = rd
	default:
		pr, pw, err := os.Pipe()
		if err != nil {
			return fail(-1, "", err)
		}
		cmd.Stdin, childEnds, ourEnds = pr, append(childEnds, pr), append(ourEnds, pw)
		copiers = append(copiers, func() {
			_, _ = io.Copy(pw, rd) // a program may exit before reading all its input
			pw.Close()
		})
	}
	closeAll := func(fs []*os.File) {
		for _, f := range fs {
			f.Close()
		}
	}

	start := time.Now()
	log.DebugContext(ctx, "run", "cmd", c.String())
	err := r.start(cmd)
	closeAll(childEnds)
	if err != nil {
		closeAll(ourEnds)
		return fail(-1, "", err)
	}
	for _, cp := range copiers {
		go cp()
	}
	err = cmd.Wait()
	if ctx.Err() != nil {
		// Whatever of the group survived SIGTERM and its leader's exit.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	if stdoutDone != nil {
		// Drain what the program wrote before it exited, unless cancelled:
		// then a stuck consumer must not keep us waiting.
		select {
		case cerr := <-stdoutDone:
			if err == nil && cerr != nil {
				err = fmt.Errorf("copy output: %w", cerr)
			}
		case <-ctx.Done():
		}
	}
	closeAll(ourEnds)
	took := time.Since(start)
	if err == nil && ctx.Err() != nil && stdoutDone != nil {
		err = ctx.Err()
	}
	if err != nil {
		code := -1
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.Exited() {
			code = ee.ExitCode()
		}
		if ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
			err = fmt.Errorf("%w (%w)", ctx.Err(), err)
		}
		log.DebugContext(ctx, "failed", "cmd", c.String(), "exit", code, "took", took, "stderr", stderr.String())
		return fail(code, stderr.String(), err)
	}
	log.DebugContext(ctx, "done", "cmd", c.String(), "took", took)
	if c.Stdout != nil {
		return nil, nil
	}
	return stdout.Bytes(), nil
}

// start starts cmd with the runner's umask, from a thread of its own so
// that the process's umask stays the caller's.
func (r *ExecRunner) start(cmd *exec.Cmd) error {
	if r.Umask == nil {
		return cmd.Start()
	}
	mask := int(r.Umask.Perm())
	return osthread.Run(unix.CLONE_FS, func() error {
		unix.Umask(mask)
		return cmd.Start()
	})
}

// lookPath finds file in the PATH of env, as exec.LookPath does in the
// process's.
func lookPath(file string, env []string) (string, error) {
	path := ""
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "PATH="); ok {
			path = v
		}
	}
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			continue
		}
		p := filepath.Join(dir, file)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
			return p, nil
		}
	}
	return "", &exec.Error{Name: file, Err: exec.ErrNotFound}
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	max int
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.max {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string { return string(t.buf) }

// QuoteArgs renders argv as a shell-readable line: words with spaces or
// shell metacharacters are single-quoted.
func QuoteArgs(args []string) string {
	var b strings.Builder
	for i, a := range args {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(quote(a))
	}
	return b.String()
}

func quote(s string) string {
	if s == "" {
		return "''"
	}
	if strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./=:,+@%^", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

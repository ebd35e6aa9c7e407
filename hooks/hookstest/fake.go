package hookstest

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/paczfs/paczfs/hooks"
)

// Response is what the fake answers to a matching command.
type Response struct {
	Stdout   string // returned, or written to Cmd.Stdout when set
	Stderr   string // copied into the *hooks.CmdError when ExitCode != 0
	ExitCode int    // non-zero makes Run fail with a *hooks.CmdError
	Err      error  // returned as is, wrapped in a *hooks.CmdError
}

type rule struct {
	prefix string
	resp   Response
	times  int // 0 = forever
}

// FakeRunner is a scriptable hooks.Runner. Rules match by prefix of the
// quoted command line; the most recently added matching rule wins. Commands
// with no rule succeed with empty output. It is safe for concurrent use.
type FakeRunner struct {
	mu    sync.Mutex
	rules []*rule
	calls []hooks.Cmd
	stdin []string
}

var _ hooks.Runner = (*FakeRunner)(nil)

// On makes commands starting with prefix answer resp.
func (f *FakeRunner) On(prefix string, resp Response) *FakeRunner {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rules = append(f.rules, &rule{prefix: prefix, resp: resp})
	return f
}

// Once is On for the next matching command only.
func (f *FakeRunner) Once(prefix string, resp Response) *FakeRunner {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rules = append(f.rules, &rule{prefix: prefix, resp: resp, times: 1})
	return f
}

// Run implements hooks.Runner.
func (f *FakeRunner) Run(ctx context.Context, c hooks.Cmd) ([]byte, error) {
	line := c.String()
	var in string
	if c.Stdin != nil {
		b, _ := io.ReadAll(c.Stdin)
		in = string(b)
	}
	f.mu.Lock()
	f.calls = append(f.calls, c)
	f.stdin = append(f.stdin, in)
	var resp Response
	for i := len(f.rules) - 1; i >= 0; i-- {
		r := f.rules[i]
		if strings.HasPrefix(line, r.prefix) {
			resp = r.resp
			if r.times == 1 {
				f.rules = append(f.rules[:i], f.rules[i+1:]...)
			}
			break
		}
	}
	f.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return nil, &hooks.CmdError{Args: c.Args, ExitCode: -1, Err: err}
	}
	if resp.Err != nil {
		return nil, &hooks.CmdError{Args: c.Args, ExitCode: -1, Stderr: resp.Stderr, Err: resp.Err}
	}
	if resp.ExitCode != 0 {
		return nil, &hooks.CmdError{Args: c.Args, ExitCode: resp.ExitCode, Stderr: resp.Stderr,
			Err: fmt.Errorf("exit status %d", resp.ExitCode)}
	}
	if c.Stdout != nil {
		_, err := io.WriteString(c.Stdout, resp.Stdout)
		return nil, err
	}
	return []byte(resp.Stdout), nil
}

// Calls returns the quoted command lines run so far, in order.
func (f *FakeRunner) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]string, len(f.calls))
	for i, c := range f.calls {
		out[i] = c.String()
	}
	return out
}

// Stdin returns what each call was fed on standard input, in call order.
func (f *FakeRunner) Stdin() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.stdin...)
}

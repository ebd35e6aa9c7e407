package cleanup

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// DefaultTimeout bounds each release action during Unwind.
const DefaultTimeout = 2 * time.Minute

// Stack holds release actions. The zero value is ready to use.
type Stack struct {
	mu      sync.Mutex
	actions []action
	// Logger, when set, records each action and its outcome.
	Logger *slog.Logger
	// Timeout per action; zero means DefaultTimeout.
	Timeout time.Duration
}

type action struct {
	name string
	fn   func(ctx context.Context) error
}

// Push registers a release action. name says what it releases, for
// errors and logs ("export pool zroot").
func (s *Stack) Push(name string, fn func(ctx context.Context) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.actions = append(s.actions, action{name, fn})
}

// Len returns the number of pending actions.
func (s *Stack) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.actions)
}

// Unwind runs every pending action, last pushed first, and empties the
// stack. ctx's values are kept but not its cancellation: cleanup must run
// after Ctrl-C. The result joins every failure, each naming its action.
func (s *Stack) Unwind(ctx context.Context) error {
	s.mu.Lock()
	actions := s.actions
	s.actions = nil
	s.mu.Unlock()
	timeout := s.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	base := context.WithoutCancel(ctx)
	var errs []error
	for i := len(actions) - 1; i >= 0; i-- {
		a := actions[i]
		actx, cancel := context.WithTimeout(base, timeout)
		err := safeCall(actx, a.fn)
		cancel()
		if s.Logger != nil {
			s.Logger.Debug("cleanup", "action", a.name, "err", err)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("cleanup %s: %w", a.name, err))
		}
	}
	return errors.Join(errs...)
}

func safeCall(ctx context.Context, fn func(context.Context) error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return fn(ctx)
}

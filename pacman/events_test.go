package pacman

import (
	"log/slog"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/paczfs/paczfs/internal/alpm"
)

// libalpm's whole-transaction checks carry no package name; they become
// EventCheck, so a progress display can say what a long pause is.
func TestProgressCallbackReportsChecksAndInstalls(t *testing.T) {
	var got []Event
	s := &session{in: &Installer{log: slog.New(slog.DiscardHandler), emit: func(e Event) { got = append(got, e) }}}
	s.Progress(int(alpm.ProgressKeyring), "", 10, 104, 11)
	s.Progress(int(alpm.ProgressIntegrity), "", 40, 104, 42)
	s.Progress(int(alpm.ProgressAdd), "bash", 50, 104, 3)
	s.Progress(int(alpm.ProgressAdd), "", 50, 104, 3) // nothing to name: dropped
	assert.Equal(t, []Event{
		{Kind: EventCheck, Message: "checking keys in keyring", Percent: 10, Current: 11, Count: 104},
		{Kind: EventCheck, Message: "checking package integrity", Percent: 40, Current: 42, Count: 104},
		{Kind: EventInstall, Package: "bash", Percent: 50, Current: 3, Count: 104},
	}, got)
}

// Every WithEvents receiver gets every event: a caller's own receiver does
// not switch off another (image.Builder's progress).
func TestEventReceiversAdd(t *testing.T) {
	var a, b int
	in, err := New(ArchConfig(true), WithEvents(func(Event) { a++ }), WithEvents(func(Event) { b++ }), WithEvents(nil))
	require.NoError(t, err)
	in.emit(Event{Kind: EventLog})
	assert.Equal(t, 1, a)
	assert.Equal(t, 1, b)
}

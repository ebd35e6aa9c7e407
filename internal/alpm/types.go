package alpm

import (
	"errors"
	"fmt"
	"strings"
)

// ErrUnavailable: this build of paczfs has no libalpm (built with
// CGO_ENABLED=0, or without libalpm's headers). Rebuild with cgo and
// libalpm-dev (Debian) or pacman (Arch) installed.
var ErrUnavailable = errors.New("libalpm is not available in this build (needs cgo and libalpm)")

// Options configure a handle. Paths are absolute paths on the build host.
type Options struct {
	Root, DBPath      string
	CacheDirs         []string
	HookDirs          []string
	GPGDir, LogFile   string
	Architecture      string
	SigLevel          int
	LocalFileSigLevel int
	// RemoteFileSigLevel applies to packages installed from URLs.
	RemoteFileSigLevel int
	ParallelDownloads  int
	IgnorePkgs         []string
	NoExtract          []string
	CheckSpace         bool
	// DBExt is the sync databases' file name extension: "" for
	// ".db", ".files" for the databases with file lists (pacman -F).
	DBExt string
	// ChildEnv, when not nil, is the whole environment of every process
	// libalpm forks (scriptlets, hooks, gpg) from the thread that calls
	// Open, until Close, which must run on the same thread.
	ChildEnv []string
}

// EventType is libalpm's alpm_event_type_t.
type EventType int

// The event types paczfs reports.
const (
	EventTransactionStart      EventType = 9
	EventTransactionDone       EventType = 10
	EventPackageOperationStart EventType = 11
	EventPackageOperationDone  EventType = 12
	EventScriptletInfo         EventType = 17
	EventDBRetrieveStart       EventType = 18
	EventDBRetrieveDone        EventType = 19
	EventDBRetrieveFailed      EventType = 20
	EventPkgRetrieveStart      EventType = 21
	EventPkgRetrieveDone       EventType = 22
	EventPkgRetrieveFailed     EventType = 23
	EventHookStart             EventType = 34
	EventHookDone              EventType = 35
	EventHookRunStart          EventType = 36
	EventHookRunDone           EventType = 37
)

// ProgressKind is libalpm's alpm_progress_t. The per-package kinds
// (add, upgrade, downgrade, reinstall, remove) name a package; the check
// kinds run over the whole transaction and name none.
type ProgressKind int

// Progress kinds.
const (
	ProgressAdd ProgressKind = iota
	ProgressUpgrade
	ProgressDowngrade
	ProgressReinstall
	ProgressRemove
	ProgressConflicts
	ProgressDiskspace
	ProgressIntegrity
	ProgressLoad
	ProgressKeyring
)

// CheckPhase names a check kind as pacman prints it, "" for the
// per-package kinds.
func (k ProgressKind) CheckPhase() string {
	switch k {
	case ProgressConflicts:
		return "checking for file conflicts"
	case ProgressDiskspace:
		return "checking available disk space"
	case ProgressIntegrity:
		return "checking package integrity"
	case ProgressLoad:
		return "loading package files"
	case ProgressKeyring:
		return "checking keys in keyring"
	}
	return ""
}

// Event is a flattened alpm_event_t: A and B are the event's strings
// (package name and version, scriptlet line, hook name and description),
// N1 and N2 its numbers (operation; hook position and total; package
// count and total size).
type Event struct {
	Type   EventType
	A, B   string
	N1, N2 int64
}

// Log levels.
const (
	LogError   = 1
	LogWarning = 2
	LogDebug   = 4
	LogFunc    = 8
)

// Question types.
const (
	QuestionInstallIgnorePkg = 1 << 0
	QuestionReplacePkg       = 1 << 1
	QuestionConflictPkg      = 1 << 2
	QuestionCorruptedPkg     = 1 << 3
	QuestionRemovePkgs       = 1 << 4
	QuestionSelectProvider   = 1 << 5
	QuestionImportKey        = 1 << 6
)

// Callbacks receive what libalpm reports. They run on the handle's thread.
type Callbacks interface {
	Log(level int, msg string)
	Event(e Event)
	Progress(kind int, pkg string, percent, howmany, current int)
	Download(file string, event int, done, total int64)
	// Fetch downloads url into directory localpath, keeping its file name.
	// It returns 0 when downloaded, 1 when already up to date, -1 on error.
	Fetch(url, localpath string, force bool) int
	Question(kind int, what string)
}

// Error is a libalpm failure: the operation, libalpm's error code and
// message, and details (missing dependencies, conflicts, bad files).
type Error struct {
	Op      string
	Code    int
	Msg     string
	Details []string
}

func (e *Error) Error() string {
	s := fmt.Sprintf("%s: %s", e.Op, e.Msg)
	if len(e.Details) > 0 {
		s += ": " + strings.Join(e.Details, "; ")
	}
	return s
}

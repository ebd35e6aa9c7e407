package pacman

// EventKind says what an Event reports.
type EventKind string

// Event kinds, in the order a typical install emits them.
const (
	// EventDatabase: a sync database download (Repo, URL; Bytes when done).
	EventDatabase EventKind = "database"
	// EventDownloadStart, EventDownloadProgress, EventDownloadDone: one
	// package file (File, URL, Bytes of Total). Parallel downloads
	// interleave; Done carries the bytes actually transferred (0 when the
	// cache had it).
	EventDownloadStart    EventKind = "download-start"
	EventDownloadProgress EventKind = "download-progress"
	EventDownloadDone     EventKind = "download-done"
	// EventCheck: libalpm checks the whole transaction before installing
	// (Message names the phase as pacman does: "checking package
	// integrity", "loading package files"...; Percent, Current of Count).
	// Signature checks of a large set take a while; this says so.
	EventCheck EventKind = "check"
	// EventInstall: libalpm's progress installing Package (Percent), the
	// Current-th of Count.
	EventInstall EventKind = "install"
	// EventInstalled: Package at Version is installed.
	EventInstalled EventKind = "installed"
	// EventScriptlet: one line of a package scriptlet's output (Message).
	EventScriptlet EventKind = "scriptlet"
	// EventHook: a libalpm hook runs (Package is the hook's name, Message
	// its description, Current of Count).
	EventHook EventKind = "hook"
	// EventLog: a libalpm log line at Level "error" or "warning" (Message,
	// complete, never truncated).
	EventLog EventKind = "log"
)

// Event is a structured progress report. Handlers run synchronously on
// the installing goroutine or a download worker: keep them quick and safe
// for concurrent use.
type Event struct {
	Kind    EventKind
	Repo    string
	Package string
	Version string
	File    string
	URL     string
	Bytes   int64
	Total   int64
	Current int
	Count   int
	Percent int
	Level   string
	Message string
}

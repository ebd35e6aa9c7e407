//go:build !cgo || !linux

package alpm

// Available reports whether this build has libalpm.
const Available = false

// Version returns "" without libalpm.
func Version() string { return "" }

// Handle is unusable without libalpm.
type Handle struct{}

// Package is what libalpm knows of a package.
type Package struct {
	Name, Version, Repo, Filename string
	DownloadSize, InstalledSize   int64
	SHA256, Base64Sig             string
}

// Transaction flags.
const (
	TransNeeded       = 1 << 13
	TransNoScriptlet  = 1 << 10
	TransDownloadOnly = 1 << 9
)

// Open reports ErrUnavailable.
func Open(Options, Callbacks) (*Handle, error) { return nil, ErrUnavailable }

func (*Handle) SetSandbox(string) error                         { return ErrUnavailable }
func (*Handle) Close() error                                    { return nil }
func (*Handle) RegisterRepo(string, int, []string) error        { return ErrUnavailable }
func (*Handle) UpdateDBs(bool) error                            { return ErrUnavailable }
func (*Handle) Prepare([]string, int) ([]Package, error)        { return nil, ErrUnavailable }
func (*Handle) Commit() error                                   { return ErrUnavailable }
func (*Handle) Release()                                        {}
func (*Handle) Interrupt()                                      {}
func (*Handle) Installed() []Package                            { return nil }
func (*Handle) Files(string, string) ([]string, bool)           { return nil, false }
func (*Handle) PrepareUpgrade([]string, int) ([]Package, error) { return nil, ErrUnavailable }
func (*Handle) PrepareRemove([]string, int) ([]Package, error)  { return nil, ErrUnavailable }
func (*Handle) Local() []LocalPackage                           { return nil }
func (*Handle) Satisfier(string) string                         { return "" }
func (*Handle) GroupMembers(string) []string                    { return nil }
func (*Handle) SyncPackage(string) (Package, []string, bool)    { return Package{}, nil, false }

// LocalPackage is an installed package as a removal decision needs it.
type LocalPackage struct {
	Name     string
	Explicit bool
	Required bool
}

// TransRecurse: see the cgo build.
const TransRecurse = 1 << 5

// Error codes: without libalpm no error carries them.
const (
	ErrCodeHandleLock = -1 - iota
	ErrCodeTransAbort
	ErrCodePkgNotFound
	ErrCodePkgInvalid
	ErrCodePkgInvalidChecksum
	ErrCodePkgInvalidSig
	ErrCodeDBInvalidSig
	ErrCodeSigMissing
	ErrCodeSigInvalid
	ErrCodeUnsatisfiedDeps
	ErrCodeConflictingDeps
	ErrCodeFileConflicts
	ErrCodeRetrieve
	ErrCodeExternalDownload
)

package alpm

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

// libalpm initialises gpgme once per process, with the GPGDir of the
// first handle that checks a signature (signing.c, a static flag), and
// keeps that directory for every later handle. Left alone, a process
// that builds a second image would verify its signatures against the
// first image's keyring (or a deleted one).
//
// So every handle is given the same directory path, a symbolic link that
// is pointed at the keyring of the root being worked on; and since one
// path can point at one keyring at a time, handles run one at a time in a
// process. These two are the only process-wide state in paczfs, and they
// exist because libalpm's is.
var (
	gpgMu   sync.Mutex
	gpgOnce sync.Once
	gpgBase string
	gpgErr  error
)

// AcquireGPGDir takes the process-wide libalpm lock, points the stable
// GPGDir link at keyring, and returns the link's path for Options.GPGDir
// and the function that releases the lock. Hold it for the whole life of
// a Handle.
func AcquireGPGDir(keyring string) (link string, release func(), err error) {
	gpgOnce.Do(func() {
		gpgBase, gpgErr = os.MkdirTemp("", fmt.Sprintf("paczfs-alpm-%d-", os.Getpid()))
	})
	if gpgErr != nil {
		return "", nil, gpgErr
	}
	gpgMu.Lock()
	link = filepath.Join(gpgBase, "gnupg")
	tmp := link + ".new"
	os.Remove(tmp)
	if err := os.Symlink(keyring, tmp); err != nil {
		gpgMu.Unlock()
		return "", nil, err
	}
	if err := os.Rename(tmp, link); err != nil {
		gpgMu.Unlock()
		return "", nil, err
	}
	var once sync.Once
	return link, func() { once.Do(gpgMu.Unlock) }, nil
}

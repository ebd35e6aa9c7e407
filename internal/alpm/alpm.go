//go:build cgo && linux

package alpm

/*
#cgo CFLAGS: -D_FILE_OFFSET_BITS=64 -D_GNU_SOURCE
#cgo LDFLAGS: -lalpm
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <stdarg.h>
#include <unistd.h>
#include <signal.h>
#include <sys/wait.h>
#include <pthread.h>
#include <alpm.h>
#include <alpm_list.h>

// Only typedef names are used (alpm_handle_t, alpm_list_t...), so this
// compiles against libalpm 13 (Debian 12) as well as 14 and 15.
// pacman 7 (libalpm 15) functions are weak: NULL on older libraries.
int alpm_option_set_sandboxuser(alpm_handle_t *handle, const char *sandboxuser) __attribute__((weak));
int alpm_option_set_disable_sandbox(alpm_handle_t *handle, unsigned short disable_sandbox) __attribute__((weak));

// The Go constants in types.go mirror these enums; a libalpm that
// renumbers them fails here, at compile time.
_Static_assert(ALPM_EVENT_SCRIPTLET_INFO == 17 && ALPM_EVENT_PKG_RETRIEVE_FAILED == 23 && ALPM_EVENT_HOOK_RUN_DONE == 37, "alpm_event_type_t changed: update types.go");
_Static_assert(ALPM_PROGRESS_ADD_START == 0 && ALPM_PROGRESS_CONFLICTS_START == 5 && ALPM_PROGRESS_KEYRING_START == 9, "alpm_progress_t changed: update types.go");

extern void goLog(uintptr_t ctx, int level, char *msg);
extern void goEvent(uintptr_t ctx, int type, char *a, char *b, long long n1, long long n2);
extern void goProgress(uintptr_t ctx, int kind, char *pkg, int percent, long long howmany, long long current);
extern void goDownload(uintptr_t ctx, char *file, int event, long long downloaded, long long total);
extern int goFetch(uintptr_t ctx, char *url, char *localpath, int force);
extern void goQuestion(uintptr_t ctx, int type, char *what);

// paczfs_pid is the process that set the callbacks. libalpm 15 forks to
// run hooks and scriptlets, and the child frees the handle before exec,
// which logs ("freeing package cache..."). A forked child of a Go program
// must never run Go code: a callback there waits forever on the runtime's
// locks, held by threads the child does not have (seen as a rare hang of
// alpm_trans_commit). So every callback returns at once in any process but
// the one that set it.
static pid_t paczfs_pid;
#define PACZFS_IN_CHILD() (getpid() != paczfs_pid)

// The log callback formats with vasprintf: no truncation of long lines.
static void paczfs_log(void *ctx, alpm_loglevel_t level, const char *fmt, va_list args) {
	if (PACZFS_IN_CHILD()) return;
	char *msg = NULL;
	if (vasprintf(&msg, fmt, args) < 0) return;
	goLog((uintptr_t)ctx, (int)level, msg);
	free(msg);
}

static void paczfs_event(void *ctx, alpm_event_t *e) {
	if (PACZFS_IN_CHILD()) return;
	uintptr_t c = (uintptr_t)ctx;
	switch (e->type) {
	case ALPM_EVENT_SCRIPTLET_INFO:
		goEvent(c, e->type, (char *)e->scriptlet_info.line, NULL, 0, 0);
		break;
	case ALPM_EVENT_PACKAGE_OPERATION_START:
	case ALPM_EVENT_PACKAGE_OPERATION_DONE: {
		alpm_pkg_t *p = e->package_operation.newpkg ? e->package_operation.newpkg : e->package_operation.oldpkg;
		goEvent(c, e->type, p ? (char *)alpm_pkg_get_name(p) : NULL, p ? (char *)alpm_pkg_get_version(p) : NULL, e->package_operation.operation, 0);
		break;
	}
	case ALPM_EVENT_HOOK_RUN_START:
	case ALPM_EVENT_HOOK_RUN_DONE:
		goEvent(c, e->type, (char *)e->hook_run.name, (char *)e->hook_run.desc, (long long)e->hook_run.position, (long long)e->hook_run.total);
		break;
	case ALPM_EVENT_HOOK_START:
	case ALPM_EVENT_HOOK_DONE:
		goEvent(c, e->type, NULL, NULL, e->hook.when, 0);
		break;
	case ALPM_EVENT_PKG_RETRIEVE_START:
	case ALPM_EVENT_PKG_RETRIEVE_DONE:
	case ALPM_EVENT_PKG_RETRIEVE_FAILED:
		goEvent(c, e->type, NULL, NULL, (long long)e->pkg_retrieve.num, (long long)e->pkg_retrieve.total_size);
		break;
	case ALPM_EVENT_DATABASE_MISSING:
		goEvent(c, e->type, (char *)e->database_missing.dbname, NULL, 0, 0);
		break;
	case ALPM_EVENT_PACNEW_CREATED:
		goEvent(c, e->type, (char *)e->pacnew_created.file, NULL, 0, 0);
		break;
	case ALPM_EVENT_PACSAVE_CREATED:
		goEvent(c, e->type, (char *)e->pacsave_created.file, NULL, 0, 0);
		break;
	default:
		goEvent(c, e->type, NULL, NULL, 0, 0);
	}
}

// conflict_name returns a conflicting package's name. libalpm 13 stores
// names (char *), 14 and later package pointers: _Generic picks the right
// reading at compile time, and both branches compile against either header.
#define conflict_name(field) _Generic((field), \
	char *: (const char *)(void *)(field), \
	default: alpm_pkg_get_name((alpm_pkg_t *)(void *)(field)))

// Questions are answered as pacman --noconfirm does, except that keys are
// never imported from a keyserver: the keyring is prepared up front.
static void paczfs_question(void *ctx, alpm_question_t *q) {
	uintptr_t c = (uintptr_t)ctx;
	if (PACZFS_IN_CHILD()) {
		q->any.answer = 0;
		return;
	}
	switch (q->type) {
	case ALPM_QUESTION_INSTALL_IGNOREPKG:
		q->install_ignorepkg.install = 0;
		goQuestion(c, q->type, (char *)alpm_pkg_get_name(q->install_ignorepkg.pkg));
		break;
	case ALPM_QUESTION_REPLACE_PKG:
		q->replace.replace = 1;
		goQuestion(c, q->type, (char *)alpm_pkg_get_name(q->replace.oldpkg));
		break;
	case ALPM_QUESTION_CONFLICT_PKG:
		q->conflict.remove = 0;
		goQuestion(c, q->type, (char *)conflict_name(q->conflict.conflict->package2));
		break;
	case ALPM_QUESTION_CORRUPTED_PKG:
		q->corrupted.remove = 1;
		goQuestion(c, q->type, (char *)q->corrupted.filepath);
		break;
	case ALPM_QUESTION_REMOVE_PKGS:
		q->remove_pkgs.skip = 0;
		goQuestion(c, q->type, NULL);
		break;
	case ALPM_QUESTION_SELECT_PROVIDER:
		q->select_provider.use_index = 0;
		goQuestion(c, q->type, q->select_provider.depend ? q->select_provider.depend->name : NULL);
		break;
	case ALPM_QUESTION_IMPORT_KEY:
		q->import_key.import = 0;
		goQuestion(c, q->type, NULL); // the key field differs between libalpm 13 and 15
		break;
	default:
		q->any.answer = 0;
	}
}

static void paczfs_progress(void *ctx, alpm_progress_t kind, const char *pkg, int percent, size_t howmany, size_t current) {
	if (PACZFS_IN_CHILD()) return;
	goProgress((uintptr_t)ctx, kind, (char *)pkg, percent, (long long)howmany, (long long)current);
}

static void paczfs_download(void *ctx, const char *file, alpm_download_event_type_t ev, void *data) {
	if (PACZFS_IN_CHILD()) return;
	long long done = 0, total = 0;
	if (ev == ALPM_DOWNLOAD_PROGRESS) {
		alpm_download_event_progress_t *p = data;
		done = p->downloaded; total = p->total;
	} else if (ev == ALPM_DOWNLOAD_COMPLETED) {
		alpm_download_event_completed_t *p = data;
		total = p->total; done = p->result;
	}
	goDownload((uintptr_t)ctx, (char *)file, ev, done, total);
}

static int paczfs_fetch(void *ctx, const char *url, const char *localpath, int force) {
	if (PACZFS_IN_CHILD()) return -1;
	return goFetch((uintptr_t)ctx, (char *)url, (char *)localpath, force);
}

// paczfs_fork_and_log does what libalpm's forked children do: log through
// the callback from a child process, which then exits 0. It returns the
// child's exit status, 124 if it did not exit within two seconds (killed),
// or -1 if fork failed. Tests use it to prove the guard above.
static void paczfs_log_v(void *ctx, const char *fmt, ...) {
	va_list ap;
	va_start(ap, fmt);
	paczfs_log(ctx, ALPM_LOG_DEBUG, fmt, ap);
	va_end(ap);
}

static int paczfs_fork_and_log(uintptr_t ctx) {
	pid_t pid = fork();
	if (pid < 0) return -1;
	if (pid == 0) {
		paczfs_log_v((void *)ctx, "logged from a forked child %d\n", (int)getpid());
		_exit(0);
	}
	for (int i = 0; i < 200; i++) {
		int status;
		if (waitpid(pid, &status, WNOHANG) == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
		usleep(10000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	return 124;
}

// libalpm's children (scriptlets, hooks, and gpg through gpgme) exec with
// the process's environ: the build host's LANG, TZ, HOME, PATH... A fork
// handler gives them a clean one instead, only for forks made by a thread
// that set it (thread-local: the caller's own threads fork as before).
// Assigning environ in the child, before exec, is all it does.
extern char **environ;
static __thread char **paczfs_child_env;
static pthread_once_t paczfs_atfork_once = PTHREAD_ONCE_INIT;
static void paczfs_atfork_child(void) {
	if (paczfs_child_env) environ = paczfs_child_env;
}
static void paczfs_atfork_register(void) { pthread_atfork(NULL, NULL, paczfs_atfork_child); }

static char **paczfs_env_new(int n) { return calloc((size_t)n + 1, sizeof(char *)); }
static void paczfs_env_set(char **env, int i, char *s) { env[i] = s; }
static void paczfs_env_free(char **env) {
	for (char **p = env; *p; p++) free(*p);
	free(env);
}
// paczfs_child_env_use makes env the environment of this thread's forked
// children (NULL: the process's again) and returns the previous one.
static char **paczfs_child_env_use(char **env) {
	pthread_once(&paczfs_atfork_once, paczfs_atfork_register);
	char **old = paczfs_child_env;
	paczfs_child_env = env;
	return old;
}
// paczfs_fork_getenv forks and returns 0 if the child sees name=want in
// its environment, 1 if not (tests of the handler above).
static int paczfs_fork_getenv(const char *name, const char *want) {
	pid_t pid = fork();
	if (pid < 0) return -1;
	if (pid == 0) {
		const char *v = getenv(name);
		_exit(v && want && strcmp(v, want) == 0 ? 0 : (!v && !want ? 0 : 1));
	}
	int status;
	if (waitpid(pid, &status, 0) != pid) return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static void paczfs_set_callbacks(alpm_handle_t *h, uintptr_t ctx) {
	paczfs_pid = getpid();
	alpm_option_set_logcb(h, paczfs_log, (void *)ctx);
	alpm_option_set_eventcb(h, paczfs_event, (void *)ctx);
	alpm_option_set_questioncb(h, paczfs_question, (void *)ctx);
	alpm_option_set_progresscb(h, paczfs_progress, (void *)ctx);
	alpm_option_set_dlcb(h, paczfs_download, (void *)ctx);
	alpm_option_set_fetchcb(h, paczfs_fetch, (void *)ctx);
}

static int paczfs_set_sandbox(alpm_handle_t *h, const char *user, int disable) {
	if (!alpm_option_set_sandboxuser || !alpm_option_set_disable_sandbox) return -2;
	if (alpm_option_set_disable_sandbox(h, disable) != 0) return -1;
	return alpm_option_set_sandboxuser(h, user);
}

// describe_errors renders the data list of a failed prepare or commit
// into one newline-separated string, and frees the list.
static char *describe_errors(alpm_errno_t err, alpm_list_t *data) {
	char *out = NULL; size_t len = 0;
	FILE *f = open_memstream(&out, &len);
	if (!f) return NULL;
	for (alpm_list_t *i = data; i; i = i->next) {
		switch (err) {
		case ALPM_ERR_UNSATISFIED_DEPS: {
			alpm_depmissing_t *m = i->data;
			char *dep = alpm_dep_compute_string(m->depend);
			fprintf(f, "%s requires %s%s%s\n", m->target, dep ? dep : "?", m->causingpkg ? ", which conflicts with " : "", m->causingpkg ? m->causingpkg : "");
			free(dep);
			alpm_depmissing_free(m);
			break;
		}
		case ALPM_ERR_CONFLICTING_DEPS: {
			alpm_conflict_t *c = i->data;
			char *reason = c->reason ? alpm_dep_compute_string(c->reason) : NULL;
			fprintf(f, "%s and %s are in conflict%s%s\n", conflict_name(c->package1), conflict_name(c->package2), reason ? ": " : "", reason ? reason : "");
			free(reason);
			alpm_conflict_free(c);
			break;
		}
		case ALPM_ERR_FILE_CONFLICTS: {
			alpm_fileconflict_t *c = i->data;
			if (c->type == ALPM_FILECONFLICT_TARGET)
				fprintf(f, "%s exists in both %s and %s\n", c->file, c->target, c->ctarget);
			else
				fprintf(f, "%s from %s exists in the filesystem%s%s\n", c->file, c->target, c->ctarget && c->ctarget[0] ? " (owned by " : "", c->ctarget && c->ctarget[0] ? c->ctarget : "");
			alpm_fileconflict_free(c);
			break;
		}
		case ALPM_ERR_PKG_INVALID_ARCH:
		case ALPM_ERR_PKG_INVALID:
		case ALPM_ERR_PKG_INVALID_CHECKSUM:
		case ALPM_ERR_PKG_INVALID_SIG:
			fprintf(f, "%s\n", (char *)i->data);
			free(i->data);
			break;
		default:
			break;
		}
	}
	alpm_list_free(data);
	fclose(f);
	return out;
}
*/
import "C"

import (
	"errors"
	"fmt"
	"runtime/cgo"
	"strings"
	"sync"
	"unsafe"
)

// Available reports whether this build has libalpm.
const Available = true

// Version returns the libalpm version, e.g. "15.0.0".
func Version() string { return C.GoString(C.alpm_version()) }

// Handle is one libalpm handle: a root, its database, its options.
// libalpm is not thread-safe: a Handle must be used from one goroutine,
// except Interrupt.
type Handle struct {
	h      *C.alpm_handle_t
	cb     cgo.Handle
	mu     sync.Mutex // guards h against Close during Interrupt
	closed bool
	env    **C.char // ChildEnv as given to the fork handler, or nil
}

// useChildEnv makes env the environment of the children libalpm forks
// from the calling thread (see paczfs_atfork_child), until Close.
func (a *Handle) useChildEnv(env []string) {
	if env == nil {
		return
	}
	arr := C.paczfs_env_new(C.int(len(env)))
	for i, e := range env {
		C.paczfs_env_set(arr, C.int(i), C.CString(e))
	}
	a.env = arr
	C.paczfs_child_env_use(arr)
}

// dropChildEnv undoes useChildEnv on the calling thread. The array is
// freed only if this thread was the one using it: another thread's
// pointer must never dangle (then it is left, a few hundred bytes).
func (a *Handle) dropChildEnv() {
	if a.env == nil {
		return
	}
	if old := C.paczfs_child_env_use(nil); old == a.env {
		C.paczfs_env_free(a.env)
	} else {
		C.paczfs_child_env_use(old)
	}
	a.env = nil
}

// forkGetenv forks from the calling thread and reports whether the child
// sees name=want ("" with unset: name is unset).
func forkGetenv(name, want string, unset bool) bool {
	cn := cstr(name)
	defer C.free(unsafe.Pointer(cn))
	var cw *C.char
	if !unset {
		cw = cstr(want)
		defer C.free(unsafe.Pointer(cw))
	}
	return C.paczfs_fork_getenv(cn, cw) == 0
}

func cstr(s string) *C.char { return C.CString(s) }

// Open initialises libalpm for root and dbpath (both must exist) and
// installs the callbacks, which receive every log line, event, progress
// step, download and question, and perform every download (Fetch).
func Open(o Options, cb Callbacks) (*Handle, error) {
	root, dbpath := cstr(o.Root), cstr(o.DBPath)
	defer C.free(unsafe.Pointer(root))
	defer C.free(unsafe.Pointer(dbpath))
	var errno C.alpm_errno_t
	h := C.alpm_initialize(root, dbpath, &errno)
	if h == nil {
		return nil, &Error{Op: "initialize " + o.Root, Code: int(errno), Msg: C.GoString(C.alpm_strerror(errno))}
	}
	a := &Handle{h: h, cb: cgo.NewHandle(cb)}
	C.paczfs_set_callbacks(h, C.uintptr_t(a.cb))
	a.useChildEnv(o.ChildEnv)
	if err := a.apply(o); err != nil {
		a.Close()
		return nil, err
	}
	return a, nil
}

// forkAndLog logs through the handle's callbacks from a forked child and
// returns the child's exit status (see paczfs_fork_and_log).
func (a *Handle) forkAndLog() int { return int(C.paczfs_fork_and_log(C.uintptr_t(a.cb))) }

func (a *Handle) err(op string) error {
	code := C.alpm_errno(a.h)
	return &Error{Op: op, Code: int(code), Msg: C.GoString(C.alpm_strerror(code))}
}

func (a *Handle) check(op string, rc C.int) error {
	if rc != 0 {
		return a.err(op)
	}
	return nil
}

func (a *Handle) apply(o Options) error {
	str := func(op string, f func(*C.char) C.int, v string) error {
		c := cstr(v)
		defer C.free(unsafe.Pointer(c))
		return a.check(op, f(c))
	}
	h := a.h
	for _, d := range o.CacheDirs {
		if err := str("add cachedir", func(c *C.char) C.int { return C.alpm_option_add_cachedir(h, c) }, d); err != nil {
			return err
		}
	}
	for _, d := range o.HookDirs {
		if err := str("add hookdir", func(c *C.char) C.int { return C.alpm_option_add_hookdir(h, c) }, d); err != nil {
			return err
		}
	}
	if o.DBExt != "" {
		if err := str("set dbext", func(c *C.char) C.int { return C.alpm_option_set_dbext(h, c) }, o.DBExt); err != nil {
			return err
		}
	}
	if o.GPGDir != "" {
		if err := str("set gpgdir", func(c *C.char) C.int { return C.alpm_option_set_gpgdir(h, c) }, o.GPGDir); err != nil {
			return err
		}
	}
	if o.LogFile != "" {
		if err := str("set logfile", func(c *C.char) C.int { return C.alpm_option_set_logfile(h, c) }, o.LogFile); err != nil {
			return err
		}
	}
	if err := str("add architecture", func(c *C.char) C.int { return C.alpm_option_add_architecture(h, c) }, o.Architecture); err != nil {
		return err
	}
	for _, p := range o.IgnorePkgs {
		if err := str("add ignorepkg", func(c *C.char) C.int { return C.alpm_option_add_ignorepkg(h, c) }, p); err != nil {
			return err
		}
	}
	for _, p := range o.NoExtract {
		if err := str("add noextract", func(c *C.char) C.int { return C.alpm_option_add_noextract(h, c) }, p); err != nil {
			return err
		}
	}
	if err := a.check("set default siglevel", C.alpm_option_set_default_siglevel(h, C.int(o.SigLevel))); err != nil {
		return err
	}
	if err := a.check("set local file siglevel", C.alpm_option_set_local_file_siglevel(h, C.int(o.LocalFileSigLevel))); err != nil {
		return err
	}
	if err := a.check("set remote file siglevel", C.alpm_option_set_remote_file_siglevel(h, C.int(o.RemoteFileSigLevel))); err != nil {
		return err
	}
	checkspace := C.int(0)
	if o.CheckSpace {
		checkspace = 1
	}
	if err := a.check("set checkspace", C.alpm_option_set_checkspace(h, checkspace)); err != nil {
		return err
	}
	if o.ParallelDownloads > 0 {
		if err := a.check("set parallel downloads", C.alpm_option_set_parallel_downloads(h, C.uint(o.ParallelDownloads))); err != nil {
			return err
		}
	}
	return nil
}

// SetSandbox sets pacman 7's download sandbox user, or disables the
// sandbox when user is empty. ErrUnsupported on libalpm before 15.
func (a *Handle) SetSandbox(user string) error {
	var c *C.char
	disable := C.int(1)
	if user != "" {
		c = cstr(user)
		defer C.free(unsafe.Pointer(c))
		disable = 0
	}
	switch C.paczfs_set_sandbox(a.h, c, disable) {
	case 0:
		return nil
	case -2:
		return errors.ErrUnsupported
	}
	return a.err("set sandbox user")
}

// Close releases the handle (and any transaction it holds, with its lock).
func (a *Handle) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return nil
	}
	a.closed = true
	C.alpm_trans_release(a.h) // no-op without a transaction
	rc := C.alpm_release(a.h)
	a.cb.Delete()
	a.dropChildEnv()
	if rc != 0 {
		return errors.New("alpm release failed")
	}
	return nil
}

// RegisterRepo registers a sync database with its servers (already
// expanded: no $repo or $arch) and signature level.
func (a *Handle) RegisterRepo(name string, siglevel int, servers []string) error {
	cn := cstr(name)
	defer C.free(unsafe.Pointer(cn))
	db := C.alpm_register_syncdb(a.h, cn, C.int(siglevel))
	if db == nil {
		return a.err("register repository " + name)
	}
	for _, s := range servers {
		cs := cstr(s)
		rc := C.alpm_db_add_server(db, cs)
		C.free(unsafe.Pointer(cs))
		if rc != 0 {
			return a.err("add server " + s + " to " + name)
		}
	}
	return a.check("set usage of "+name, C.alpm_db_set_usage(db, C.ALPM_DB_USAGE_ALL))
}

// UpdateDBs refreshes every sync database (pacman -Sy; force: -Syy).
func (a *Handle) UpdateDBs(force bool) error {
	f := C.int(0)
	if force {
		f = 1
	}
	if C.alpm_db_update(a.h, C.alpm_get_syncdbs(a.h), f) < 0 {
		return a.err("synchronize databases")
	}
	return nil
}

// Package is what libalpm knows of a package.
type Package struct {
	Name, Version, Repo, Filename string
	DownloadSize, InstalledSize   int64
	// SHA256 is the package file's checksum the sync database gives
	// ("" for an installed package or a database without it).
	SHA256 string
	// Base64Sig is the package's detached signature as the sync database
	// carries it (%PGPSIG%), base64; "" when the database has none and
	// the signature is the file beside the package (.sig). libalpm checks
	// this one first.
	Base64Sig string
}

func pkgInfo(p *C.alpm_pkg_t) Package {
	out := Package{
		Name:          C.GoString(C.alpm_pkg_get_name(p)),
		Version:       C.GoString(C.alpm_pkg_get_version(p)),
		Filename:      C.GoString(C.alpm_pkg_get_filename(p)),
		DownloadSize:  int64(C.alpm_pkg_download_size(p)),
		InstalledSize: int64(C.alpm_pkg_get_isize(p)),
	}
	if sum := C.alpm_pkg_get_sha256sum(p); sum != nil {
		out.SHA256 = C.GoString(sum)
	}
	if sig := C.alpm_pkg_get_base64_sig(p); sig != nil {
		out.Base64Sig = C.GoString(sig)
	}
	if db := C.alpm_pkg_get_db(p); db != nil {
		out.Repo = C.GoString(C.alpm_db_get_name(db))
	}
	return out
}

// Transaction flags.
const (
	TransNeeded       = C.ALPM_TRANS_FLAG_NEEDED
	TransNoScriptlet  = C.ALPM_TRANS_FLAG_NOSCRIPTLET
	TransDownloadOnly = C.ALPM_TRANS_FLAG_DOWNLOADONLY
)

// Prepare starts a transaction that installs targets: names, provides
// ("sh"), versioned names ("glibc>=2.40") or groups, resolved against the
// sync databases; then resolves dependencies. It returns the full set to
// install. Unknown targets and unsatisfiable dependencies are errors that
// name them. On error no transaction is left open.
func (a *Handle) Prepare(targets []string, flags int) (_ []Package, err error) {
	return a.prepare(targets, flags, false)
}

// PrepareUpgrade is Prepare with every installed package that has a
// newer version in the sync databases added too (pacman -Su).
func (a *Handle) PrepareUpgrade(targets []string, flags int) ([]Package, error) {
	return a.prepare(targets, flags, true)
}

func (a *Handle) prepare(targets []string, flags int, upgrade bool) (_ []Package, err error) {
	if C.alpm_trans_init(a.h, C.int(flags)) != 0 {
		return nil, a.err("start transaction")
	}
	defer func() {
		if err != nil {
			C.alpm_trans_release(a.h)
		}
	}()
	if upgrade {
		if C.alpm_sync_sysupgrade(a.h, 0) != 0 {
			return nil, a.err("system upgrade")
		}
	}
	dbs := C.alpm_get_syncdbs(a.h)
	var missing []string
	for _, t := range targets {
		ct := cstr(t)
		p := C.alpm_find_dbs_satisfier(a.h, dbs, ct)
		if p == nil {
			group := C.alpm_find_group_pkgs(dbs, ct)
			if group == nil {
				C.free(unsafe.Pointer(ct))
				missing = append(missing, t)
				continue
			}
			for i := group; i != nil; i = i.next {
				if err := a.add((*C.alpm_pkg_t)(i.data)); err != nil {
					C.alpm_list_free(group)
					C.free(unsafe.Pointer(ct))
					return nil, err
				}
			}
			C.alpm_list_free(group)
		} else if err := a.add(p); err != nil {
			C.free(unsafe.Pointer(ct))
			return nil, err
		}
		C.free(unsafe.Pointer(ct))
	}
	if len(missing) > 0 {
		return nil, &Error{Op: "resolve targets", Code: int(C.ALPM_ERR_PKG_NOT_FOUND), Msg: "target not found", Details: missing}
	}
	var data *C.alpm_list_t
	if C.alpm_trans_prepare(a.h, &data) != 0 {
		return nil, a.detailed("resolve dependencies", data)
	}
	var out []Package
	for i := C.alpm_trans_get_add(a.h); i != nil; i = i.next {
		out = append(out, pkgInfo((*C.alpm_pkg_t)(i.data)))
	}
	return out, nil
}

func (a *Handle) add(p *C.alpm_pkg_t) error {
	if C.alpm_add_pkg(a.h, p) != 0 {
		if C.alpm_errno(a.h) == C.ALPM_ERR_TRANS_DUP_TARGET {
			return nil
		}
		return a.err("add " + C.GoString(C.alpm_pkg_get_name(p)))
	}
	return nil
}

func (a *Handle) detailed(op string, data *C.alpm_list_t) error {
	e := a.err(op).(*Error)
	if data != nil {
		s := C.describe_errors(C.alpm_errno(a.h), data)
		if s != nil {
			for _, l := range strings.Split(strings.TrimSpace(C.GoString(s)), "\n") {
				if l != "" {
					e.Details = append(e.Details, l)
				}
			}
			C.free(unsafe.Pointer(s))
		}
	}
	return e
}

// Commit downloads (through Fetch), verifies, and installs the prepared
// transaction, running scriptlets and hooks; then releases it.
func (a *Handle) Commit() error {
	var data *C.alpm_list_t
	defer C.alpm_trans_release(a.h)
	if C.alpm_trans_commit(a.h, &data) != 0 {
		return a.detailed("commit transaction", data)
	}
	return nil
}

// Release ends a prepared transaction without committing it.
func (a *Handle) Release() {
	C.alpm_trans_release(a.h)
}

// Interrupt asks a running commit to stop between packages. Safe from
// another goroutine.
func (a *Handle) Interrupt() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.closed {
		C.alpm_trans_interrupt(a.h)
	}
}

// Files returns the paths (relative, directories with a trailing slash)
// of package name in sync database repo, from a files database (DBExt
// ".files"); false when the repository or the package is not there.
func (a *Handle) Files(repo, name string) ([]string, bool) {
	cn := cstr(name)
	defer C.free(unsafe.Pointer(cn))
	for i := C.alpm_get_syncdbs(a.h); i != nil; i = i.next {
		db := (*C.alpm_db_t)(i.data)
		if C.GoString(C.alpm_db_get_name(db)) != repo {
			continue
		}
		p := C.alpm_db_get_pkg(db, cn)
		if p == nil {
			return nil, false
		}
		fl := C.alpm_pkg_get_files(p)
		if fl == nil || fl.count == 0 {
			return nil, true
		}
		files := unsafe.Slice(fl.files, int(fl.count))
		out := make([]string, 0, len(files))
		for _, f := range files {
			out = append(out, C.GoString(f.name))
		}
		return out, true
	}
	return nil, false
}

// TransRecurse: a removal also removes the dependencies of what it removes
// that nothing else needs and were installed as dependencies (pacman -Rs).
const TransRecurse = C.ALPM_TRANS_FLAG_RECURSE

// PrepareRemove starts a transaction that removes the installed packages
// names (with flags, e.g. TransRecurse) and returns what it removes.
// Commit carries it out. A name not installed is an error naming it.
func (a *Handle) PrepareRemove(names []string, flags int) (_ []Package, err error) {
	if C.alpm_trans_init(a.h, C.int(flags)) != 0 {
		return nil, a.err("start transaction")
	}
	defer func() {
		if err != nil {
			C.alpm_trans_release(a.h)
		}
	}()
	local := C.alpm_get_localdb(a.h)
	var missing []string
	for _, n := range names {
		cn := cstr(n)
		p := C.alpm_db_get_pkg(local, cn)
		C.free(unsafe.Pointer(cn))
		if p == nil {
			missing = append(missing, n)
			continue
		}
		if C.alpm_remove_pkg(a.h, p) != 0 {
			return nil, a.err("remove " + n)
		}
	}
	if len(missing) > 0 {
		return nil, &Error{Op: "remove", Code: int(C.ALPM_ERR_PKG_NOT_FOUND), Msg: "not installed", Details: missing}
	}
	var data *C.alpm_list_t
	if C.alpm_trans_prepare(a.h, &data) != 0 {
		return nil, a.detailed("prepare removal", data)
	}
	var out []Package
	for i := C.alpm_trans_get_remove(a.h); i != nil; i = i.next {
		out = append(out, pkgInfo((*C.alpm_pkg_t)(i.data)))
	}
	return out, nil
}

// LocalPackage is an installed package as a removal decision needs it.
type LocalPackage struct {
	Name     string
	Explicit bool // installed by name, not as a dependency
	Required bool // another installed package depends on it
}

// Local lists the installed packages with their install reason and
// whether anything installed requires them (pacman -Qe, -Qdt).
func (a *Handle) Local() []LocalPackage {
	var out []LocalPackage
	for i := C.alpm_db_get_pkgcache(C.alpm_get_localdb(a.h)); i != nil; i = i.next {
		p := (*C.alpm_pkg_t)(i.data)
		req := C.alpm_pkg_compute_requiredby(p)
		out = append(out, LocalPackage{
			Name:     C.GoString(C.alpm_pkg_get_name(p)),
			Explicit: C.alpm_pkg_get_reason(p) == C.ALPM_PKG_REASON_EXPLICIT,
			Required: req != nil,
		})
		C.alpm_list_free_inner(req, (*[0]byte)(C.free))
		C.alpm_list_free(req)
	}
	return out
}

// Satisfier returns the installed package that satisfies dep (a name, a
// provision, "name>=version"), or "".
func (a *Handle) Satisfier(dep string) string {
	cd := cstr(dep)
	defer C.free(unsafe.Pointer(cd))
	p := C.alpm_find_satisfier(C.alpm_db_get_pkgcache(C.alpm_get_localdb(a.h)), cd)
	if p == nil {
		return ""
	}
	return C.GoString(C.alpm_pkg_get_name(p))
}

// SyncPackage finds name in the sync databases, in their order (as
// pacman -S name picks it), with its dependencies as pacman writes them
// ("linux-lts=6.12.41-1", "zfs-utils=2.3.3").
func (a *Handle) SyncPackage(name string) (Package, []string, bool) {
	cn := cstr(name)
	defer C.free(unsafe.Pointer(cn))
	for i := C.alpm_get_syncdbs(a.h); i != nil; i = i.next {
		p := C.alpm_db_get_pkg((*C.alpm_db_t)(i.data), cn)
		if p == nil {
			continue
		}
		var deps []string
		for d := C.alpm_pkg_get_depends(p); d != nil; d = d.next {
			cs := C.alpm_dep_compute_string((*C.alpm_depend_t)(d.data))
			deps = append(deps, C.GoString(cs))
			C.free(unsafe.Pointer(cs))
		}
		return pkgInfo(p), deps, true
	}
	return Package{}, nil, false
}

// GroupMembers lists the names of the sync databases' packages in group
// (none when it is no group).
func (a *Handle) GroupMembers(group string) []string {
	cg := cstr(group)
	defer C.free(unsafe.Pointer(cg))
	l := C.alpm_find_group_pkgs(C.alpm_get_syncdbs(a.h), cg)
	var out []string
	for i := l; i != nil; i = i.next {
		out = append(out, C.GoString(C.alpm_pkg_get_name((*C.alpm_pkg_t)(i.data))))
	}
	C.alpm_list_free(l)
	return out
}

// Installed lists the packages in the local database.
func (a *Handle) Installed() []Package {
	var out []Package
	for i := C.alpm_db_get_pkgcache(C.alpm_get_localdb(a.h)); i != nil; i = i.next {
		out = append(out, pkgInfo((*C.alpm_pkg_t)(i.data)))
	}
	return out
}

//export goLog
func goLog(ctx C.uintptr_t, level C.int, msg *C.char) {
	cgo.Handle(ctx).Value().(Callbacks).Log(int(level), C.GoString(msg))
}

//export goEvent
func goEvent(ctx C.uintptr_t, typ C.int, a, b *C.char, n1, n2 C.longlong) {
	e := Event{Type: EventType(typ), N1: int64(n1), N2: int64(n2)}
	if a != nil {
		e.A = C.GoString(a)
	}
	if b != nil {
		e.B = C.GoString(b)
	}
	cgo.Handle(ctx).Value().(Callbacks).Event(e)
}

//export goProgress
func goProgress(ctx C.uintptr_t, kind C.int, pkg *C.char, percent C.int, howmany, current C.longlong) {
	cgo.Handle(ctx).Value().(Callbacks).Progress(int(kind), C.GoString(pkg), int(percent), int(howmany), int(current))
}

//export goDownload
func goDownload(ctx C.uintptr_t, file *C.char, ev C.int, done, total C.longlong) {
	cgo.Handle(ctx).Value().(Callbacks).Download(C.GoString(file), int(ev), int64(done), int64(total))
}

//export goFetch
func goFetch(ctx C.uintptr_t, url, localpath *C.char, force C.int) C.int {
	return C.int(cgo.Handle(ctx).Value().(Callbacks).Fetch(C.GoString(url), C.GoString(localpath), force != 0))
}

//export goQuestion
func goQuestion(ctx C.uintptr_t, typ C.int, what *C.char) {
	w := ""
	if what != nil {
		w = C.GoString(what)
	}
	cgo.Handle(ctx).Value().(Callbacks).Question(int(typ), w)
}

var _ = fmt.Sprint

// libalpm error codes callers branch on; their numbers differ between
// libalpm versions, so they come from the header this was built against.
const (
	ErrCodeHandleLock         = int(C.ALPM_ERR_HANDLE_LOCK)
	ErrCodeTransAbort         = int(C.ALPM_ERR_TRANS_ABORT)
	ErrCodePkgNotFound        = int(C.ALPM_ERR_PKG_NOT_FOUND)
	ErrCodePkgInvalid         = int(C.ALPM_ERR_PKG_INVALID)
	ErrCodePkgInvalidChecksum = int(C.ALPM_ERR_PKG_INVALID_CHECKSUM)
	ErrCodePkgInvalidSig      = int(C.ALPM_ERR_PKG_INVALID_SIG)
	ErrCodeDBInvalidSig       = int(C.ALPM_ERR_DB_INVALID_SIG)
	ErrCodeSigMissing         = int(C.ALPM_ERR_SIG_MISSING)
	ErrCodeSigInvalid         = int(C.ALPM_ERR_SIG_INVALID)
	ErrCodeUnsatisfiedDeps    = int(C.ALPM_ERR_UNSATISFIED_DEPS)
	ErrCodeConflictingDeps    = int(C.ALPM_ERR_CONFLICTING_DEPS)
	ErrCodeFileConflicts      = int(C.ALPM_ERR_FILE_CONFLICTS)
	ErrCodeRetrieve           = int(C.ALPM_ERR_RETRIEVE)
	ErrCodeExternalDownload   = int(C.ALPM_ERR_EXTERNAL_DOWNLOAD)
)

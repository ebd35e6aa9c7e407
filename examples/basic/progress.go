package main

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/paczfs/paczfs/hooks"
	"github.com/paczfs/paczfs/image"
	"github.com/paczfs/paczfs/pacman"
)

// reporter shows a build's progress on stderr. On a terminal it redraws
// one line per stage (downloads with bytes and percent, then installs);
// otherwise it writes plain lines: [stage] started, [stage] done in 1.2s,
// one line per installed package, warnings. image.WithProgress calls it
// from several goroutines.
type reporter struct {
	mu      sync.Mutex
	w       io.Writer
	tty     bool
	verbose bool
	width   int
	now     func() time.Time

	stage    hooks.Stage
	active   bool // between the stage's start and finish
	started  time.Time
	files    map[string]*download
	order    []string      // file names as downloads started
	phase    *pacman.Event // the latest check, install or hook event: what libalpm is doing now
	lastDraw time.Time
	open     bool // a progress line is drawn and not ended
}

type download struct {
	bytes, total int64
	done         bool
}

func newReporter(w io.Writer, tty, verbose bool, width int) *reporter {
	if width < 20 {
		width = 80
	}
	return &reporter{w: w, tty: tty && !verbose, verbose: verbose, width: width, now: time.Now}
}

// handle is the image.WithProgress callback.
func (r *reporter) handle(p image.Progress) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch p.Kind {
	case image.StageStarted:
		r.stage, r.active, r.started = p.Stage, true, r.now()
		r.files, r.order, r.phase = map[string]*download{}, nil, nil
		if r.tty {
			r.draw(true)
		} else {
			r.line("[%s] started", p.Stage)
		}
	case image.StageFinished:
		r.active = false
		r.line("[%s] done in %s%s", p.Stage, seconds(p.Took), r.downloaded())
	case image.Message:
		st := p.Stage
		if st == "" {
			st = r.stage
		}
		r.line("[%s] %s", orPlan(st), p.Message)
	case image.PackageEvent:
		if p.Package != nil {
			r.pkg(*p.Package)
		}
	}
}

func orPlan(s hooks.Stage) hooks.Stage {
	if s == "" {
		return "plan"
	}
	return s
}

func (r *reporter) pkg(e pacman.Event) {
	st := orPlan(r.stage)
	file := func() *download {
		if r.files == nil {
			r.files = map[string]*download{}
		}
		d, ok := r.files[e.File]
		if !ok {
			d = &download{}
			r.files[e.File] = d
			r.order = append(r.order, e.File)
		}
		return d
	}
	switch e.Kind {
	case pacman.EventDownloadStart:
		file()
		r.draw(false)
	case pacman.EventDownloadProgress:
		d := file()
		d.bytes, d.total = e.Bytes, e.Total
		r.draw(false)
	case pacman.EventDownloadDone:
		d := file()
		d.bytes, d.total, d.done = e.Bytes, e.Total, true
		r.draw(false)
	case pacman.EventCheck, pacman.EventInstall:
		r.phase = &e
		r.draw(false)
	case pacman.EventInstalled:
		if r.tty {
			r.draw(false)
		} else {
			r.line("[%s] installed %s %s", st, e.Package, e.Version)
		}
	case pacman.EventLog:
		if e.Level == "error" || e.Level == "warning" {
			r.line("[%s] pacman %s: %s", st, e.Level, strings.TrimSpace(e.Message))
		}
	case pacman.EventScriptlet:
		if r.verbose {
			r.line("[%s]   %s", st, strings.TrimRight(e.Message, "\n"))
		}
	case pacman.EventHook:
		r.phase = &e
		if r.verbose {
			r.line("[%s] pacman hook %s", st, e.Message)
		} else {
			r.draw(true)
		}
	case pacman.EventDatabase:
		if r.verbose {
			r.line("[%s] database %s (%s)", st, e.Repo, human(e.Bytes))
		}
	}
}

// downloaded summarises the stage's downloads for its "done" line.
func (r *reporter) downloaded() string {
	var n int
	var bytes int64
	for _, d := range r.files {
		if d.done && d.bytes > 0 {
			n++
			bytes += d.bytes
		}
	}
	if n == 0 {
		return ""
	}
	return fmt.Sprintf(" (downloaded %d files, %s)", n, human(bytes))
}

// line ends any progress line and writes one line; on a terminal it
// then redraws the progress of a running stage.
func (r *reporter) line(format string, args ...any) {
	if r.open {
		io.WriteString(r.w, "\r\x1b[K")
		r.open = false
	}
	fmt.Fprintf(r.w, format+"\n", args...)
	if r.tty && r.active {
		r.draw(true)
	}
}

// finish ends a progress line, before the summary or an error; nothing
// is drawn after it.
func (r *reporter) finish() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.active = false
	if r.open {
		io.WriteString(r.w, "\r\x1b[K")
		r.open = false
	}
}

// tick redraws the progress line every interval on a terminal, so the
// time of a stage without package events moves too. The returned
// function stops it.
func (r *reporter) tick(interval time.Duration) (stop func()) {
	if !r.tty {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				r.mu.Lock()
				r.draw(true)
				r.mu.Unlock()
			}
		}
	})
	return func() {
		close(done)
		wg.Wait()
	}
}

// draw redraws the progress line, at most ten times a second unless
// forced.
func (r *reporter) draw(force bool) {
	if !r.tty || !r.active {
		return
	}
	now := r.now()
	if !force && now.Sub(r.lastDraw) < 100*time.Millisecond {
		return
	}
	r.lastDraw = now
	s := r.progressLine(now)
	if utf8.RuneCountInString(s) > r.width-1 {
		s = string([]rune(s)[:r.width-1])
	}
	io.WriteString(r.w, "\r"+s+"\x1b[K")
	r.open = true
}

func (r *reporter) progressLine(now time.Time) string {
	head := fmt.Sprintf("[%s] %s", r.stage, seconds(now.Sub(r.started)))
	switch e := r.phase; {
	case e == nil:
	case e.Kind == pacman.EventInstall && e.Count > 0:
		frac := (float64(e.Current-1) + float64(e.Percent)/100) / float64(e.Count)
		return fmt.Sprintf("%s  installing %d/%d %s %s", head, e.Current, e.Count, bar(frac, 20), e.Package)
	case e.Kind == pacman.EventCheck:
		return fmt.Sprintf("%s  %s %s", head, e.Message, bar(float64(e.Percent)/100, 20))
	case e.Kind == pacman.EventHook:
		// Hooks (depmod, initramfs, systemd's) can run for a minute
		// after the last package: say which one.
		return fmt.Sprintf("%s  hook %d/%d %s", head, e.Current, e.Count, strings.TrimSuffix(e.Message, "..."))
	}
	if len(r.files) > 0 {
		var done int
		var bytes, total int64
		for _, d := range r.files {
			bytes += d.bytes
			total += d.total
			if d.done {
				done++
			}
		}
		frac := 0.0
		if total > 0 {
			frac = float64(bytes) / float64(total)
		}
		return fmt.Sprintf("%s  downloading %d/%d files %s/%s %3.0f%% %s", head, done, len(r.files),
			human(bytes), human(total), 100*frac, bar(frac, 20))
	}
	return head
}

func bar(frac float64, width int) string {
	frac = min(max(frac, 0), 1)
	n := int(frac * float64(width))
	return "[" + strings.Repeat("#", n) + strings.Repeat("-", width-n) + "]"
}

// seconds renders a duration as 12.3s.
func seconds(d time.Duration) string { return fmt.Sprintf("%.1fs", d.Seconds()) }

// human renders a byte count with binary units.
func human(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, i := float64(n)/unit, 0
	for v >= unit && i < 3 {
		v /= unit
		i++
	}
	return fmt.Sprintf("%.1f %ciB", v, "KMGT"[i])
}

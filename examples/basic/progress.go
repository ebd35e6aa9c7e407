package main

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"github.com/paczfs/paczfs/hooks"
	"github.com/paczfs/paczfs/image"
	"github.com/paczfs/paczfs/pacman"
)

// reporter shows a build's progress on stderr. On a terminal one bar per
// stage, drawn by mpb (downloads with bytes and percent, the signature
// checks, installs, then the running hook), with the stage's other lines
// printed above it; otherwise plain lines: [stage] started, [stage] done
// in 1.2s, one line per installed package, warnings. image.WithProgress
// calls it from several goroutines.
type reporter struct {
	mu      sync.Mutex
	w       io.Writer
	tty     bool
	verbose bool

	stage   hooks.Stage
	active  bool // between the stage's start and finish
	started time.Time
	files   map[string]*download
	order   []string      // file names as downloads started
	phase   *pacman.Event // the latest check, install or hook event: what libalpm is doing now

	// On a terminal: mpb's container and the running stage's bar, and
	// what that bar shows (read by mpb's render goroutine, set under mu).
	p    *mpb.Progress
	bar  *mpb.Bar
	show atomic.Pointer[view]
}

type download struct {
	bytes, total int64
	done         bool
}

// view is what the bar shows: after "[stage] 12.3s", head; then, when
// frac is set, a bar; then tail.
type view struct {
	stage      hooks.Stage
	started    time.Time
	head, tail string
	frac       float64
	hasBar     bool
}

// barScale is the bar's total: its fraction in thousandths.
const barScale = 1000

func newReporter(w io.Writer, tty, verbose bool, width int) *reporter {
	if width < 20 {
		width = 80
	}
	r := &reporter{w: w, tty: tty && !verbose, verbose: verbose}
	if r.tty {
		// mpb asks the terminal for its width at every redraw (a resized
		// window is followed); width applies where it cannot (tests).
		r.p = mpb.New(mpb.WithOutput(w), mpb.WithWidth(width), mpb.WithRefreshRate(100*time.Millisecond), mpb.ForceTTY(), mpb.WithAutoRefresh())
	}
	return r
}

// handle is the image.WithProgress callback.
func (r *reporter) handle(p image.Progress) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch p.Kind {
	case image.StageStarted:
		r.stage, r.active, r.started = p.Stage, true, time.Now()
		r.files, r.order, r.phase = map[string]*download{}, nil, nil
		if r.tty {
			r.startBar()
		} else {
			r.line("[%s] started", p.Stage)
		}
	case image.StageFinished:
		r.active = false
		r.endBar()
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
		r.draw()
	case pacman.EventDownloadProgress:
		d := file()
		d.bytes, d.total = e.Bytes, e.Total
		r.draw()
	case pacman.EventDownloadDone:
		d := file()
		d.bytes, d.total, d.done = e.Bytes, e.Total, true
		r.draw()
	case pacman.EventCheck, pacman.EventInstall:
		r.phase = &e
		r.draw()
	case pacman.EventInstalled:
		if r.tty {
			r.draw()
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
			r.draw()
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

// line writes one line: on a terminal above the bar (mpb prints it at
// its next redraw), else straight to the output.
func (r *reporter) line(format string, args ...any) {
	msg := fmt.Sprintf(format+"\n", args...)
	if r.p != nil {
		if _, err := r.p.Write([]byte(msg)); err == nil {
			return
		}
	}
	io.WriteString(r.w, msg)
}

// finish removes a running bar and stops mpb, before the summary or an
// error: its lines are all printed, and nothing is drawn after it.
func (r *reporter) finish() {
	r.mu.Lock()
	r.active = false
	if r.bar != nil {
		r.bar.Abort(true)
		r.bar = nil
	}
	p := r.p
	r.p = nil
	r.mu.Unlock()
	if p != nil {
		p.Wait()
	}
}

// startBar adds the stage's bar: "[stage] 12.3s", what it does, a bar
// while there is a fraction to show, and the package it is at. Called
// with mu held.
func (r *reporter) startBar() {
	if r.p == nil {
		return
	}
	r.endBar()
	r.show.Store(&view{stage: r.stage, started: r.started})
	style := mpb.BarStyle().Lbound("[").Filler("#").Tip("#").Padding("-").Rbound("]")
	r.bar = r.p.New(barScale, style,
		mpb.BarWidth(22),
		mpb.BarRemoveOnComplete(),
		mpb.BarFillerMiddleware(func(f mpb.BarFiller) mpb.BarFiller {
			return mpb.BarFillerFunc(func(w io.Writer, st decor.Statistics) error {
				if v := r.show.Load(); v == nil || !v.hasBar {
					return nil
				}
				return f.Fill(w, st)
			})
		}),
		mpb.PrependDecorators(decor.Any(func(decor.Statistics) string {
			v := r.show.Load()
			return fmt.Sprintf("[%s] %s%s", v.stage, seconds(time.Since(v.started)), v.head)
		})),
		mpb.AppendDecorators(decor.Any(func(decor.Statistics) string { return r.show.Load().tail })),
	)
}

// endBar completes the running bar, which mpb then removes. Called with
// mu held.
func (r *reporter) endBar() {
	if r.bar != nil {
		r.bar.SetTotal(-1, true)
		r.bar = nil
	}
}

// draw hands the bar what it should show now. Called with mu held.
func (r *reporter) draw() {
	if r.bar == nil || !r.active {
		return
	}
	v := r.view()
	r.show.Store(&v)
	r.bar.SetCurrent(int64(v.frac * barScale))
}

// view says what the running stage's bar shows.
func (r *reporter) view() view {
	v := view{stage: r.stage, started: r.started}
	switch e := r.phase; {
	case e == nil:
	case e.Kind == pacman.EventInstall && e.Count > 0:
		v.head = fmt.Sprintf("  installing %d/%d", e.Current, e.Count)
		v.frac, v.hasBar = (float64(e.Current-1)+float64(e.Percent)/100)/float64(e.Count), true
		v.tail = e.Package
		return v
	case e.Kind == pacman.EventCheck:
		v.head = "  " + e.Message
		v.frac, v.hasBar = float64(e.Percent)/100, true
		return v
	case e.Kind == pacman.EventHook:
		// Hooks (depmod, initramfs, systemd's) can run for a minute
		// after the last package: say which one.
		v.head = fmt.Sprintf("  hook %d/%d %s", e.Current, e.Count, strings.TrimSuffix(e.Message, "..."))
		return v
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
		if total > 0 {
			v.frac = float64(bytes) / float64(total)
		}
		v.hasBar = true
		v.head = fmt.Sprintf("  downloading %d/%d files %s/%s %3.0f%%", done, len(r.files), human(bytes), human(total), 100*v.frac)
	}
	v.frac = min(max(v.frac, 0), 1)
	return v
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

package labtest

import (
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Runs are the durations of one way of doing a thing, in run order.
type Runs []time.Duration

// Median is the middle run (the upper middle of an even count).
func (r Runs) Median() time.Duration {
	if len(r) == 0 {
		return 0
	}
	s := slices.Clone(r)
	slices.Sort(s)
	return s[len(s)/2]
}

// Spread is the slowest run less the fastest.
func (r Runs) Spread() time.Duration {
	if len(r) == 0 {
		return 0
	}
	return slices.Max(r) - slices.Min(r)
}

// String lists the runs in seconds, in order.
func (r Runs) String() string {
	s := make([]string, len(r))
	for i, d := range r {
		s[i] = fmt.Sprintf("%.2fs", d.Seconds())
	}
	return "[" + strings.Join(s, " ") + "]"
}

// Alternate runs a and b n times each, a first in even rounds and b first
// in odd ones, so that neither always runs on a cold or a warm machine.
func Alternate(n int, a, b func() time.Duration) (ra, rb Runs) {
	r := Rotate(n, a, b)
	return r[0], r[1]
}

// Rotate runs each of fns n times, round i starting with fns[i mod k] and
// going on in order, so that each one leads as often as the others. It
// returns the runs of each, in the order of fns.
func Rotate(n int, fns ...func() time.Duration) []Runs {
	runs := make([]Runs, len(fns))
	for i := 0; i < n; i++ {
		for j := range fns {
			k := (i + j) % len(fns)
			runs[k] = append(runs[k], fns[k]())
		}
	}
	return runs
}

// Compare prints every run of both ways, their medians and spreads, and
// the ratio of the medians (a over b), which it returns.
func Compare(w io.Writer, nameA string, a Runs, nameB string, b Runs) float64 {
	width := max(len(nameA), len(nameB))
	for _, s := range []struct {
		name string
		r    Runs
	}{{nameA, a}, {nameB, b}} {
		fmt.Fprintf(w, "  %-*s runs %v: median %.2fs, spread %.2fs\n", width, s.name, s.r, s.r.Median().Seconds(), s.r.Spread().Seconds())
	}
	ratio := 0.0
	if b.Median() > 0 {
		ratio = a.Median().Seconds() / b.Median().Seconds()
	}
	fmt.Fprintf(w, "  ratio %s/%s (medians): %.2f\n", nameA, nameB, ratio)
	return ratio
}

// BenchRuns is how many runs of each contender a comparing benchmark
// makes: three, or PACZFS_BENCH_RUNS (which lab test passes into the
// guest; one, to try a benchmark's code quickly).
func BenchRuns() int {
	if n, err := strconv.Atoi(os.Getenv("PACZFS_BENCH_RUNS")); err == nil && n > 0 {
		return n
	}
	return 3
}

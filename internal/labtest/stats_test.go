package labtest

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestAlternateAndCompare(t *testing.T) {
	var order []string
	n := 0
	a := func() time.Duration { order = append(order, "a"); n++; return time.Duration(n) * time.Second }
	b := func() time.Duration { order = append(order, "b"); return 2 * time.Second }
	ra, rb := Alternate(3, a, b)
	assert.Equal(t, []string{"a", "b", "b", "a", "a", "b"}, order, "the order alternates")
	assert.Equal(t, Runs{time.Second, 2 * time.Second, 3 * time.Second}, ra)
	assert.Equal(t, 2*time.Second, ra.Median())
	assert.Equal(t, 2*time.Second, ra.Spread())
	assert.Equal(t, time.Duration(0), rb.Spread())
	var w strings.Builder
	assert.InDelta(t, 1.0, Compare(&w, "paczfs", ra, "pacman", rb), 1e-9)
	assert.Equal(t, "  paczfs runs [1.00s 2.00s 3.00s]: median 2.00s, spread 2.00s\n"+
		"  pacman runs [2.00s 2.00s 2.00s]: median 2.00s, spread 0.00s\n"+
		"  ratio paczfs/pacman (medians): 1.00\n", w.String())
	assert.Equal(t, time.Duration(0), Runs(nil).Median())
	assert.Equal(t, 5*time.Second, Runs{5 * time.Second, 4 * time.Second, time.Second, 9 * time.Second}.Median(), "the upper middle")
}

func TestRotate(t *testing.T) {
	var order []string
	f := func(name string) func() time.Duration {
		return func() time.Duration { order = append(order, name); return time.Duration(len(order)) }
	}
	r := Rotate(3, f("a"), f("b"), f("c"))
	assert.Equal(t, []string{"a", "b", "c", "b", "c", "a", "c", "a", "b"}, order, "each leads one round")
	assert.Equal(t, []Runs{{1, 6, 8}, {2, 4, 9}, {3, 5, 7}}, r)
}

func TestBenchRuns(t *testing.T) {
	t.Setenv("PACZFS_BENCH_RUNS", "")
	assert.Equal(t, 3, BenchRuns())
	t.Setenv("PACZFS_BENCH_RUNS", "1")
	assert.Equal(t, 1, BenchRuns())
	t.Setenv("PACZFS_BENCH_RUNS", "zero")
	assert.Equal(t, 3, BenchRuns(), "not a count: the default")
}

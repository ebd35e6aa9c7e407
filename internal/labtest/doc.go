// Package labtest holds helpers for the lab tests: tests built with the
// "lab" tag that run as root inside the lab VM (internal/lab), on a kernel
// with ZFS, loop partitions and vfat. Outside the lab they fail loudly
// rather than skip: they are never compiled into a plain `go test ./...`.
//
// It also holds what the lab's benchmarks share: Rotate and Compare (runs
// in turn, medians, spreads, ratios), BenchRuns, and PacstrapScript, which
// runs a command with a root's API filesystems mounted as pacstrap mounts
// them (root, util-linux's unshare and mount).
package labtest

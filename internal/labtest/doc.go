// Package labtest holds helpers for the lab tests: tests built with the
// "lab" tag that run as root inside the lab VM (internal/lab), on a kernel
// with ZFS, loop partitions and vfat. Outside the lab they fail loudly
// rather than skip: they are never compiled into a plain `go test ./...`.
package labtest

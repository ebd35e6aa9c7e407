# paczfs: `make test` is the test command (CI runs it), `make demo` the main job.
# Both run on a fresh Debian 12 machine as root: they install what they need.

GO        ?= go
LAB       := $(GO) run ./internal/lab/cmd/lab
# Packages whose tests need the lab VM (files with the `lab` build tag).
# pacman's lab tests run with `make test-pacman`: they pass, but one run in
# four or five hangs inside alpm_trans_commit (issue 3 stays open for it),
# and a hang must not block CI for the storage layer.
LAB_PKGS  := ./disk ./zfs
# Host tools: qemu for the lab, debootstrap to build it, libalpm headers
# (cgo builds against the host's libalpm 13 on Debian 12), gdisk/dosfstools
# for host-side checks of written images.
HOST_DEPS := qemu-system-x86 qemu-utils ovmf debootstrap gdisk dosfstools e2fsprogs util-linux libalpm-dev libarchive-dev gnupg zstd

.PHONY: all deps lab test test-pacman unit lint labtest bench bench-pacman demo clean-lab

all: test

# Installs missing host packages (needs root; does nothing when all are there).
deps:
	@missing=""; for p in $(HOST_DEPS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi

# Builds the lab VM image, or reuses the cached one (~/.cache/paczfs).
lab: deps
	$(LAB) build

lint:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags lab ./...
	CGO_ENABLED=0 $(GO) vet ./...

# Tests that need no privileges and no lab; -race on everything; and the
# build without cgo (no libalpm), which must work and say so.
unit:
	$(GO) test -race -count=1 ./...
	CGO_ENABLED=0 $(GO) test -count=1 ./...

# Tests that need a real kernel, run inside the lab VM.
labtest: lab
	$(LAB) test $(LAB_PKGS)

test: deps lint unit labtest

# libalpm installs from the signed lab repository (see LAB_PKGS above).
test-pacman: lab
	$(LAB) test -repo ./pacman

# Benchmarks print figures; they assert nothing about speed.
bench: bench-pacman

# paczfs versus pacman -Sy installing the lab base set, in one VM run.
bench-pacman: lab
	$(LAB) test -repo -bench BenchmarkLab ./pacman

# Builds a disk in the lab and shows it: GPT, ESP, pool and datasets.
demo: lab
	CGO_ENABLED=0 $(GO) build -o out/storage ./examples/storage
	$(LAB) run -- /src/out/storage -image /scratch/demo.img

clean-lab:
	rm -rf $${PACZFS_CACHE:-$${XDG_CACHE_HOME:-$$HOME/.cache}/paczfs}/lab

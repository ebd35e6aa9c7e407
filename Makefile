# paczfs: `make test` is the test command (CI runs it), `make demo` the main job.
# Both run on a fresh Debian 12 machine as root: they install what they need.

GO        ?= go
LAB       := $(GO) run ./internal/lab/cmd/lab
# Packages whose tests need the lab VM (files with the `lab` build tag).
# The lab package repository is shared in with -repo.
LAB_PKGS  := ./disk ./zfs ./pacman ./release ./image
# Images the lab builds for the boot tests, which run on this host (qemu
# with OVMF): outside the repository, beside the lab's other caches.
BOOT_DIR  ?= $(or $(PACZFS_CACHE),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/paczfs)/boot
# Host tools: qemu for the lab, debootstrap to build it, libalpm headers
# (cgo builds against the host's libalpm 13 on Debian 12), gdisk/dosfstools
# for host-side checks of written images.
HOST_DEPS := qemu-system-x86 qemu-utils ovmf debootstrap gdisk dosfstools e2fsprogs util-linux procps libalpm-dev libarchive-dev gnupg zstd openssl

.PHONY: all deps lab test test-long test-full unit lint labtest labtest-long boottest-full bench bench-pacman bench-image bench-rebuild bench-update demo clean-lab

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

# docker-registry (distribution 2.8), for the OCI release tests on
# loopback: the binary alone, taken out of Debian's package into the
# cache. Installing the package would start a registry on port 5000.
TOOLS_DIR ?= $(or $(PACZFS_CACHE),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/paczfs)/tools
REGISTRY  := $(TOOLS_DIR)/docker-registry

$(REGISTRY):
	rm -rf $(TOOLS_DIR)/deb && mkdir -p $(TOOLS_DIR)/deb
	cd $(TOOLS_DIR)/deb && { apt-get download docker-registry || { apt-get update -q && apt-get download docker-registry; }; } && \
		dpkg-deb -x docker-registry_*.deb x && install -m 0755 x/usr/bin/docker-registry $(REGISTRY)
	rm -rf $(TOOLS_DIR)/deb

lint:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags lab ./...
	$(GO) vet -tags boot ./...
	$(GO) vet -tags labhost ./...
	CGO_ENABLED=0 $(GO) vet ./...

# Tests that need no privileges and no lab; -race on everything; and the
# build without cgo (no libalpm), which must work and say so.
unit: $(REGISTRY)
	PACZFS_REQUIRE_TOOLS=1 PACZFS_REGISTRY=$(REGISTRY) $(GO) test -race -count=1 ./...
	PACZFS_REQUIRE_TOOLS=1 PACZFS_REGISTRY=$(REGISTRY) CGO_ENABLED=0 $(GO) test -count=1 ./...

# Lab tests that only test-full runs: killing builds with SIGKILL at every
# stage and recovering, four builds at once with one killed (about 4
# minutes), the same image built on a host with a hostile configuration
# compared file by file with one from a clean host (about 5), and a build
# failed by a hook at each stage, leaving the host clean (about 3): kept
# out of the per-stop run to hold a cold make test under an hour.
LONG_TESTS := ^(TestLabKillDuringEachStageThenRecover|TestLabFourBuildsAtOnceOneKilled|TestLabImageIndependentOfHost|TestLabFailureAtEachStageLeavesHostClean)$$

# Boot tests that only test-full runs: the power-cut matrix over six
# boots (about 15 minutes), the boot-environment lifecycle over five
# (about 15), the seven-boot fallback of two failing trials (about 12),
# the bootable environment with its ESP refresh (about 7, on two CPUs),
# the QCOW2 and VDI conversions (about 5 each), and a SeaBIOS machine over
# five boots (a trial that falls back by SYSLINUX's boot-once, one kept;
# about 15). Per stop: the raw image under OVMF and under SeaBIOS, a
# restart loop found unhealthy, a signed update over five boots
# (release 2 applied on release 1 after a power cut mid-receive, release
# 3 failing its check and falling back by itself), and the encrypted
# root whose passphrase is typed on the console.
FULL_BOOTS := ^(TestBootReleasePowerCuts|TestBootEnvironmentLifecycle|TestBootEnvironmentFallback|TestBootConvertedImages|TestBootBootableEnvironment|TestBootLegacyBIOSTrial)$$

# Tests that need a real kernel run inside the lab VM; the images the
# image package's lab test builds are then booted here under OVMF; then
# makepkg builds examples/arch/PKGBUILD in the lab's root (tag labhost,
# about a minute).
labtest: lab $(REGISTRY)
	rm -rf $(BOOT_DIR)
	PACZFS_REGISTRY=$(REGISTRY) $(LAB) test -repo -timeout 50m -skip '$(LONG_TESTS)' -out $(BOOT_DIR) $(LAB_PKGS)
	PACZFS_BOOT_IMAGES=$(BOOT_DIR) PACZFS_REQUIRE_LAB=1 $(GO) test -count=1 -tags boot -run '^(TestBoot|TestLabImageQCOW2$$)' -skip '$(FULL_BOOTS)' -parallel 2 -timeout 70m -v ./image
	PACZFS_REQUIRE_LAB=1 $(GO) test -count=1 -tags labhost -timeout 10m -v ./examples

# (-parallel 2: one emulated machine per CPU. Three at once on two CPUs
# slowed udev past systemd's device timeouts.)
# The boots only test-full runs, on the images labtest left.
boottest-full:
	PACZFS_BOOT_IMAGES=$(BOOT_DIR) PACZFS_REQUIRE_LAB=1 $(GO) test -count=1 -tags boot -run '$(FULL_BOOTS)' -parallel 2 -timeout 40m -v ./image

test: deps lint unit labtest

# The per-stop suite, then the longer lab tests (recovery after SIGKILL)
# and the longer boots (a signed update on a booted machine).
test-full: test labtest-long boottest-full
test-long: test-full

labtest-long: lab
	$(LAB) test -repo -timeout 30m -run '$(LONG_TESTS)' ./image

# One package's lab tests alone, e.g. make labtest-pacman.
labtest-%: lab $(REGISTRY)
	PACZFS_REGISTRY=$(REGISTRY) $(LAB) test -repo ./$*

# Benchmarks print figures; they assert nothing about speed.
bench: bench-pacman bench-image bench-rebuild bench-update

# paczfs versus pacman -Sy installing the lab base set from the same HTTP
# repository, bare and as pacstrap runs it (the API filesystems mounted):
# three runs each, each leading a round in turn, each from a fresh root
# with the page cache dropped; every run (paczfs's with where its time
# went), medians, spreads and the ratios of medians, in one VM run
# (PACZFS_BENCH_RUNS=1 makes one run each).
bench-pacman: lab
	$(LAB) test -repo -bench BenchmarkLab ./pacman

# The main job where Arch and ZFS are not at hand: builds (or reuses) the
# lab and its repository, runs examples/basic --profile lab inside the lab
# VM, boots the image under OVMF, logs in on its console and shows the
# root dataset and zpool status from inside.
demo: deps
	$(LAB) demo

clean-lab:
	rm -rf $${PACZFS_CACHE:-$${XDG_CACHE_HOME:-$$HOME/.cache}/paczfs}/lab

# A release's figures: full and incremental stream bytes, apply against
# a bare zfs receive (three runs each, alternating, medians), in one VM
# run; then release 2 derived from release 1 against release 2 built from
# scratch (about 15 minutes).
bench-update: lab
	$(LAB) test -bench BenchmarkLabUpdate -run '^$$' ./release
	$(LAB) test -repo -timeout 60m -bench BenchmarkLabDerive -run '^$$' ./image

# The lab-profile image built by paczfs and by hand with the plain tools
# (image/testdata/plain-build.sh), three times each in one VM run, each
# leading in turn, every run from a cold package cache: every run's
# stages, sizes, medians, spreads and the ratio of medians (about 41
# minutes under emulation; PACZFS_BENCH_RUNS=1 makes one run each).
bench-image: lab
	$(LAB) test -repo -timeout 120m -bench BenchmarkLabBuildImage -run '^$$' ./image

# A cold build of the lab image with an empty cache_dir, then a rebuild
# with one workstation package added and the same caches: both builds'
# stages and rebuild/cold (three pairs in one VM run, about 21 minutes;
# PACZFS_BENCH_RUNS=1 makes one pair).
bench-rebuild: lab
	$(LAB) test -repo -timeout 120m -bench BenchmarkLabRebuild -run '^$$' ./image

package disk

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/paczfs/paczfs/hooks"
)

// Errors about targets, each with its remedy.
var (
	// ErrExists: the image file exists. Remove it, choose another path, or
	// set Overwrite.
	ErrExists = errors.New("output exists")
	// ErrInUse: the block device is mounted, used as swap, held by another
	// device (md, dm) or part of an imported ZFS pool. Release it first.
	ErrInUse = errors.New("device in use")
	// ErrNotEmpty: the block device carries a partition table or filesystem
	// signature. Set Wipe to erase it, if that data is not wanted.
	ErrNotEmpty = errors.New("device not empty")
)

// Target is where the disk is written: an image file or a block device.
type Target struct {
	Path        string
	BlockDevice bool
	Size        Size
	// Created is true when this call created the file: only then may a
	// failed build remove it.
	Created bool
}

// ImageOptions tune CreateImage and CheckImagePath.
type ImageOptions struct {
	// Overwrite allows an existing file: it is truncated to zero and
	// regrown, so no old data survives. Without it ErrExists.
	Overwrite bool
}

// CreateImage creates a sparse image file of size bytes. An existing file
// is refused with ErrExists unless opt.Overwrite.
func CreateImage(path string, size Size, opt ImageOptions) (*Target, error) {
	overwrite := opt.Overwrite
	if size <= 0 || size%Alignment != 0 {
		return nil, fmt.Errorf("image %s: size %d must be a positive multiple of 1 MiB", path, size)
	}
	flags := os.O_RDWR | os.O_CREATE | os.O_EXCL
	if overwrite {
		if st, err := os.Stat(path); err == nil && !st.Mode().IsRegular() {
			return nil, fmt.Errorf("image %s: exists and is not a regular file; refusing to overwrite it", path)
		}
		flags = os.O_RDWR | os.O_CREATE | os.O_TRUNC
	}
	f, err := os.OpenFile(path, flags, 0o644)
	if errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("image %s: %w; remove it, choose another path, or allow overwriting", path, ErrExists)
	}
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", path, err)
	}
	if err := f.Truncate(int64(size)); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("image %s: grow to %d bytes: %w", path, size, err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("image %s: %w", path, err)
	}
	return &Target{Path: path, Size: size, Created: true}, nil
}

// CheckImagePath reports, without writing, whether CreateImage would
// succeed: the directory exists and the file does not (unless Overwrite).
func CheckImagePath(path string, opt ImageOptions) error {
	overwrite := opt.Overwrite
	dir := filepath.Dir(path)
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return fmt.Errorf("image %s: directory %s does not exist; create it first", path, dir)
	}
	st, err := os.Lstat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("image %s: %w", path, err)
	case !st.Mode().IsRegular():
		return fmt.Errorf("image %s: exists and is not a regular file; choose another path", path)
	case !overwrite:
		return fmt.Errorf("image %s: %w; remove it, choose another path, or allow overwriting", path, ErrExists)
	}
	return nil
}

// OpenBlockDevice checks that path is a whole block device paczfs may
// write: not mounted (nor any of its partitions), not swap, not held by md
// or dm, not a vdev of an imported pool, and, unless wipe is set, with no
// partition table or filesystem signature. With opt.Wipe, the signatures
// are erased (wipefs --all on each partition, then the disk). The runner
// runs zpool, wipefs and blkid (opt.Runner).
func OpenBlockDevice(ctx context.Context, path string, opt BlockDeviceOptions) (_ *Target, err error) {
	wipe, r := opt.Wipe, opt.runner()
	size, devs, sigs, err := inspectBlockDevice(ctx, r, path, wipe)
	if err != nil {
		return nil, err
	}
	if len(sigs) > 0 {
		// Partitions first: once the table is gone their nodes vanish.
		for i := len(devs) - 1; i >= 0; i-- {
			if _, err := r.Run(ctx, hooks.Cmd{Args: []string{"wipefs", "--all", "--force", devs[i].node}}); err != nil {
				return nil, fmt.Errorf("block device %s: wipe: %w", path, err)
			}
		}
	}
	return &Target{Path: path, BlockDevice: true, Size: Size(size)}, nil
}

// BlockDeviceOptions tune OpenBlockDevice and CheckBlockDevice.
type BlockDeviceOptions struct {
	// Wipe allows a device that holds a partition table or filesystem
	// signatures (OpenBlockDevice erases them). Never one in use.
	Wipe bool
	// Runner runs zpool, wipefs and blkid (nil: hooks.ExecRunner).
	Runner hooks.Runner
}

func (o BlockDeviceOptions) runner() hooks.Runner {
	if o.Runner == nil {
		return &hooks.ExecRunner{}
	}
	return o.Runner
}

// CheckBlockDevice runs OpenBlockDevice's checks and writes nothing: it
// returns the device's size, or the reason it may not be written.
func CheckBlockDevice(ctx context.Context, path string, opt BlockDeviceOptions) (Size, error) {
	wipe, r := opt.Wipe, opt.runner()
	size, _, _, err := inspectBlockDevice(ctx, r, path, wipe)
	return Size(size), err
}

func inspectBlockDevice(ctx context.Context, r hooks.Runner, path string, wipe bool) (int64, []blockDev, []string, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("block device %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, nil, nil, fmt.Errorf("block device %s: %w", path, err)
	}
	if st.Mode()&os.ModeDevice == 0 || st.Mode()&os.ModeCharDevice != 0 {
		return 0, nil, nil, fmt.Errorf("block device %s: not a block device; for an image file use an image path instead", path)
	}
	size, err := blockDeviceSize(f)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("block device %s: size: %w", path, err)
	}
	// The partition table and the layout are in 512-byte sectors: a
	// disk with larger logical sectors (4Kn) would get a table its
	// firmware and kernel do not find. Refused before anything is wiped.
	if ss, err := unix.IoctlGetInt(int(f.Fd()), unix.BLKSSZGET); err == nil && ss != SectorSize {
		return 0, nil, nil, fmt.Errorf("block device %s: %w: %d-byte logical sectors; paczfs writes 512-byte ones (build an image file and write it to a 512e disk, or use another disk)", path, ErrSectorSize, ss)
	}
	var sst unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &sst); err != nil {
		return 0, nil, nil, fmt.Errorf("block device %s: %w", path, err)
	}
	devs, err := deviceFamily(unix.Major(sst.Rdev), unix.Minor(sst.Rdev))
	if err != nil {
		return 0, nil, nil, fmt.Errorf("block device %s: %w", path, err)
	}
	if devs[0].partition {
		return 0, nil, nil, fmt.Errorf("block device %s: is a partition; give the whole disk", path)
	}
	if err := checkNotInUse(ctx, r, path, devs); err != nil {
		return 0, nil, nil, err
	}
	sigs, err := signatures(ctx, r, devs)
	if err != nil {
		return 0, nil, nil, err
	}
	if len(sigs) > 0 && !wipe {
		return 0, nil, nil, fmt.Errorf("block device %s: %w: %s; allow wiping to erase it", path, ErrNotEmpty, strings.Join(sigs, ", "))
	}
	return size, devs, sigs, nil
}

// ErrSectorSize: a block device whose logical sectors are not 512 bytes.
var ErrSectorSize = errors.New("unsupported logical sector size")

type blockDev struct {
	name      string // kernel name, e.g. loop0p1
	node      string // /dev/...
	dev       string // "major:minor"
	partition bool
}

// deviceFamily returns the device and its partitions, from sysfs.
func deviceFamily(major, minor uint32) ([]blockDev, error) {
	sys := fmt.Sprintf("/sys/dev/block/%d:%d", major, minor)
	real, err := filepath.EvalSymlinks(sys)
	if err != nil {
		return nil, fmt.Errorf("sysfs: %w", err)
	}
	name := filepath.Base(real)
	_, perr := os.Stat(filepath.Join(real, "partition"))
	devs := []blockDev{{name: name, node: "/dev/" + name, dev: fmt.Sprintf("%d:%d", major, minor), partition: perr == nil}}
	entries, _ := os.ReadDir(real)
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), name) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(real, e.Name(), "dev"))
		if err != nil {
			continue
		}
		devs = append(devs, blockDev{name: e.Name(), node: "/dev/" + e.Name(), dev: strings.TrimSpace(string(b)), partition: true})
	}
	return devs, nil
}

func checkNotInUse(ctx context.Context, r hooks.Runner, path string, devs []blockDev) error {
	mi, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	mounted := MountedDevices(mi)
	mi.Close()
	swaps, _ := os.ReadFile("/proc/swaps")
	swapNames := SwapDevices(string(swaps))
	for _, d := range devs {
		if m, ok := mounted[d.dev]; ok {
			return fmt.Errorf("block device %s: %w: %s is mounted on %s; unmount it first", path, ErrInUse, d.node, m)
		}
		for _, s := range swapNames {
			if filepath.Base(s) == d.name {
				return fmt.Errorf("block device %s: %w: %s is active swap; swapoff it first", path, ErrInUse, d.node)
			}
		}
		if hs, _ := os.ReadDir(fmt.Sprintf("/sys/class/block/%s/holders", d.name)); len(hs) > 0 {
			return fmt.Errorf("block device %s: %w: %s is held by %s (md, dm or LVM); release it first", path, ErrInUse, d.node, hs[0].Name())
		}
	}
	// A pool's vdevs are open with O_EXCL by the kernel module, but only
	// while imported; ask zpool, which also sees exported-but-cached pools.
	out, err := r.Run(ctx, hooks.Cmd{Args: []string{"zpool", "list", "-v", "-H", "-P", "-o", "name"}})
	var ce *hooks.CmdError
	// No zpool on the host, or no ZFS module loaded (exit 1): no pool can hold the device.
	if err != nil && !errors.Is(err, exec.ErrNotFound) && !(errors.As(err, &ce) && ce.ExitCode > 0) {
		return fmt.Errorf("block device %s: list pools: %w", path, err)
	}
	if err == nil {
		for pool, vdevs := range PoolVdevs(string(out)) {
			for _, v := range vdevs {
				for _, d := range devs {
					if sameDevice(v, d.dev) {
						return fmt.Errorf("block device %s: %w: %s is a vdev of imported pool %q; export it first", path, ErrInUse, d.node, pool)
					}
				}
			}
		}
	}
	return checkNotClaimed(path, devs)
}

// checkNotClaimed is the kernel's own answer, asked last: an O_EXCL open
// of a block device fails with EBUSY while anything claims it (a mounted
// filesystem, swap, md/dm, a ZFS vdev, another program's O_EXCL open).
// The checks above give the clearer messages, but mountinfo only shows
// this process's mount namespace: a filesystem mounted in another
// namespace (a container, a systemd unit with PrivateMounts, a
// CLONE_NEWNS thread) is invisible there and is caught only here.
func checkNotClaimed(path string, devs []blockDev) error {
	for _, d := range devs {
		f, err := os.OpenFile(d.node, os.O_RDONLY|unix.O_EXCL|unix.O_CLOEXEC, 0)
		switch {
		case err == nil:
			f.Close()
		case errors.Is(err, unix.EBUSY):
			return fmt.Errorf("block device %s: %w: %s is claimed by the kernel (mounted, perhaps in another mount namespace, or opened exclusively by another program); release it first", path, ErrInUse, d.node)
		case errors.Is(err, os.ErrNotExist):
			// No device node (a partition udev has not created yet): nothing can have opened it by that name, and sysfs holders were checked.
		default:
			return fmt.Errorf("block device %s: exclusive open of %s: %w", path, d.node, err)
		}
	}
	return nil
}

func sameDevice(path, dev string) bool {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return false
	}
	return fmt.Sprintf("%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev)) == dev
}

// signatures lists what wipefs finds on the device and its partitions.
func signatures(ctx context.Context, r hooks.Runner, devs []blockDev) ([]string, error) {
	var out []string
	for _, d := range devs {
		b, err := r.Run(ctx, hooks.Cmd{Args: []string{"wipefs", "--no-act", "--noheadings", "--output", "TYPE,OFFSET", d.node}})
		if err != nil {
			return nil, fmt.Errorf("signatures of %s: %w", d.node, err)
		}
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			if f := strings.Fields(l); len(f) > 0 {
				out = append(out, d.node+": "+strings.Join(f, " at "))
			}
		}
	}
	return out, nil
}

// MountedDevices parses /proc/self/mountinfo into "major:minor" -> mount point.
func MountedDevices(r io.Reader) map[string]string {
	m := map[string]string{}
	s := bufio.NewScanner(r)
	for s.Scan() {
		f := strings.Fields(s.Text())
		if len(f) < 5 {
			continue
		}
		if _, ok := m[f[2]]; !ok {
			m[f[2]] = unescapeMount(f[4])
		}
	}
	return m
}

// unescapeMount decodes the octal escapes (\040 for space) of mountinfo.
func unescapeMount(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// SwapDevices parses /proc/swaps into the swap file and device paths.
func SwapDevices(s string) []string {
	var out []string
	for i, l := range strings.Split(s, "\n") {
		if f := strings.Fields(l); i > 0 && len(f) > 0 {
			out = append(out, unescapeMount(f[0]))
		}
	}
	return out
}

// PoolVdevs parses `zpool list -v -H -P -o name` into pool -> vdev paths.
// Pool lines start in the first column; vdev lines are indented by a tab
// and a path, or name a group (mirror-0) or a class (logs, cache).
func PoolVdevs(out string) map[string][]string {
	m := map[string][]string{}
	pool := ""
	for _, l := range strings.Split(out, "\n") {
		if strings.TrimSpace(l) == "" {
			continue
		}
		if !strings.HasPrefix(l, "\t") && !strings.HasPrefix(l, " ") {
			pool = strings.Fields(l)[0]
			m[pool] = m[pool][:0:0]
			continue
		}
		f := strings.Fields(l)
		if pool != "" && len(f) > 0 && strings.HasPrefix(f[0], "/") {
			m[pool] = append(m[pool], f[0])
		}
	}
	return m
}

func blockDeviceSize(f *os.File) (int64, error) {
	var size uint64
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, err
	}
	var ierr error
	if err := rc.Control(func(fd uintptr) {
		size, ierr = ioctlGetUint64(int(fd), unix.BLKGETSIZE64)
	}); err != nil {
		return 0, err
	}
	return int64(size), ierr
}

package disk

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// ErrLoopBusy: a detached loop device is still held by someone else (a
// mount, an imported pool, a process with it open). It will go away by
// itself when they release it (it was attached with autoclear); find the
// holder with `losetup -l`, `zpool list -v` or `fuser -m`.
var ErrLoopBusy = errors.New("loop device still in use")

// LoopOptions says how to attach a file.
type LoopOptions struct {
	ReadOnly  bool
	Offset    Size // bytes into the file
	SizeLimit Size // bytes; 0 = to the end of the file
	// PartScan asks the kernel to create partition nodes (/dev/loopNpM).
	PartScan bool
}

// Loop is a loop device attached by this process. Only this process's own
// Loop value can detach it: it holds the device open, so the number can
// never be reused under it, and detaching a stale Loop is a no-op.
//
// Devices are attached with autoclear: if the process dies, the kernel
// detaches the device as soon as nothing else holds it.
type Loop struct {
	// Path is the device node, /dev/loopN.
	Path    string
	Number  int
	backing string
	f       *os.File
}

// Attach binds a file to a free loop device in one LOOP_CONFIGURE call
// (kernel 5.8 or later). Concurrent attaches from many processes are safe:
// when another process takes the free device first, Attach picks another.
func Attach(ctx context.Context, file string, opt LoopOptions) (*Loop, error) {
	abs, err := BackingPath(file)
	if err != nil {
		return nil, err
	}
	mode := os.O_RDWR
	if opt.ReadOnly {
		mode = os.O_RDONLY
	}
	backing, err := os.OpenFile(abs, mode|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("loop attach %s: %w", file, err)
	}
	// The kernel keeps its own reference to the backing file.
	defer backing.Close()
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("loop attach %s: %w", file, err)
	}
	defer ctl.Close()

	cfg := unix.LoopConfig{Fd: uint32(backing.Fd())}
	cfg.Info.Offset = uint64(opt.Offset)
	cfg.Info.Sizelimit = uint64(opt.SizeLimit)
	cfg.Info.Flags = unix.LO_FLAGS_AUTOCLEAR
	if opt.PartScan {
		cfg.Info.Flags |= unix.LO_FLAGS_PARTSCAN
	}
	if opt.ReadOnly {
		cfg.Info.Flags |= unix.LO_FLAGS_READ_ONLY
	}
	copy(cfg.Info.File_name[:len(cfg.Info.File_name)-1], abs)

	var lastErr error
	for attempt := 0; attempt < 64; attempt++ {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("loop attach %s: %w", file, err)
		}
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return nil, fmt.Errorf("loop attach %s: find a free device: %w", file, err)
		}
		path := fmt.Sprintf("/dev/loop%d", n)
		lf, err := os.OpenFile(path, mode|unix.O_CLOEXEC, 0)
		if err != nil {
			// The node of a freshly added device can lag behind (devtmpfs, udev).
			lastErr = err
			time.Sleep(time.Duration(attempt+1) * 5 * time.Millisecond)
			continue
		}
		err = unix.IoctlLoopConfigure(int(lf.Fd()), &cfg)
		if err == nil {
			return &Loop{Path: path, Number: n, backing: abs, f: lf}, nil
		}
		lf.Close()
		lastErr = err
		if !errors.Is(err, unix.EBUSY) {
			return nil, fmt.Errorf("loop attach %s to %s: %w", file, path, err)
		}
		// Another process configured this device between GET_FREE and
		// CONFIGURE; ask for another one.
	}
	return nil, fmt.Errorf("loop attach %s: no free device after 64 tries: %w", file, lastErr)
}

// PartitionPath returns the node of partition n: /dev/loopNpM.
func (l *Loop) PartitionPath(n int) string { return fmt.Sprintf("%sp%d", l.Path, n) }

// WaitPartitions waits until the nodes of the given partitions exist as
// block devices, or timeout passes. The kernel creates them on a partition
// scan; devtmpfs or udev make the nodes a moment later.
func (l *Loop) WaitPartitions(ctx context.Context, timeout time.Duration, numbers ...int) error {
	deadline := time.Now().Add(timeout)
	for {
		missing := ""
		for _, n := range numbers {
			st, err := os.Stat(l.PartitionPath(n))
			if err != nil || st.Mode()&os.ModeDevice == 0 {
				missing = l.PartitionPath(n)
				break
			}
		}
		if missing == "" {
			return nil
		}
		if time.Now().After(deadline) {
			hint := ""
			if _, err := os.Stat(fmt.Sprintf("/sys/block/loop%d/loop%dp%d", l.Number, l.Number, numbers[0])); err != nil {
				hint = " (the kernel made no partitions: was the table written, and does this kernel have GPT support (CONFIG_EFI_PARTITION)?)"
			}
			return fmt.Errorf("loop %s: partition node %s did not appear within %v%s", l.Path, missing, timeout, hint)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("loop %s: wait for partitions: %w", l.Path, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Rescan asks the kernel to re-read the partition table (after writing a
// GPT through the loop device).
func (l *Loop) Rescan() error {
	if l.f == nil {
		return fmt.Errorf("loop %s: already detached", l.Path)
	}
	if err := unix.IoctlSetInt(int(l.f.Fd()), unix.BLKRRPART, 0); err != nil {
		return fmt.Errorf("loop %s: re-read partition table: %w", l.Path, err)
	}
	return nil
}

// Detach releases the device and verifies that it is gone: it returns nil
// once the device no longer serves this Loop's file, or an error wrapping
// ErrLoopBusy when something else still holds it after timeout (it then
// detaches itself on release). Detach on an already detached Loop does
// nothing, and Detach never touches a device another process attached.
func (l *Loop) Detach(ctx context.Context, timeout time.Duration) error {
	if l.f == nil {
		return nil
	}
	// Clearing through our own descriptor can only ever hit our device.
	err := unix.IoctlSetInt(int(l.f.Fd()), unix.LOOP_CLR_FD, 0)
	if err != nil && !errors.Is(err, unix.ENXIO) {
		// EBUSY on old kernels with other openers: autoclear still applies.
		if !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("loop %s: detach: %w", l.Path, err)
		}
	}
	l.f.Close()
	l.f = nil
	deadline := time.Now().Add(timeout)
	for {
		if !l.stillOurs() {
			return nil
		}
		if time.Now().After(deadline) {
			holders, _ := os.ReadDir(fmt.Sprintf("/sys/block/loop%d/holders", l.Number))
			var names []string
			for _, h := range holders {
				names = append(names, h.Name())
			}
			return fmt.Errorf("loop %s (%s): %w after %v (holders: %s)", l.Path, l.backing, ErrLoopBusy, timeout, strings.Join(names, ","))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("loop %s: detach: %w", l.Path, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// stillOurs reports whether the device still serves our backing file.
func (l *Loop) stillOurs() bool {
	b, err := os.ReadFile(fmt.Sprintf("/sys/block/loop%d/loop/backing_file", l.Number))
	if err != nil {
		return false // no backing file: detached
	}
	return strings.TrimSuffix(strings.TrimSpace(string(b)), " (deleted)") == l.backing
}

// BackingPath is path as the kernel names a loop device's backing file:
// absolute, its links resolved (a /dev/disk/by-id/ name is the device's
// own /dev/sdX).
func BackingPath(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	if r, err := filepath.EvalSymlinks(abs); err == nil {
		return r, nil
	}
	return abs, nil
}

// AttachedLoops lists the loop devices whose backing file is path, from
// sysfs: for tests and for checking that a host is clean.
func AttachedLoops(path string) ([]string, error) {
	abs, err := BackingPath(path)
	if err != nil {
		return nil, err
	}
	files, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	var out []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err == nil && strings.TrimSuffix(strings.TrimSpace(string(b)), " (deleted)") == abs {
			out = append(out, "/dev/"+filepath.Base(filepath.Dir(filepath.Dir(f))))
		}
	}
	return out, nil
}

// DetachBacking detaches every loop device that serves backing (an image
// file or block device): for recovering what a killed build left. Each
// device is opened and asked, through that descriptor, what it serves
// before it is cleared, so a device another process attached to another
// file meanwhile is never touched. It returns the devices it cleared.
func DetachBacking(ctx context.Context, backing string, timeout time.Duration) ([]string, error) {
	abs, err := BackingPath(backing)
	if err != nil {
		return nil, err
	}
	devs, err := AttachedLoops(abs)
	if err != nil {
		return nil, err
	}
	// The backing file's identity: the kernel keeps only the first 63
	// bytes of its name, but its device and inode whole.
	var want unix.Stat_t
	if err := unix.Stat(abs, &want); err != nil {
		return nil, nil // gone: nothing serves it
	}
	var done []string
	var errs []error
	for _, dev := range devs {
		f, err := os.OpenFile(dev, os.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			continue // gone meanwhile
		}
		info, err := unix.IoctlLoopGetStatus64(int(f.Fd()))
		if err != nil || info.Device != uint64(want.Dev) || info.Inode != want.Ino {
			f.Close()
			continue // another file now, or unreadable: not ours to clear
		}
		var n int
		fmt.Sscanf(filepath.Base(dev), "loop%d", &n)
		l := &Loop{Path: dev, Number: n, backing: abs, f: f}
		if err := l.Detach(ctx, timeout); err != nil {
			errs = append(errs, err)
			continue
		}
		done = append(done, dev)
	}
	return done, errors.Join(errs...)
}

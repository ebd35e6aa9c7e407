package ovmf

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/paczfs/paczfs/hooks"
)

// Firmware locations, Debian's ovmf package first.
var (
	codePaths = []string{"/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/edk2/x64/OVMF_CODE.4m.fd"}
	varsPaths = []string{"/usr/share/OVMF/OVMF_VARS_4M.fd", "/usr/share/OVMF/OVMF_VARS.fd", "/usr/share/edk2/x64/OVMF_VARS.4m.fd"}
)

// ErrNoFirmware: no OVMF firmware is installed.
var ErrNoFirmware = errors.New("no OVMF firmware found (install the ovmf package)")

// Options describe one boot.
type Options struct {
	Image  string
	Format string // raw, qcow2, vdi... as qemu-img names them
	// Memory in MiB (default 2048) and CPUs (default 1).
	Memory, CPUs int
	// Console receives the serial console as it is written (may be nil).
	Console io.Writer
	// Timeout bounds the whole boot (default 15 minutes): the guest is
	// expected to power itself off.
	Timeout time.Duration
	// Runner runs qemu (default hooks.ExecRunner).
	Runner hooks.Runner
	// Expect types on the serial console: each step waits for its text
	// to appear, then sends its input (a login, a command).
	Expect []Step
	// Writable writes the guest's changes to Image (by default they go
	// to a temporary overlay and are lost): for several boots of one
	// machine.
	Writable bool
	// VarsFile, when set, is the machine's EFI variable store, kept
	// between boots (one-shot entries, boot counting's variables): made
	// from the firmware's template when missing. Empty: a fresh store
	// per boot.
	VarsFile string
	// CutPower, when set, stops qemu as soon as the console shows this
	// text (a signal: qemu quits at once, the guest is not told, what it
	// had not written is lost, as in a power cut); Boot then returns
	// ErrPowerCut.
	CutPower string
	// BIOS boots with qemu's own legacy BIOS (SeaBIOS) instead of OVMF:
	// the image's MBR boot code, not its EFI System Partition's loader.
	BIOS bool
	// Disks are more disks for the guest, read-only raw files: each is
	// /dev/disk/by-id/virtio-<Serial> there (a release handed to the
	// guest as a file).
	Disks []Disk
}

// Disk is an extra read-only disk.
type Disk struct {
	Path   string
	Serial string // at most 20 characters: letters, digits, - and _
}

// ErrPowerCut: Boot killed the machine where Options.CutPower said.
var ErrPowerCut = errors.New("power cut")

// Step is one exchange on the serial console.
type Step struct {
	Wait string
	Send string
}

// Firmware returns the OVMF code and variable-store templates.
func Firmware() (code, vars string, err error) {
	for i, c := range codePaths {
		if _, err := os.Stat(c); err == nil {
			if _, err := os.Stat(varsPaths[i]); err == nil {
				return c, varsPaths[i], nil
			}
		}
	}
	return "", "", ErrNoFirmware
}

// Args returns the qemu command line. vars is a writable copy of the
// variable store.
func Args(o Options, code, vars string) []string {
	mem, cpus := o.Memory, o.CPUs
	if mem == 0 {
		mem = 2048
	}
	if cpus == 0 {
		cpus = 1
	}
	// TCG unless told otherwise, like the lab: KVM is advertised on some
	// build machines and then never runs a guest (measured here).
	accel, cpu := "tcg", "qemu64,+rdrand"
	if a := os.Getenv("PACZFS_LAB_ACCEL"); a != "" && a != "tcg" {
		accel, cpu = a, "host"
	}
	args := []string{
		"qemu-system-x86_64", "-machine", "q35", "-accel", accel, "-cpu", cpu,
		"-m", strconv.Itoa(mem), "-smp", strconv.Itoa(cpus),
		"-nodefaults", "-display", "none", "-no-reboot", "-serial", "stdio",
	}
	if !o.BIOS {
		args = append(args, "-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+code,
			"-drive", "if=pflash,format=raw,unit=1,file="+vars)
	}
	args = append(args,
		"-drive", "file="+o.Image+",format="+o.Format+",if=virtio"+map[bool]string{false: ",snapshot=on", true: ""}[o.Writable],
		"-netdev", "user,id=net0", "-device", "virtio-net-pci,netdev=net0",
		"-device", "virtio-rng-pci",
	)
	for i, d := range o.Disks {
		id := "extra" + strconv.Itoa(i)
		args = append(args, "-drive", "file="+d.Path+",format=raw,if=none,readonly=on,id="+id,
			"-device", "virtio-blk-pci,drive="+id+",serial="+d.Serial)
	}
	return args
}

// Boot boots the image and returns the serial console's transcript once
// the guest powers off. On timeout or cancellation qemu is stopped and the
// transcript so far is returned with the error.
func Boot(ctx context.Context, o Options) (string, error) {
	if _, err := os.Stat(o.Image); err != nil {
		return "", fmt.Errorf("boot: %w", err)
	}
	var code, vars string
	if !o.BIOS {
		c, varsTemplate, err := Firmware()
		if err != nil {
			return "", err
		}
		dir, err := os.MkdirTemp("", "paczfs-ovmf-")
		if err != nil {
			return "", err
		}
		defer os.RemoveAll(dir)
		code, vars = c, o.VarsFile
		if vars == "" {
			vars = filepath.Join(dir, "vars.fd")
		}
		if _, err := os.Stat(vars); o.VarsFile == "" || os.IsNotExist(err) {
			data, err := os.ReadFile(varsTemplate)
			if err != nil {
				return "", err
			}
			if err := os.WriteFile(vars, data, 0o600); err != nil {
				return "", err
			}
		}
	}
	timeout := o.Timeout
	if timeout == 0 {
		timeout = 15 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	r := o.Runner
	if r == nil {
		r = &hooks.ExecRunner{}
	}
	var transcript syncBuffer
	var w io.Writer = &transcript
	if o.Console != nil {
		w = io.MultiWriter(&transcript, o.Console)
	}
	var stdin io.Reader
	if len(o.Expect) > 0 {
		pr, pw := io.Pipe()
		defer pw.Close()
		stdin = pr
		w = io.MultiWriter(w, &expecter{steps: o.Expect, input: pw})
	}
	var cut *cutter
	if o.CutPower != "" {
		var cancelRun context.CancelFunc
		ctx, cancelRun = context.WithCancel(ctx)
		defer cancelRun()
		cut = &cutter{text: []byte(o.CutPower), cut: cancelRun}
		w = io.MultiWriter(w, cut)
	}
	_, err := r.Run(ctx, hooks.Cmd{Args: Args(o, code, vars), Stdout: w, Stdin: stdin})
	if cut != nil && cut.done {
		return transcript.String(), fmt.Errorf("boot %s: %w at %q", o.Image, ErrPowerCut, o.CutPower)
	}
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("boot %s: no power-off within %s: %w", o.Image, timeout, err)
		}
		return transcript.String(), err
	}
	return transcript.String(), nil
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// cutter cancels the run (qemu is killed) once its text appears.
type cutter struct {
	text []byte
	seen []byte
	cut  func()
	done bool
}

func (c *cutter) Write(p []byte) (int, error) {
	if c.done {
		return len(p), nil
	}
	c.seen = append(c.seen, p...)
	if bytes.Contains(c.seen, c.text) {
		c.done = true
		c.cut()
	}
	if keep := len(c.text) + 4096; len(c.seen) > keep {
		c.seen = c.seen[len(c.seen)-keep:]
	}
	return len(p), nil
}

// expecter watches the console and sends each step's input once its text
// has appeared after the previous step's.
type expecter struct {
	steps []Step
	seen  []byte
	input io.Writer
}

func (e *expecter) Write(p []byte) (int, error) {
	e.seen = append(e.seen, p...)
	for len(e.steps) > 0 {
		i := bytes.Index(e.seen, []byte(e.steps[0].Wait))
		if i < 0 {
			break
		}
		e.seen = e.seen[i+len(e.steps[0].Wait):]
		send := e.steps[0].Send
		e.steps = e.steps[1:]
		// Sent from a goroutine: the pipe blocks until qemu reads it,
		// and qemu's output must keep flowing meanwhile.
		go func() { _, _ = io.WriteString(e.input, send) }()
	}
	if len(e.seen) > 4096 {
		e.seen = e.seen[len(e.seen)-4096:]
	}
	return len(p), nil
}

// Command paczfs-bootenv manages the boot environments of a running paczfs
// system: every image carries it as /usr/local/sbin/paczfs-bootenv, with
// the units that call its check, good, sync and watchdog commands on each
// boot. It is a thin layer over the bootenv package.
//
//	paczfs-bootenv list|status [--json]
//	paczfs-bootenv create NAME [--from ENV|DATASET|SNAPSHOT] [--empty]
//	paczfs-bootenv activate NAME [--once | --try N]
//	paczfs-bootenv rename OLD NEW
//	paczfs-bootenv destroy NAME
//	paczfs-bootenv rollback NAME
//	paczfs-bootenv mount NAME DIR [--ro]; paczfs-bootenv umount DIR
//	paczfs-bootenv nspawn NAME [ARG...]
//	paczfs-bootenv apply DIR|URL|oci://REF|- [--name N] [--try N] [--work DIR] [--insecure-registry]
//	paczfs-bootenv check [--reboot-trial] | good | sync | watchdog   (run by the image's units)
//
// Build it without cgo, so it runs on any target: CGO_ENABLED=0 go build
// ./examples/bootenv.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/paczfs/paczfs/bootenv"
	"github.com/paczfs/paczfs/hooks"
	"github.com/paczfs/paczfs/release"
	"github.com/paczfs/paczfs/release/oci"
)

const usage = `usage: paczfs-bootenv [global flags] COMMAND [ARGS]

Commands:
  list                     the boot environments and their state
  status                   what booted, what is the default, what boots next
  create NAME              a new environment from the booted one
      --from X             ... or from an environment, dataset or snapshot
      --empty              ... or empty, to receive a stream into
  activate NAME            boot NAME from now on (bootfs, loader, entries)
      --once               ... for the next boot only
      --try N              ... as a trial: N boots at most, then fall back
                           (under legacy BIOS: SYSLINUX's boot-once, one try)
  rename OLD NEW           rename an environment (not the booted one)
  destroy NAME             destroy one (not the booted, default or last good)
  rollback NAME            a new environment from NAME's last good snapshot, activated
  mount NAME DIR [--ro]    mount an environment for inspection; umount DIR
  nspawn NAME [ARG...]     boot it in systemd-nspawn on an ephemeral copy
  apply SRC                a signed release: verified, received, a trial. SRC is a directory
                           (manifest.json, .sig, streams), an http(s):// URL of one (a cut
                           download resumes), oci://REGISTRY/REPO:TAG, or - (an archive on stdin)
      --name N --try N     ... its environment's name, its tries
      --work DIR           ... where a fetched release is kept until received
  check [--reboot-trial]   run by paczfs-boot-check.service: is this boot good?
  good                     run by paczfs-boot-good.service: record a good boot
  sync                     run at shutdown: make the loader boot what bootfs names
  watchdog                 run on trial boots: reboot one that does not complete
  help                     this text, on standard output

Global flags:
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

type globals struct {
	config, esp, pool string
	image, json, v    bool
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var g globals
	fs := flag.NewFlagSet("paczfs-bootenv", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&g.config, "config", bootenv.DeviceConfig, "the device configuration (missing: defaults)")
	fs.StringVar(&g.esp, "esp", "", "where the ESP is mounted (default: the configuration's, /efi)")
	fs.StringVar(&g.pool, "pool", "", "the pool (default: that of /)")
	fs.BoolVar(&g.image, "image", false, "manage an imported image's pool, not the running system (needs --pool and --esp)")
	fs.BoolVar(&g.json, "json", false, "print JSON")
	fs.BoolVar(&g.v, "v", false, "log what is done to standard error")
	fs.Usage = func() { fmt.Fprint(stderr, usage); fs.PrintDefaults() }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return 2
	}
	// Flags may also follow the command's arguments.
	cmd, rest := fs.Arg(0), fs.Args()[1:]
	if cmd == "help" {
		// Usage needs no booted system: print it to standard output.
		fs.SetOutput(stdout)
		fmt.Fprint(stdout, usage)
		fs.PrintDefaults()
		return 0
	}
	if err := dispatch(ctx, g, cmd, rest, stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "paczfs-bootenv %s: %v\n", cmd, err)
		var ue usageError
		if errors.As(err, &ue) {
			return 2
		}
		return 1
	}
	return 0
}

type usageError string

func (u usageError) Error() string { return string(u) }

func loadDevice(path string) (bootenv.Device, error) {
	d := bootenv.DefaultDevice()
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return d, nil
	}
	if err != nil {
		return d, err
	}
	if err := json.Unmarshal(data, &d); err != nil {
		return d, fmt.Errorf("%s: %w", path, err)
	}
	return d, d.Validate()
}

func dispatch(ctx context.Context, g globals, cmd string, args []string, stdout, stderr io.Writer) error {
	dev, err := loadDevice(g.config)
	if err != nil {
		return err
	}
	if g.esp == "" {
		g.esp = dev.ESP
	}
	log := slog.New(slog.DiscardHandler)
	if g.v {
		log = slog.New(slog.NewTextHandler(stderr, nil))
	}
	sub := flag.NewFlagSet(cmd, flag.ContinueOnError)
	sub.SetOutput(stderr)
	from := sub.String("from", "", "create: the source (environment, dataset or snapshot)")
	empty := sub.Bool("empty", false, "create: an empty environment")
	once := sub.Bool("once", false, "activate: for the next boot only")
	try := sub.Int("try", 0, "activate: as a trial with N tries")
	ro := sub.Bool("ro", false, "mount: read-only")
	rebootTrial := sub.Bool("reboot-trial", false, "check: reboot a failing trial boot")
	envName := sub.String("name", "", "apply: the new environment's name (default release-<version>)")
	keys := sub.String("keys", release.KeysDir, "apply: the directory of trusted release keys")
	work := sub.String("work", release.DefaultWorkDir, "apply: where a fetched release is kept until received")
	insecure := sub.Bool("insecure-registry", false, "apply: reach an oci:// registry over plain HTTP")
	sub.BoolVar(&g.json, "json", g.json, "print JSON")
	var pos []string
	for len(args) > 0 {
		if err := sub.Parse(args); err != nil {
			return usageError(err.Error())
		}
		if sub.NArg() == 0 {
			break
		}
		pos = append(pos, sub.Arg(0))
		args = sub.Args()[1:]
		if cmd == "nspawn" && len(pos) == 1 {
			pos = append(pos, args...)
			break
		}
	}
	need := func(n int, what string) error {
		if len(pos) != n {
			return usageError(fmt.Sprintf("want %s (see paczfs-bootenv -h)", what))
		}
		return nil
	}
	opts := []bootenv.Option{bootenv.WithRunner(&hooks.ExecRunner{Logger: log}), bootenv.WithLogger(log),
		bootenv.WithESP(g.esp), bootenv.WithKeepGood(dev.KeepGood)}
	if g.pool != "" {
		opts = append(opts, bootenv.WithPool(g.pool))
	}
	if g.image {
		opts = append(opts, bootenv.WithImage())
	}
	m, err := bootenv.New(ctx, opts...)
	if err != nil {
		return err
	}
	out := func(v any, human func(w io.Writer)) error {
		if g.json {
			enc := json.NewEncoder(stdout)
			return enc.Encode(v)
		}
		human(stdout)
		return nil
	}
	switch cmd {
	case "list":
		envs, err := m.List(ctx)
		if err != nil {
			return err
		}
		return out(envs, func(w io.Writer) { printList(w, envs) })
	case "status":
		s, err := m.Status(ctx)
		if err != nil {
			return err
		}
		return out(s, func(w io.Writer) {
			fmt.Fprintf(w, "booted:  %s%s\ndefault: %s\nnext:    %s\n", s.Booted, map[bool]string{true: " (trial)"}[s.Trial], s.Default, s.Next)
			fmt.Fprintln(w)
			printList(w, s.Envs)
		})
	case "create":
		if err := need(1, "create NAME"); err != nil {
			return err
		}
		if err := m.Create(ctx, pos[0], bootenv.CreateOptions{From: *from, Empty: *empty}); err != nil {
			return err
		}
		return out(map[string]string{"created": pos[0]}, func(w io.Writer) { fmt.Fprintf(w, "created %s\n", pos[0]) })
	case "activate":
		if err := need(1, "activate NAME [--once | --try N]"); err != nil {
			return err
		}
		o := bootenv.ActivateOptions{Mode: bootenv.Permanent}
		how := "from now on"
		switch {
		case *once && *try > 0:
			return usageError("--once and --try exclude each other")
		case *once:
			o.Mode, how = bootenv.Once, "for the next boot only"
		case *try > 0:
			o.Mode, o.Tries, how = bootenv.Trial, *try, "as a trial with "+strconv.Itoa(*try)+" tries"
			if m.LegacyBIOS() {
				how = "as a trial with one try (legacy BIOS: SYSLINUX's boot-once)"
			}
		}
		if err := m.Activate(ctx, pos[0], o); err != nil {
			return err
		}
		return out(map[string]string{"activated": pos[0], "how": how}, func(w io.Writer) { fmt.Fprintf(w, "%s boots %s\n", pos[0], how) })
	case "rename":
		if err := need(2, "rename OLD NEW"); err != nil {
			return err
		}
		return m.Rename(ctx, pos[0], pos[1])
	case "destroy":
		if err := need(1, "destroy NAME"); err != nil {
			return err
		}
		return m.Destroy(ctx, pos[0])
	case "rollback":
		if err := need(1, "rollback NAME"); err != nil {
			return err
		}
		name, err := m.Rollback(ctx, pos[0])
		if err != nil {
			return err
		}
		return out(map[string]string{"activated": name}, func(w io.Writer) { fmt.Fprintf(w, "%s boots from now on\n", name) })
	case "mount":
		if err := need(2, "mount NAME DIR"); err != nil {
			return err
		}
		return m.Mount(ctx, pos[0], pos[1], *ro)
	case "umount":
		if err := need(1, "umount DIR"); err != nil {
			return err
		}
		return m.Unmount(ctx, pos[0])
	case "nspawn":
		if len(pos) < 1 {
			return usageError("want nspawn NAME [ARG...]")
		}
		return m.Nspawn(ctx, pos[0], hooks.Cmd{Stdin: os.Stdin, Stdout: stdout}, pos[1:]...)
	case "apply":
		if err := need(1, "apply DIR|URL|oci://REF|- [--name N] [--try N]"); err != nil {
			return err
		}
		trusted, err := release.TrustedKeys(*keys)
		if err != nil {
			return err
		}
		o := release.ApplyOptions{Dir: pos[0], Trusted: trusted, Name: *envName, Tries: *try,
			Runner: &hooks.ExecRunner{Logger: log}, Logger: log}
		// A directory is applied in place; anything else is fetched
		// into the work directory first.
		if ref, ok := strings.CutPrefix(pos[0], "oci://"); ok {
			if o.Source, err = oci.NewSource(ctx, ref, oci.Options{Insecure: *insecure}); err != nil {
				return err
			}
		} else if !isDir(pos[0]) {
			if o.Source, err = release.OpenSource(pos[0], os.Stdin); err != nil {
				return err
			}
		}
		if o.Source != nil {
			o.Dir = *work
		}
		if at := os.Getenv("PACZFS_TEST_PAUSE"); at != "" {
			o.Step = pauseAt(release.Step(at))
		}
		r, err := release.Apply(ctx, m, o)
		if err != nil {
			return err
		}
		return out(r, func(w io.Writer) {
			fmt.Fprintf(w, "release %s (%s stream, signed by %s) is %s, a trial: reboot to try it\n", r.Version, r.Stream, r.Signer, r.Env)
		})
	case "check":
		res, err := m.Check(ctx, bootenv.CheckOptions{Health: dev.Health, Dir: bootenv.ChecksDir, Reboot: *rebootTrial})
		_ = out(res, func(w io.Writer) {
			for _, p := range res.Problems {
				fmt.Fprintf(w, "problem: %s\n", p)
			}
			fmt.Fprintf(w, "healthy=%v trial=%v rebooting=%v\n", res.Healthy, res.Trial, res.Rebooting)
		})
		return err
	case "good":
		r, err := m.Good(ctx)
		if err != nil {
			return err
		}
		return out(r, func(w io.Writer) {
			fmt.Fprintf(w, "%s booted well; blessed=%v promoted=%v snapshot=%s", r.Env, r.Blessed, r.Promoted, r.Snapshot)
			if len(r.Bad) > 0 {
				fmt.Fprintf(w, " bad=%s", strings.Join(r.Bad, ","))
			}
			fmt.Fprintln(w)
		})
	case "sync":
		r, err := m.Sync(ctx)
		if err != nil {
			return err
		}
		return out(r, func(w io.Writer) {
			if r.Activated != "" {
				fmt.Fprintf(w, "bootfs is %s: %s now boots\n", r.Bootfs, r.Activated)
			}
		})
	case "watchdog":
		return m.Watchdog(ctx, dev.WatchdogTimeout(), 5*time.Second)
	}
	return usageError(fmt.Sprintf("unknown command %q (see paczfs-bootenv -h)", cmd))
}

func printList(w io.Writer, envs []bootenv.Environment) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATE\tFLAGS\tKERNEL\tLAST GOOD\tUSED\tORIGIN")
	for _, e := range envs {
		var flags []string
		if e.Booted {
			flags = append(flags, "booted")
		}
		if e.Default {
			flags = append(flags, "default")
		}
		if e.NextOnce {
			flags = append(flags, "next")
		}
		if e.TriesLeft >= 0 {
			flags = append(flags, fmt.Sprintf("tries=%d/%d", e.TriesLeft, e.TriesLeft+e.TriesDone))
		}
		good := "-"
		if !e.LastGood.IsZero() {
			good = e.LastGood.Format(time.RFC3339)
		}
		origin := e.Origin
		if origin == "" {
			origin = "-"
		}
		fl := strings.Join(flags, ",")
		if fl == "" {
			fl = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Name, e.State, fl, orDash(e.Kernel), good, human(e.Used), origin)
	}
	tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func human(b uint64) string {
	const unit = 1024
	if b < unit {
		return fmt.Sprintf("%dB", b)
	}
	div, exp := uint64(unit), 0
	for n := b / unit; n >= unit; n /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f%c", float64(b)/float64(div), "KMGTPE"[exp])
}

// isDir reports whether path is a directory on this machine.
func isDir(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.IsDir()
}

// pauseAt is fault injection for the power-cut tests
// (PACZFS_TEST_PAUSE=STEP): at that step of apply it says so on the
// kernel log (the serial console) and waits to be killed, as a machine
// whose power is cut there would stop.
func pauseAt(at release.Step) func(release.Step) {
	return func(s release.Step) {
		if s != at {
			return
		}
		msg := "PACZFS-PAUSE " + string(s) + "\n"
		if f, err := os.OpenFile("/dev/kmsg", os.O_WRONLY, 0); err == nil {
			f.WriteString("<2>" + msg)
			f.Close()
		}
		os.Stderr.WriteString(msg)
		for {
			time.Sleep(time.Hour)
		}
	}
}

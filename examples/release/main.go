// Command paczfs-release makes release keys and releases (the build side
// of signed updates; devices apply them with paczfs-bootenv apply):
//
//	paczfs-release keygen NAME PREFIX      # PREFIX.key (secret, 0600) and PREFIX.asc (public)
//	paczfs-release write --snapshot POOL/system/default@v2 [--base POOL/system/default@v1] \
//	    --version 2 [--previous 1] --key PREFIX.key --dir OUT
//	paczfs-release archive DIR [--only incremental] > release.tar   # for paczfs-bootenv apply - (a pipe, ssh)
//	paczfs-release push DIR REGISTRY/REPO:TAG [--insecure]
//	paczfs-release pull SRC DIR [--keys DIR] [--insecure]   # SRC: oci://REF, an http(s) URL, a directory
//
// write needs root and the pool imported; the release directory it makes
// holds manifest.json, manifest.json.sig and the streams. A directory can
// be served as it is by any HTTP server; devices apply it from there, or
// from a registry after push.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/paczfs/paczfs/release"
	"github.com/paczfs/paczfs/release/oci"
	"github.com/paczfs/paczfs/zfs"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "paczfs-release:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: paczfs-release keygen NAME PREFIX | write --snapshot DS@SNAP [--base DS@SNAP] --version V [--previous V] --key FILE --dir OUT | archive DIR [--only KIND] | push DIR REF [--insecure] | pull SRC DIR [--keys DIR] [--insecure]")
	}
	switch args[0] {
	case "keygen":
		if len(args) != 3 {
			return fmt.Errorf("usage: paczfs-release keygen NAME PREFIX")
		}
		secret, public, err := release.GenerateKey(args[1], "")
		if err != nil {
			return err
		}
		if err := os.WriteFile(args[2]+".key", secret, 0o600); err != nil {
			return err
		}
		if err := os.WriteFile(args[2]+".asc", public, 0o644); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "wrote %s.key (keep it secret) and %s.asc (image.Config.Manage.ReleaseKeys)\n", args[2], args[2])
		return nil
	case "write":
		fs := flag.NewFlagSet("write", flag.ContinueOnError)
		var o release.WriteOptions
		fs.StringVar(&o.Snapshot, "snapshot", "", "the release's root snapshot")
		fs.StringVar(&o.Base, "base", "", "the previous release's snapshot (an incremental stream too)")
		fs.StringVar(&o.Version, "version", "", "the release's version")
		fs.StringVar(&o.Previous, "previous", "", "the previous release's version")
		fs.StringVar(&o.Name, "name", "paczfs", "the product's name")
		fs.StringVar(&o.Kernel, "kernel", "", "the kernel version, for the manifest")
		key := fs.String("key", "", "the secret key file")
		fs.StringVar(&o.Dir, "dir", "", "the (empty) directory to write")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		secret, err := os.ReadFile(*key)
		if err != nil {
			return err
		}
		o.Secret = secret
		m, err := release.Write(ctx, zfs.New(), o)
		if err != nil {
			return err
		}
		for _, s := range m.Streams {
			fmt.Fprintf(stdout, "%s stream %s: %d bytes, sha256 %s\n", s.Kind, s.File, s.Size, s.SHA256)
		}
		fmt.Fprintf(stdout, "release %s written to %s (check it: gpg --verify %s/manifest.json.sig %s/manifest.json)\n", m.Version, o.Dir, o.Dir, o.Dir)
		return nil
	case "archive":
		usage := fmt.Errorf("usage: paczfs-release archive DIR [--only incremental|full] > release.tar")
		switch {
		case len(args) == 2:
			return release.WriteArchive(stdout, args[1])
		case len(args) == 4 && args[2] == "--only" && (args[3] == release.Incremental || args[3] == release.Full):
			return release.WriteArchive(stdout, args[1], args[3])
		}
		return usage
	case "push":
		fs := flag.NewFlagSet("push", flag.ContinueOnError)
		insecure := fs.Bool("insecure", false, "plain HTTP to the registry")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if fs.NArg() != 2 {
			return fmt.Errorf("usage: paczfs-release push DIR REGISTRY/REPO:TAG [--insecure]")
		}
		digest, err := oci.Push(ctx, fs.Arg(0), fs.Arg(1), oci.Options{Insecure: *insecure})
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "pushed %s as %s (devices: paczfs-bootenv apply oci://%s)\n", fs.Arg(0), digest, fs.Arg(1))
		return nil
	case "pull":
		fs := flag.NewFlagSet("pull", flag.ContinueOnError)
		insecure := fs.Bool("insecure", false, "plain HTTP to the registry")
		keys := fs.String("keys", "", "a directory of trusted release keys: verify the signature")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if fs.NArg() != 2 {
			return fmt.Errorf("usage: paczfs-release pull SRC DIR [--keys DIR] [--insecure]")
		}
		var src release.Source
		var err error
		if ref, ok := strings.CutPrefix(fs.Arg(0), "oci://"); ok {
			src, err = oci.NewSource(ctx, ref, oci.Options{Insecure: *insecure})
		} else {
			src, err = release.OpenSource(fs.Arg(0), os.Stdin)
		}
		if err != nil {
			return err
		}
		var trusted [][]byte
		if *keys != "" {
			if trusted, err = release.TrustedKeys(*keys); err != nil {
				return err
			}
		}
		m, err := release.Download(ctx, src, fs.Arg(1), trusted)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "release %s from %s in %s (%d streams checked)\n", m.Version, src, fs.Arg(1), len(m.Streams))
		return nil
	}
	return fmt.Errorf("unknown command %q", args[0])
}

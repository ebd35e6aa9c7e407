// Command paczfs-release makes release keys and releases (the build side
// of signed updates; devices apply them with paczfs-bootenv apply):
//
//	paczfs-release keygen NAME PREFIX      # PREFIX.key (secret, 0600) and PREFIX.asc (public)
//	paczfs-release write --snapshot POOL/system/default@v2 [--base POOL/system/default@v1] \
//	    --version 2 [--previous 1] --key PREFIX.key --dir OUT
//
// write needs root and the pool imported; the release directory it makes
// holds manifest.json, manifest.json.sig and the streams.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/paczfs/paczfs/release"
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
		return fmt.Errorf("usage: paczfs-release keygen NAME PREFIX | write --snapshot DS@SNAP [--base DS@SNAP] --version V [--previous V] --key FILE --dir OUT")
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
	}
	return fmt.Errorf("unknown command %q", args[0])
}

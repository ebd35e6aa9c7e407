package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/paczfs/paczfs/cleanup"
	"github.com/paczfs/paczfs/disk"
	"github.com/paczfs/paczfs/hooks"
	"github.com/paczfs/paczfs/zfs"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "storage:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out io.Writer) (err error) {
	fs := flag.NewFlagSet("storage", flag.ContinueOnError)
	image := fs.String("image", "paczfs-demo.img", "image file to create")
	sizeFlag := fs.String("size", "4G", "image size")
	espFlag := fs.String("esp", "512M", "ESP size")
	poolName := fs.String("pool", "zroot", "pool name on disk")
	overwrite := fs.Bool("overwrite", false, "replace an existing image")
	if err := fs.Parse(args); err != nil {
		return err
	}
	size, err := disk.ParseSize(*sizeFlag)
	if err != nil {
		return fmt.Errorf("-size: %w", err)
	}
	espSize, err := disk.ParseSize(*espFlag)
	if err != nil {
		return fmt.Errorf("-esp: %w", err)
	}
	// Validate everything before writing anything.
	plan, err := disk.DefaultLayout(espSize, 0, *poolName).Plan(size)
	if err != nil {
		return err
	}
	if err := zfs.ValidatePoolName(*poolName); err != nil {
		return fmt.Errorf("-pool: %w", err)
	}
	if err := disk.CheckImagePath(*image, disk.ImageOptions{Overwrite: *overwrite}); err != nil {
		return err
	}

	var st cleanup.Stack
	defer func() { err = errors.Join(err, st.Unwind(ctx)) }()
	step := func(format string, a ...any) { fmt.Fprintf(out, "==> "+format+"\n", a...) }

	step("image %s (%v, sparse)", *image, size)
	tgt, err := disk.CreateImage(*image, size, disk.ImageOptions{Overwrite: *overwrite})
	if err != nil {
		return err
	}
	keep := false
	st.Push("remove partial image", func(context.Context) error {
		if keep || !tgt.Created {
			return nil
		}
		return os.Remove(tgt.Path)
	})
	if err := disk.WriteGPT(tgt.Path, plan); err != nil {
		return err
	}
	fmt.Fprint(out, plan)

	step("ESP: FAT32, files written without mounting")
	esp, err := disk.FormatESP(tgt.Path, plan, "ESP")
	if err != nil {
		return err
	}
	if err := esp.WriteFile("/loader/loader.conf", strings.NewReader("timeout 3\n")); err != nil {
		esp.Close()
		return err
	}
	if err := esp.Close(); err != nil {
		return err
	}

	step("loop device with partition scan")
	l, err := disk.Attach(ctx, tgt.Path, disk.LoopOptions{PartScan: true})
	if err != nil {
		return err
	}
	st.Push("detach "+l.Path, func(ctx context.Context) error { return l.Detach(ctx, 30*time.Second) })
	if err := l.WaitPartitions(ctx, 10*time.Second, 1, 2); err != nil {
		return err
	}
	fmt.Fprintf(out, "%s: %s (ESP), %s (ZFS)\n", l.Path, l.PartitionPath(1), l.PartitionPath(2))

	runner := &hooks.ExecRunner{}
	c := zfs.New(zfs.WithRunner(runner))
	tmpName := fmt.Sprintf("paczfs-%d", os.Getpid())
	altroot, err := os.MkdirTemp("", "paczfs-root-")
	if err != nil {
		return err
	}
	st.Push("remove "+altroot, func(context.Context) error { return os.Remove(altroot) })
	step("pool %s (imported as %s at %s)", *poolName, tmpName, altroot)
	spec := zfs.PoolSpec{Name: *poolName, TempName: tmpName, AltRoot: altroot, Vdevs: []string{l.PartitionPath(2)}}
	if err := c.CreatePool(ctx, spec); err != nil {
		return err
	}
	st.Push("export "+tmpName, func(ctx context.Context) error { return c.ExportPool(ctx, tmpName, zfs.ExportOptions{}) })
	if err := c.CreateDatasets(ctx, tmpName, zfs.DefaultDatasets()); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(altroot, "etc"), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(altroot, "etc/hostname"), []byte("paczfs\n"), 0o644); err != nil {
		return err
	}
	if err := c.SetPoolProperty(ctx, tmpName, "bootfs", tmpName+"/"+zfs.RootDataset); err != nil {
		return err
	}
	if err := c.Snapshot(ctx, zfs.SnapshotOptions{Recursive: true}, tmpName+"@install"); err != nil {
		return err
	}
	ds, err := c.List(ctx, tmpName, zfs.ListOptions{Recursive: true, Types: []string{"filesystem", "snapshot"}, Props: []string{"mountpoint", "canmount"}})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "%-40s %-10s %-20s %s\n", "NAME", "TYPE", "MOUNTPOINT", "CANMOUNT")
	for _, d := range ds {
		fmt.Fprintf(out, "%-40s %-10s %-20s %s\n", d.Name, d.Type, d.Props["mountpoint"], d.Props["canmount"])
	}
	status, err := c.PoolStatus(ctx, tmpName)
	if err != nil {
		return err
	}
	fmt.Fprint(out, status)
	step("export and detach")
	keep = true
	return nil
}

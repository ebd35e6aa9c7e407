//go:build lab

package image_test

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/paczfs/paczfs/hooks"
	"github.com/paczfs/paczfs/image"
	"github.com/paczfs/paczfs/internal/labtest"
)

// lockedBuffer is a log destination the build's goroutines share.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// A package hook that runs a generator through PATH, as Arch's
// 90-mkinitcpio-install runs mkinitcpio: in the bootable layer's
// transaction, with the generator in boot.initramfs_stubs, libalpm runs
// the stub (its message is in the hook's output) and the generator does
// not run; the stub is gone after. In the workstation transaction, not
// stubbed, the same hook runs the generator.
const stubTestHook = `[Trigger]
Type = Path
Operation = Install
Target = usr/*

[Action]
Description = Running the test generator (paczfs lab)...
When = PostTransaction
Exec = /bin/sh -c 'paczfs-lab-generator'
`

func TestLabInitramfsStubsStandInDuringTheBootableTransaction(t *testing.T) {
	labtest.Require(t)
	cfg := smallProfile(t)
	dir := t.TempDir()
	cfg.ImageFile = filepath.Join(dir, "stubs.img")
	cfg.WorkDir = filepath.Join(dir, "work")
	cfg.PoolName = "stubpool"
	cfg.Boot.InitramfsStubs = []string{"paczfs-lab-generator"}
	const marker = "var/tmp/paczfs-lab-generator-ran"
	prepare := hooks.Func("test generator and its package hook", hooks.StageBootable, hooks.Before, func(ctx context.Context, s *hooks.State) error {
		if err := os.MkdirAll(filepath.Join(s.Root, "etc/pacman.d/hooks"), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(s.Root, "etc/pacman.d/hooks/zz-paczfs-lab-generator.hook"), []byte(stubTestHook), 0o644); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(s.Root, "usr/bin/paczfs-lab-generator"), []byte("#!/bin/sh\necho ran >> /"+marker+"\n"), 0o755)
	})
	var afterBootable, stubLeft bool
	checkBootable := hooks.Func("after the bootable transaction", hooks.StageBootable, hooks.After, func(ctx context.Context, s *hooks.State) error {
		_, err := os.Stat(filepath.Join(s.Root, marker))
		afterBootable = err == nil
		_, err = os.Lstat(filepath.Join(s.Root, "usr/local/sbin/paczfs-lab-generator"))
		stubLeft = err == nil
		return nil
	})
	var afterWorkstation bool
	checkWorkstation := hooks.Func("after the workstation transaction", hooks.StageWorkstation, hooks.After, func(ctx context.Context, s *hooks.State) error {
		_, err := os.Stat(filepath.Join(s.Root, marker))
		afterWorkstation = err == nil
		return nil
	})
	var logs lockedBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	b, err := image.New(cfg, image.WithHooks(prepare, checkBootable, checkWorkstation), image.WithLogger(log))
	require.NoError(t, err)
	_, err = b.Build(context.Background())
	require.NoError(t, err, "%s", logs.String())
	assert.Contains(t, logs.String(), "paczfs: paczfs-lab-generator skipped here", "the bootable transaction's hook ran the stub")
	assert.False(t, afterBootable, "the generator did not run in the bootable transaction")
	assert.False(t, stubLeft, "the stub is removed after the transaction")
	assert.True(t, afterWorkstation, "the workstation transaction's hook ran the generator itself")
}

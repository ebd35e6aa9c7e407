package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/paczfs/paczfs/internal/lab"
	"github.com/paczfs/paczfs/internal/labrepo"
	"github.com/paczfs/paczfs/internal/ovmf"
)

// demoPassword is root's password in the demo image only, so the demo can
// log in on the console. Real images lock root unless given a hash or keys.
const demoPassword = "paczfs"

// demo is `make demo`: examples/basic --profile lab builds an image inside
// the lab VM, then the host boots it under OVMF, logs in on the serial
// console and shows the root dataset and the pool from inside.
func demo(ctx context.Context, l *lab.Lab, src string, stdout, stderr io.Writer) error {
	if err := l.Ensure(ctx); err != nil {
		return err
	}
	shares, env, err := shareRepo(ctx, l, stderr)
	if err != nil {
		return err
	}
	outDir := filepath.Join(l.CacheDir, "demo")
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return err
	}
	qcow2 := filepath.Join(outDir, "demo.qcow2")
	os.Remove(qcow2)
	shares["out"] = outDir
	binDir, err := os.MkdirTemp("", "paczfs-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(binDir)
	// The lab profile, as the example CLI takes any profile of one's own:
	// an image configuration in JSON, with the repository where the VM
	// sees it.
	profile, err := labProfileFile(binDir, shares["labrepo"])
	if err != nil {
		return err
	}
	fmt.Fprintln(stderr, "demo: building examples/basic for the lab")
	bin, err := l.BuildCommand(ctx, src, binDir, "./examples/basic")
	if err != nil {
		return err
	}
	tool, err := buildTool(ctx, src, binDir)
	if err != nil {
		return err
	}
	hash, err := exec.CommandContext(ctx, "openssl", "passwd", "-6", demoPassword).Output()
	if err != nil {
		return fmt.Errorf("hash the demo password (openssl passwd): %w", err)
	}
	env = append(env,
		"IMAGE_FILE=/scratch/demo.img",
		"QCOW2_FILE=/shares/out/demo.qcow2",
		"QCOW2_COMPRESSION=zstd", // zlib would spend minutes of emulated CPU on lz4 data
		"POOL_NAME=zroot",
		"BOOTENV_TOOL=/lab/paczfs-bootenv",
		"HOSTNAME=paczfs-demo",
		"ROOT_PASSWORD_HASH="+strings.TrimSpace(string(hash)),
	)
	fmt.Fprintln(stdout, "demo: step 1/2: go run ./examples/basic --profile lab, inside the lab VM")
	start := time.Now()
	err = l.Run(ctx, lab.RunOptions{
		Args:   []string{"/lab/basic", "--profile", "/lab/lab-profile.json"},
		Src:    src,
		Stdout: stdout,
		Files:  map[string]string{"basic": bin, "lab-profile.json": profile, "paczfs-bootenv": tool},
		Env:    env,
		Shares: shares, Writable: map[string]bool{"out": true},
	})
	if err != nil {
		return fmt.Errorf("build in the lab: %w", err)
	}
	fi, err := os.Stat(qcow2)
	if err != nil {
		return fmt.Errorf("the build wrote no image: %w", err)
	}
	fmt.Fprintf(stdout, "demo: built %s (%d bytes) in %s\n", qcow2, fi.Size(), time.Since(start).Round(time.Second))
	fmt.Fprintln(stdout, "demo: step 2/2: boot it under OVMF (UEFI) and log in on the serial console")
	transcript, err := ovmf.Boot(ctx, ovmf.Options{
		Image: qcow2, Format: "qcow2", Console: stdout, Timeout: 20 * time.Minute,
		Expect: []ovmf.Step{
			{Wait: "login:", Send: "root\n"},
			{Wait: "Password:", Send: demoPassword + "\n"},
			{Wait: "# ", Send: "echo; echo '== / is:'; findmnt -n -o SOURCE,FSTYPE /; echo '== datasets:'; zfs list -o name,mountpoint,used; echo '== pool:'; zpool status; echo '== boot environments on the ESP:'; ls /efi/env\n"},
			// The image's own boot verdict, then ssh: a key made here,
			// authorized, and a login to localhost with it. The markers
			// are computed, so the echoed command line never matches.
			{Wait: "# ", Send: "echo '== health:'; paczfs-health && echo HEALTH-$((20+1))\n"},
			{Wait: "# ", Send: "echo '== ssh:'; sshd -T | grep -E '^(port|permitrootlogin|pubkeyauthentication) '; ss -Hltn 'sport = :22'; " +
				"mkdir -m 700 -p /root/.ssh; ssh-keygen -q -t ed25519 -N '' -f /root/.ssh/demo_key && cat /root/.ssh/demo_key.pub >> /root/.ssh/authorized_keys && chmod 600 /root/.ssh/authorized_keys; " +
				"ssh -o BatchMode=yes -o StrictHostKeyChecking=accept-new -i /root/.ssh/demo_key root@localhost 'echo SSH-$((40+2)) from $(hostname)'\n"},
			{Wait: "# ", Send: "systemctl poweroff\n"},
		},
	})
	if err != nil {
		return fmt.Errorf("boot: %w", err)
	}
	if !strings.Contains(transcript, "== pool:") || !strings.Contains(transcript, "state: ONLINE") {
		return fmt.Errorf("boot: the demo did not reach the pool status on the console")
	}
	if !strings.Contains(transcript, "HEALTH-21") {
		return fmt.Errorf("boot: paczfs-health found the demo's boot unhealthy (see its problems above)")
	}
	if !strings.Contains(transcript, "SSH-42 from paczfs-demo") {
		return fmt.Errorf("boot: ssh to localhost with the demo's key did not answer")
	}
	fmt.Fprintf(stdout, "\ndemo: done. The image is %s; boot it yourself with:\n  qemu-system-x86_64 -machine q35 -m 2048 -bios /usr/share/ovmf/OVMF.fd -drive file=%s,if=virtio -serial stdio -display none\n", qcow2, qcow2)
	return nil
}

// labProfileFile writes the lab profile for the repository shared at
// /shares/labrepo (see shareRepo) as JSON into dir.
func labProfileFile(dir, hostRepo string) (string, error) {
	host, err := labrepo.Open(hostRepo)
	if err != nil {
		return "", err
	}
	repo := host.At("/shares/labrepo")
	cfg := labrepo.Profile(repo, (&url.URL{Scheme: "file", Path: repo.Dir}).String())
	data, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return "", err
	}
	p := filepath.Join(dir, "lab-profile.json")
	return p, os.WriteFile(p, data, 0o644)
}

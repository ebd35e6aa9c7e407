package pacman

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/paczfs/paczfs/hooks"
	"github.com/paczfs/paczfs/internal/fsx"
)

// GPGDir returns the keyring directory of a target root.
func GPGDir(root string) string { return filepath.Join(root, "etc/pacman.d/gnupg") }

// keyringDir picks where the keyring package's files are: the
// configured directory, else the target's own (an earlier layer installed
// the keyring package). The build host's are used only when configured.
// Arch keeps them in /usr/share/pacman/keyrings, Debian in /usr/share/keyrings.
func (in *Installer) keyringDir(root string) (string, error) {
	if in.cfg.KeyringDir != "" {
		return in.cfg.KeyringDir, nil
	}
	var tried []string
	for _, base := range []string{root} {
		for _, d := range []string{"usr/share/pacman/keyrings", "usr/share/keyrings"} {
			dir := filepath.Join(base, d)
			tried = append(tried, dir)
			ok := true
			for _, k := range in.cfg.Keyrings {
				if _, err := os.Stat(filepath.Join(dir, k+".gpg")); err != nil {
					ok = false
				}
			}
			if ok {
				return dir, nil
			}
		}
	}
	return "", fmt.Errorf("pacman.keyrings %v: no %s.gpg in the target (%v); set pacman.keyring_dir, e.g. to /usr/share/pacman/keyrings to use the build host's archlinux-keyring package files",
		in.cfg.Keyrings, in.cfg.Keyrings[0], tried)
}

// InitKeyring creates root's own pacman keyring: a fresh master key made
// for this image (never the build host's keyring), the configured
// keyrings populated from the keyring package's files, and the trusted
// keys imported and locally signed. Any gpg-agent started for it is
// stopped before returning, so nothing keeps the root busy.
func (in *Installer) InitKeyring(ctx context.Context, root string) error {
	realdir := GPGDir(root)
	if err := fsx.Mkdir(realdir, 0o755); err != nil {
		return err
	}
	return in.withPacmanKey(ctx, realdir, func(gpgdir string, pk func(args ...string) error) error {
		return in.initKeyring(ctx, root, realdir, gpgdir, pk)
	})
}

// withPacmanKey runs fn with pacman-key set up for the keyring at realdir:
// gpgdir is a short link to it, pk runs pacman-key on it. Any gpg-agent
// started for it is stopped after fn.
func (in *Installer) withPacmanKey(ctx context.Context, realdir string, fn func(gpgdir string, pk func(args ...string) error) error) (err error) {
	// gpg-agent's sockets live in the home directory, and a unix socket
	// path has at most 107 bytes: a deep root (a test's temporary
	// directory, a long altroot) makes gpg fail to start its agent. Work
	// through a short symbolic link instead.
	short, err := os.MkdirTemp("", "pzk-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(short)
	gpgdir := filepath.Join(short, "g")
	if err := os.Symlink(realdir, gpgdir); err != nil {
		return err
	}
	// A minimal configuration: pacman-key reads GPGDir and nothing else.
	conf, err := os.CreateTemp("", "paczfs-pacman-key-*.conf")
	if err != nil {
		return err
	}
	defer os.Remove(conf.Name())
	fmt.Fprintf(conf, "[options]\nGPGDir = %s\n", gpgdir)
	conf.Close()
	pk := func(args ...string) error {
		_, err := in.run.Run(ctx, hooks.Cmd{Args: append([]string{"pacman-key", "--config", conf.Name(), "--gpgdir", gpgdir}, args...)})
		return err
	}
	defer func() {
		// pacman-key --init and --lsign-key start a gpg-agent whose sockets
		// live in gpgdir: stop it, or it keeps the root dataset busy.
		_, kerr := in.run.Run(context.WithoutCancel(ctx), hooks.Cmd{Args: []string{"gpgconf", "--homedir", gpgdir, "--kill", "all"}})
		if kerr != nil {
			err = errors.Join(err, fmt.Errorf("stop gpg-agent of %s: %w", realdir, kerr))
		}
	}()
	return fn(gpgdir, pk)
}

// PopulateKeyring imports the configured keyrings (Config.Keyrings) into
// root's keyring from root's own keyring package files
// (usr/share/pacman/keyrings), as the keyring package's install script
// does when the keyring exists (pacman-key --populate): the keys of the
// packages the image ships, whatever the files InitKeyring read
// (Config.KeyringDir, perhaps the build host's, perhaps older). It does
// nothing when root has no keyring or not every keyring's files.
func (in *Installer) PopulateKeyring(ctx context.Context, root string) error {
	realdir := GPGDir(root)
	dir := filepath.Join(root, "usr/share/pacman/keyrings")
	if len(in.cfg.Keyrings) == 0 {
		return nil
	}
	if rings, _ := filepath.Glob(filepath.Join(realdir, "pubring.*")); len(rings) == 0 {
		return nil
	}
	for _, k := range in.cfg.Keyrings {
		if _, err := os.Stat(filepath.Join(dir, k+".gpg")); err != nil {
			return nil
		}
	}
	return in.withPacmanKey(ctx, realdir, func(_ string, pk func(args ...string) error) error {
		if err := pk(append([]string{"--populate-from", dir, "--populate"}, in.cfg.Keyrings...)...); err != nil {
			return fmt.Errorf("keyring %s: populate %v from %s: %w", realdir, in.cfg.Keyrings, dir, err)
		}
		return nil
	})
}

func (in *Installer) initKeyring(ctx context.Context, root, realdir, gpgdir string, pk func(args ...string) error) error {
	if err := in.genMasterKey(ctx, gpgdir); err != nil {
		return fmt.Errorf("keyring %s: master key: %w", realdir, err)
	}
	if err := pk("--init"); err != nil {
		return fmt.Errorf("keyring %s: init: %w", realdir, err)
	}
	if len(in.cfg.Keyrings) > 0 {
		dir, err := in.keyringDir(root)
		if err != nil {
			return err
		}
		args := append([]string{"--populate-from", dir, "--populate"}, in.cfg.Keyrings...)
		if err := pk(args...); err != nil {
			return fmt.Errorf("keyring %s: populate %v from %s: %w", realdir, in.cfg.Keyrings, dir, err)
		}
	}
	for i, k := range in.cfg.TrustedKeys {
		id := k.ID
		if k.File != "" {
			if err := pk("--add", k.File); err != nil {
				return fmt.Errorf("pacman.trusted_keys[%d]: add %s: %w", i, k.File, err)
			}
			fp, err := keyFingerprints(ctx, in.run, k.File)
			if err != nil {
				return fmt.Errorf("pacman.trusted_keys[%d]: %w", i, err)
			}
			for _, f := range fp {
				if err := pk("--lsign-key", f); err != nil {
					return fmt.Errorf("pacman.trusted_keys[%d]: lsign %s: %w", i, f, err)
				}
			}
			continue
		}
		if err := pk("--recv-keys", id); err != nil {
			return fmt.Errorf("pacman.trusted_keys[%d]: receive %s from a keyserver: %w", i, id, err)
		}
		if err := pk("--lsign-key", id); err != nil {
			return fmt.Errorf("pacman.trusted_keys[%d]: lsign %s: %w", i, id, err)
		}
	}
	return nil
}

// masterKeyParams is pacman-key's own key request with one change: an
// ed25519 key instead of RSA 4096. The master key only signs locally
// (the lsign of trusted keys), which ed25519 does as well; generating
// RSA 4096 costs seconds on hardware and 25 to 60 s under emulation, for
// every image.
const masterKeyParams = `%echo Generating pacman keyring master key...
Key-Type: EdDSA
Key-Curve: ed25519
Key-Usage: sign
Name-Real: Pacman Keyring Master Key
Name-Email: pacman@localhost
Expire-Date: 0
%no-protection
%commit
`

// genMasterKey makes the keyring's master key unless it has a secret key
// already; pacman-key --init then finds it and only writes its
// configuration.
func (in *Installer) genMasterKey(ctx context.Context, gpgdir string) error {
	gpg := []string{"gpg", "--homedir", gpgdir, "--no-permission-warning", "--batch"}
	out, err := in.run.Run(ctx, hooks.Cmd{Args: append(gpg, "--with-colons", "--list-secret-keys")})
	var ce *hooks.CmdError
	// gpg exits 2 listing an empty or missing keyring: no secret key.
	if err != nil && !(errors.As(err, &ce) && ce.ExitCode == 2) {
		return err
	}
	if hasSecretKey(string(out)) {
		return nil
	}
	_, err = in.run.Run(ctx, hooks.Cmd{Args: append(gpg, "--gen-key"), Stdin: strings.NewReader(masterKeyParams)})
	return err
}

// hasSecretKey reports whether gpg --with-colons --list-secret-keys
// output lists a secret primary key.
func hasSecretKey(colons string) bool {
	for _, l := range strings.Split(colons, "\n") {
		if strings.HasPrefix(l, "sec:") {
			return true
		}
	}
	return false
}

// keyFingerprints lists the primary key fingerprints in a key file.
func keyFingerprints(ctx context.Context, r hooks.Runner, file string) ([]string, error) {
	out, err := r.Run(ctx, hooks.Cmd{Args: []string{"gpg", "--batch", "--with-colons", "--import-options", "show-only", "--import", file}})
	if err != nil {
		return nil, fmt.Errorf("read key file %s: %w", file, err)
	}
	fps := ParseFingerprints(string(out))
	if len(fps) == 0 {
		return nil, fmt.Errorf("key file %s holds no public key", file)
	}
	return fps, nil
}

// ParseFingerprints reads the primary key fingerprints from gpg
// --with-colons output: the fpr record right after each pub record.
func ParseFingerprints(colons string) []string {
	var out []string
	afterPub := false
	for _, line := range splitLines(colons) {
		f := splitColons(line)
		switch {
		case len(f) > 0 && f[0] == "pub":
			afterPub = true
		case len(f) > 9 && f[0] == "fpr" && afterPub:
			out = append(out, f[9])
			afterPub = false
		case len(f) > 0 && f[0] == "sub":
			afterPub = false
		}
	}
	return out
}

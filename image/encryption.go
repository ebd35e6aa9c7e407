package image

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/paczfs/paczfs/zfs"
)

// Encryption properties of an encrypted dataset (Encryption).
const (
	encryptionCipher = "aes-256-gcm"
	encryptionFormat = "passphrase"
)

// createDatasets creates specs under the pool, the encrypted ones
// (Encryption.Datasets, and system with Encryption.Root) as encryption
// roots keyed by the build host's passphrase file; then points their
// keylocation where the booted system finds the passphrase: prompt, or
// file://KeyPath.
func (st *build) createDatasets(ctx context.Context, specs []zfs.DatasetSpec) error {
	z := st.zfs()
	enc := st.cfg.Encryption
	roots := slices.Clone(enc.Datasets)
	if enc.Root {
		roots = append(roots, st.cfg.encryptedRoot())
	}
	var encrypted []string
	if len(roots) > 0 {
		key, err := filepath.Abs(enc.KeyFile)
		if err != nil {
			return err
		}
		specs = slices.Clone(specs)
		for i, s := range specs {
			if !slices.Contains(roots, s.Name) {
				continue
			}
			s.Props = maps.Clone(s.Props)
			if s.Props == nil {
				s.Props = map[string]string{}
			}
			s.Props["encryption"] = encryptionCipher
			s.Props["keyformat"] = encryptionFormat
			s.Props["keylocation"] = "file://" + key
			specs[i] = s
			encrypted = append(encrypted, s.Name)
		}
	}
	if err := z.CreateDatasets(ctx, st.state.Pool, specs); err != nil {
		return err
	}
	for _, d := range encrypted {
		location := enc.keyLocation()
		if enc.Root && d == st.cfg.encryptedRoot() {
			// Asked for by the initramfs: the key cannot be in the root
			// it opens.
			location = "prompt"
		}
		if err := z.SetProperties(ctx, st.state.Pool+"/"+d, map[string]string{"keylocation": location}); err != nil {
			return fmt.Errorf("encryption: %w", err)
		}
	}
	return nil
}

// keyLocation is the encrypted datasets' keylocation in the image.
func (e Encryption) keyLocation() string {
	if e.Prompt {
		return "prompt"
	}
	return "file://" + KeyPath
}

// LoadKeysUnit is the unit that loads the encrypted datasets' keys at
// boot, before zfs-mount.service mounts them; LoadKeysScript what it runs.
const (
	LoadKeysUnit   = "paczfs-load-keys.service"
	LoadKeysScript = "/usr/local/sbin/paczfs-load-keys"
)

// loadKeysUnit orders the key loading between the pool's import and the
// mounts. A failure fails the unit, so the boot is not healthy.
const loadKeysUnit = `# Written by paczfs: the keys of the encrypted ZFS datasets.
[Unit]
Description=Load the keys of encrypted ZFS datasets
DefaultDependencies=no
After=zfs-import.target systemd-ask-password-console.path
Before=zfs-mount.service
Wants=zfs-import.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=` + LoadKeysScript + `

[Install]
WantedBy=zfs-mount.service
`

// loadKeysScript loads the key of every encryption root whose key is not
// loaded: from its keylocation file, or asked for on the console
// (keylocation=prompt), three tries.
const loadKeysScript = `#!/bin/sh
# Written by paczfs: loads the keys of the encrypted datasets
# (keylocation file://..., or prompt: asked for on the console).
set -u
tab=$(printf '\t')
rc=0
roots=$(zfs list -H -o name,encryptionroot,keystatus,keylocation -t filesystem,volume)
for line in $(echo "$roots" | tr "$tab" ','); do
	ds=${line%%,*}; rest=${line#*,}
	root=${rest%%,*}; rest=${rest#*,}
	status=${rest%%,*}; location=${rest#*,}
	[ "$ds" = "$root" ] && [ "$status" = unavailable ] || continue
	if [ "$location" != prompt ]; then
		zfs load-key "$ds" || rc=1
		continue
	fi
	n=0
	until [ "$n" -ge 3 ]; do
		n=$((n + 1))
		if systemd-ask-password --timeout=0 --id="paczfs-load-keys:$ds" "Passphrase for $ds:" | zfs load-key "$ds"; then
			continue 2
		fi
		echo "paczfs-load-keys: wrong passphrase for $ds ($n of 3)" >&2
	done
	rc=1
done
exit "$rc"
`

// writeKeyFiles writes the files an image with Encryption gets: the unit, its
// script and (without Prompt) the passphrase.
func (st *build) writeKeyFiles(root string) error {
	enc := st.cfg.Encryption
	if len(enc.Datasets) == 0 {
		return nil
	}
	if err := writeFile(root, "etc/systemd/system/"+LoadKeysUnit, []byte(loadKeysUnit), 0o644); err != nil {
		return err
	}
	if err := writeFile(root, strings.TrimPrefix(LoadKeysScript, "/"), []byte(loadKeysScript), 0o755); err != nil {
		return err
	}
	if enc.Prompt {
		return nil
	}
	key, err := passphrase(enc.KeyFile)
	if err != nil {
		return fmt.Errorf("encryption.key_file: %w", err)
	}
	dir := filepath.Join(root, filepath.Dir(KeyPath))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return err
	}
	return writeFile(root, strings.TrimPrefix(KeyPath, "/"), append(key, '\n'), 0o400)
}

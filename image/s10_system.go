package image

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/paczfs/paczfs/disk"
	"github.com/paczfs/paczfs/hooks"
	"github.com/paczfs/paczfs/internal/fsx"
)

// The ESP's mount point in the booted system. Not /boot: /boot stays on
// each boot environment's own root, so environments never share kernels
// and the ESP holds a copy per environment.
const espMountPoint = "/efi"

// espMountUnit is systemd's name for the mount at espMountPoint.
const espMountUnit = "efi.mount"

func (st *build) chroot(ctx context.Context, argv ...string) error {
	_, err := st.b.runner.Run(ctx, hooks.Cmd{Args: chrootArgs(st.state.Root, argv...)})
	return err
}

func stageSystem(ctx context.Context, st *build) error {
	root := st.state.Root
	s := st.cfg.System
	user, note := st.cfg.Pacman.DownloadUserFor(root)
	if note != "" {
		st.warn("%s", note)
	}
	if err := writePacmanConfig(root, st.cfg.Pacman, user); err != nil {
		return err
	}
	if err := writeFile(root, "etc/hostname", []byte(s.Hostname+"\n"), 0o644); err != nil {
		return err
	}
	if err := setTimezone(root, s.Timezone); err != nil {
		return err
	}
	if err := st.setLocales(ctx); err != nil {
		return err
	}
	if s.Keymap != "" {
		if err := writeFile(root, "etc/vconsole.conf", []byte("KEYMAP="+s.Keymap+"\n"), 0o644); err != nil {
			return err
		}
	}
	if err := copySkel(root); err != nil {
		return err
	}
	for name, content := range s.Files {
		if err := writeFile(root, strings.TrimPrefix(name, "/"), []byte(content), 0o644); err != nil {
			return fmt.Errorf("system.files: %w", err)
		}
	}
	units := append([]string{}, s.Units...)
	if err := st.writeKeyFiles(root); err != nil {
		return err
	}
	if len(st.cfg.Encryption.Datasets) > 0 {
		units = append(units, LoadKeysUnit)
	}
	if s.Network {
		if err := writeFile(root, "etc/systemd/network/20-ethernet.network", []byte(networkdDHCP), 0o644); err != nil {
			return err
		}
		// resolv.conf points at resolved's stub, as the original did.
		_ = os.Remove(filepath.Join(root, "etc/resolv.conf"))
		if err := os.Symlink("../run/systemd/resolve/stub-resolv.conf", filepath.Join(root, "etc/resolv.conf")); err != nil {
			return err
		}
		units = append(units, "systemd-networkd.service", "systemd-resolved.service")
	}
	if len(units) > 0 {
		if err := st.chroot(ctx, append([]string{"systemctl", "enable"}, units...)...); err != nil {
			return fmt.Errorf("enable units %v: %w", units, err)
		}
	}
	// The ESP must be mounted for a boot to count as good: without it
	// nothing can bless the entry or install a kernel, and with nofail
	// a missing ESP fails no unit.
	healthy := units
	if _, ok := st.target.plan.Find(disk.RoleESP); ok {
		healthy = append(slices.Clip(healthy), espMountUnit)
	}
	if err := writeFile(root, strings.TrimPrefix(HealthUnits, "/"), healthUnits(healthy), 0o644); err != nil {
		return err
	}
	if err := writeFile(root, strings.TrimPrefix(HealthScript, "/"), []byte(healthScript), 0o755); err != nil {
		return err
	}
	if err := setRootLogin(root, s.RootPasswordHash, s.AuthorizedKeys); err != nil {
		return err
	}
	if err := emptyMachineID(root); err != nil {
		return err
	}
	var hostID string
	var err error
	switch {
	case st.previous != nil:
		// The devices' pools carry the previous release's hostid.
		hostID, err = keepHostID(root)
	case st.hostID != "":
		// Written before the bootable layer (its initramfs has it).
		hostID, err = keepHostID(root)
		if err == nil && hostID != st.hostID {
			err = fmt.Errorf("/etc/hostid changed since the bootable layer: %s, not %s", hostID, st.hostID)
		}
	default:
		hostID, err = writeHostID(root, s.HostID)
	}
	if err != nil {
		return err
	}
	st.hostID = hostID
	if err := writeFile(root, "etc/fstab", st.fstab(), 0o644); err != nil {
		return err
	}
	if err := fsx.Mkdir(filepath.Join(root, strings.TrimPrefix(espMountPoint, "/")), 0o700); err != nil {
		return err
	}
	return st.writePaczfsDir()
}

const networkdDHCP = `# Written by paczfs: DHCP (v4 and v6) on every ethernet interface.
[Match]
Type=ether

[Network]
DHCP=yes
`

func setTimezone(root, tz string) error {
	zone := filepath.Join(root, "usr/share/zoneinfo", tz)
	if _, err := os.Stat(zone); err != nil && tz != "UTC" {
		return fmt.Errorf("system.timezone: %s is not in the target's zoneinfo (install tzdata, or check the name)", tz)
	}
	link := filepath.Join(root, "etc/localtime")
	_ = os.Remove(link)
	// Without tzdata systemd treats a dangling link to UTC as UTC.
	return os.Symlink("../usr/share/zoneinfo/"+tz, link)
}

func (st *build) setLocales(ctx context.Context) error {
	root := st.state.Root
	locales := st.cfg.System.Locales
	var gen bytes.Buffer
	gen.WriteString("# Written by paczfs: the locales locale-gen builds.\n")
	for _, l := range locales {
		gen.WriteString(l + "\n")
	}
	oldGen, _ := os.ReadFile(filepath.Join(root, "etc/locale.gen"))
	if err := writeFile(root, "etc/locale.gen", gen.Bytes(), 0o644); err != nil {
		return err
	}
	lang := strings.Fields(locales[0])[0]
	if err := writeFile(root, "etc/locale.conf", []byte("LANG="+lang+"\n"), 0o644); err != nil {
		return err
	}
	if st.localesStillBuilt(oldGen, gen.Bytes()) {
		st.b.log.Debug("locales kept from the previous release: locale.gen and the locale packages are unchanged")
		return nil
	}
	if !exists(root, "usr/sbin/locale-gen") && !exists(root, "usr/bin/locale-gen") {
		return errors.New("system.locales: the target has no locale-gen (install glibc on Arch, locales on Debian)")
	}
	return st.chroot(ctx, "locale-gen")
}

func exists(root, name string) bool {
	_, err := os.Lstat(filepath.Join(root, name))
	return err == nil
}

// copySkel copies /etc/skel into /root without replacing anything there.
func copySkel(root string) error {
	skel := filepath.Join(root, "etc/skel")
	home := filepath.Join(root, "root")
	if err := fsx.Mkdir(home, 0o700); err != nil {
		return err
	}
	if err := os.Chmod(home, 0o700); err != nil {
		return err
	}
	return filepath.WalkDir(skel, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p == skel {
				return nil
			}
			return err
		}
		rel, _ := filepath.Rel(skel, p)
		dst := filepath.Join(home, rel)
		if d.IsDir() {
			return fsx.Mkdir(dst, 0o700)
		}
		if _, err := os.Lstat(dst); err == nil || !d.Type().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return fsx.WriteFile(dst, data, 0o600)
	})
}

// setRootLogin sets root's password hash, or locks the password, and
// writes the authorized keys with the permissions sshd insists on.
func setRootLogin(root, hash string, keys []string) error {
	shadow := filepath.Join(root, "etc/shadow")
	data, err := os.ReadFile(shadow)
	if err != nil {
		return fmt.Errorf("root account: %w", err)
	}
	pw := hash
	if pw == "" {
		pw = "!*" // locked: no password login
	}
	var out bytes.Buffer
	found := false
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		if f := strings.Split(line, ":"); len(f) >= 2 && f[0] == "root" {
			f[1] = pw
			line = strings.Join(f, ":")
			found = true
		}
		out.WriteString(line + "\n")
	}
	if !found {
		return errors.New("root account: no root line in the target's /etc/shadow")
	}
	fi, err := os.Stat(shadow)
	if err != nil {
		return err
	}
	if err := writeFile(root, "etc/shadow", out.Bytes(), fi.Mode().Perm()); err != nil {
		return err
	}
	if len(keys) == 0 {
		return nil
	}
	ssh := filepath.Join(root, "root/.ssh")
	if err := fsx.Mkdir(ssh, 0o700); err != nil {
		return err
	}
	if err := os.Chmod(ssh, 0o700); err != nil {
		return err
	}
	return writeFile(root, "root/.ssh/authorized_keys", []byte(strings.Join(keys, "\n")+"\n"), 0o600)
}

// writeHostID writes /etc/hostid as zgenhostid does (4 bytes, host byte
// order, little-endian on x86_64): given, or random per image. ZFS stamps
// it on the pool when the booted system imports it, and the initramfs
// carries the same file, so the two always agree.
func writeHostID(root, hostID string) (string, error) {
	var id [4]byte
	if hostID == "" {
		for id == [4]byte{} {
			if _, err := rand.Read(id[:]); err != nil {
				return "", err
			}
		}
	} else {
		b, err := hex.DecodeString(hostID)
		if err != nil || len(b) != 4 {
			return "", fmt.Errorf("system.hostid %q: want 8 hex digits", hostID)
		}
		binary.LittleEndian.PutUint32(id[:], binary.BigEndian.Uint32(b))
	}
	if err := writeFile(root, "etc/hostid", id[:], 0o644); err != nil {
		return "", err
	}
	return fmt.Sprintf("%08x", binary.LittleEndian.Uint32(id[:])), nil
}

// keepHostID reads the root's /etc/hostid: a derived build's (received
// from the previous release) or the one written before the bootable layer.
func keepHostID(root string) (string, error) {
	b, err := os.ReadFile(filepath.Join(root, "etc/hostid"))
	if err != nil || len(b) != 4 {
		return "", fmt.Errorf("/etc/hostid is missing or not 4 bytes (%v): the build keeps the one written before the bootable layer, or a derived build the previous release's", err)
	}
	return fmt.Sprintf("%08x", binary.LittleEndian.Uint32(b)), nil
}

// fstab mounts the ESP at /efi and the swap partition, by partition UUID.
// There are no ZFS lines: the initramfs mounts the root, zfs-mount the rest.
// The ESP may wait five minutes for its device, not systemd's 90 s: it is
// on the disk the firmware booted from, so a late device means a slow
// udev (an emulated machine under load), and boot assessment needs it.
func (st *build) fstab() []byte {
	var b bytes.Buffer
	b.WriteString("# Written by paczfs. The root is mounted by the initramfs (see the kernel\n" +
		"# command line), the other datasets by zfs-mount.service.\n")
	if p, ok := st.target.plan.Find(disk.RoleESP); ok {
		fmt.Fprintf(&b, "PARTUUID=%s %s vfat rw,relatime,fmask=0077,dmask=0077,nofail,x-systemd.device-timeout=5min 0 2\n", strings.ToLower(p.GUID), espMountPoint)
	}
	if p, ok := st.target.plan.Find(disk.RoleSwap); ok {
		fmt.Fprintf(&b, "PARTUUID=%s none swap defaults,nofail 0 0\n", strings.ToLower(p.GUID))
	}
	return b.Bytes()
}

// writePaczfsDir records the build in /etc/paczfs: the effective
// configuration, the installed packages with versions, paczfs's version.
func (st *build) writePaczfsDir() error {
	root := st.state.Root
	cfg, err := json.MarshalIndent(st.cfg, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFile(root, "etc/paczfs/config.json", append(cfg, '\n'), 0o644); err != nil {
		return err
	}
	if err := writeFile(root, "etc/paczfs/version", []byte(Version+"\n"), 0o644); err != nil {
		return err
	}
	return st.writePackageList()
}

// writePackageList lists what the target's pacman database holds (so the
// list is true even when a hook installed more).
func (st *build) writePackageList() error {
	root := st.state.Root
	pkgs, err := installedPackages(root)
	if err != nil {
		return err
	}
	var b bytes.Buffer
	for _, p := range pkgs {
		b.WriteString(p + "\n")
	}
	return writeFile(root, "etc/paczfs/packages.txt", b.Bytes(), 0o644)
}

// installedPackages reads "name version" from the local pacman database.
func installedPackages(root string) ([]string, error) {
	descs, err := filepath.Glob(filepath.Join(root, "var/lib/pacman/local/*/desc"))
	if err != nil {
		return nil, err
	}
	var out []string
	for _, d := range descs {
		data, err := os.ReadFile(d)
		if err != nil {
			return nil, err
		}
		name, version := descField(data, "%NAME%"), descField(data, "%VERSION%")
		if name != "" {
			out = append(out, name+" "+version)
		}
	}
	sort.Strings(out)
	return out, nil
}

func descField(desc []byte, key string) string {
	lines := strings.Split(string(desc), "\n")
	for i, l := range lines {
		if l == key && i+1 < len(lines) {
			return strings.TrimSpace(lines[i+1])
		}
	}
	return ""
}

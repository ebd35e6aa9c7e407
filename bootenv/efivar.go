package bootenv

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"unicode/utf16"

	"golang.org/x/sys/unix"
)

// systemd-boot's variables (the Boot Loader Interface).
const (
	loaderGUID       = "4a67b082-0a4c-41cf-b6c7-440b29bb8c4f"
	varOneShot       = "LoaderEntryOneShot"
	varDefault       = "LoaderEntryDefault"
	varSelected      = "LoaderEntrySelected"
	varBootCountPath = "LoaderBootCountPath"
)

// readEFIVar reads a UTF-16 string variable ("" when absent or no efivarfs).
func (m *Manager) readEFIVar(name string) string {
	if m.efivars == "" {
		return ""
	}
	data, err := os.ReadFile(filepath.Join(m.efivars, name+"-"+loaderGUID))
	if err != nil || len(data) < 4 {
		return ""
	}
	return decodeUTF16(data[4:])
}

func decodeUTF16(b []byte) string {
	u := make([]uint16, 0, len(b)/2)
	for i := 0; i+1 < len(b); i += 2 {
		c := binary.LittleEndian.Uint16(b[i:])
		if c == 0 {
			break
		}
		u = append(u, c)
	}
	return string(utf16.Decode(u))
}

// EncodeEFIString is an efivarfs file's content for a string variable:
// the attributes (non-volatile, boot and runtime access) and UTF-16LE
// with a terminating NUL. Tests use it to fake variables.
func EncodeEFIString(s string) []byte {
	b := []byte{0x07, 0, 0, 0}
	for _, c := range utf16.Encode([]rune(s)) {
		b = binary.LittleEndian.AppendUint16(b, c)
	}
	return append(b, 0, 0)
}

// writeEFIVar sets (or, with value "", deletes) a systemd-boot string
// variable through efivarfs, as bootctl set-oneshot does: efivarfs marks
// existing variables immutable, so the flag is cleared first, and the
// attributes and value go in one write.
func (m *Manager) writeEFIVar(name, value string) error {
	if m.efivars == "" {
		return fmt.Errorf("EFI variable %s: %w (no efivarfs)", name, ErrNotBooted)
	}
	p := filepath.Join(m.efivars, name+"-"+loaderGUID)
	if _, err := os.Stat(p); err == nil {
		if err := clearImmutable(p); err != nil {
			return fmt.Errorf("EFI variable %s: %w", name, err)
		}
		if value == "" {
			return os.Remove(p)
		}
	} else if value == "" {
		return nil
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("EFI variable %s: %w", name, err)
	}
	if _, err := f.Write(EncodeEFIString(value)); err != nil {
		f.Close()
		return fmt.Errorf("EFI variable %s: %w", name, err)
	}
	return f.Close()
}

// fsImmutableFL is FS_IMMUTABLE_FL of linux/fs.h (chattr +i).
const fsImmutableFL = 0x00000010

// clearImmutable drops FS_IMMUTABLE_FL; file systems without flags
// (a test's directory) have nothing to clear.
func clearImmutable(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	flags, err := unix.IoctlGetUint32(int(f.Fd()), unix.FS_IOC_GETFLAGS)
	if errors.Is(err, unix.ENOTTY) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL) {
		return nil
	}
	if err != nil {
		return err
	}
	if flags&fsImmutableFL == 0 {
		return nil
	}
	return unix.IoctlSetPointerInt(int(f.Fd()), unix.FS_IOC_SETFLAGS, int(flags&^fsImmutableFL))
}

package disk

import (
	"fmt"
	"strconv"
	"strings"
)

// Size is a number of bytes.
type Size int64

// Common sizes.
const (
	KiB Size = 1 << 10
	MiB Size = 1 << 20
	GiB Size = 1 << 30
	TiB Size = 1 << 40
)

// ParseSize reads a size the way truncate(1) and the original paczfs
// IMAGE_SIZE did: a whole number followed by an optional binary unit
// K, M, G or T (also written KiB, MiB, GiB, TiB); "550M", "1G", "20G".
// A bare number is bytes. Units are powers of 1024.
func ParseSize(s string) (Size, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, fmt.Errorf("size %q: empty; write a number with a unit such as 550M or 20G", s)
	}
	i := 0
	for i < len(t) && t[i] >= '0' && t[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, fmt.Errorf("size %q: does not start with a whole number; write for example 550M or 20G", s)
	}
	n, err := strconv.ParseInt(t[:i], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("size %q: %w", s, err)
	}
	var unit Size
	switch strings.ToUpper(t[i:]) {
	case "", "B":
		unit = 1
	case "K", "KIB":
		unit = KiB
	case "M", "MIB":
		unit = MiB
	case "G", "GIB":
		unit = GiB
	case "T", "TIB":
		unit = TiB
	default:
		return 0, fmt.Errorf("size %q: unknown unit %q; use K, M, G or T (powers of 1024)", s, t[i:])
	}
	if n > int64(^uint64(0)>>1)/int64(unit) {
		return 0, fmt.Errorf("size %q: too large", s)
	}
	return Size(n) * unit, nil
}

// String renders the size with the largest unit that divides it exactly.
func (s Size) String() string {
	for _, u := range []struct {
		size Size
		name string
	}{{TiB, "T"}, {GiB, "G"}, {MiB, "M"}, {KiB, "K"}} {
		if s != 0 && s%u.size == 0 {
			return strconv.FormatInt(int64(s/u.size), 10) + u.name
		}
	}
	return strconv.FormatInt(int64(s), 10)
}

// MarshalText implements encoding.TextMarshaler, so configurations carry "20G".
func (s Size) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler with ParseSize.
func (s *Size) UnmarshalText(b []byte) error {
	v, err := ParseSize(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

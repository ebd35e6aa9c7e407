package disk

import (
	"crypto/rand"
	"crypto/sha256"
	"fmt"
)

// SeededGUIDs fills in the disk GUID and every empty partition GUID from
// seed, so that the same seed and layout always give byte-identical tables
// (reproducible images). An empty seed draws random GUIDs instead.
func (p Plan) SeededGUIDs(seed string) Plan {
	out := p
	out.Partitions = append([]Partition(nil), p.Partitions...)
	if out.DiskGUID == "" {
		out.DiskGUID = guid(seed, "disk")
	}
	for i := range out.Partitions {
		if out.Partitions[i].GUID == "" {
			out.Partitions[i].GUID = guid(seed, fmt.Sprintf("partition/%d", out.Partitions[i].Number))
		}
	}
	return out
}

// guid returns a version 4 style GUID: from SHA-256(seed/what) when seed
// is set, random otherwise.
func guid(seed, what string) string {
	var b [16]byte
	if seed == "" {
		_, _ = rand.Read(b[:])
	} else {
		sum := sha256.Sum256([]byte("paczfs/" + seed + "/" + what))
		copy(b[:], sum[:16])
	}
	b[6] = b[6]&0x0f | 0x40 // version 4
	b[8] = b[8]&0x3f | 0x80 // RFC 4122 variant
	return fmt.Sprintf("%X-%X-%X-%X-%X", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

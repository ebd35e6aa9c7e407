package testutil

import (
	"bytes"
	"fmt"
	"strings"
)

// Newc returns a newc cpio archive (the initramfs format) of the named
// members, each a regular file holding "content of NAME\n", or a
// directory where the name ends in /; then the trailer, padded to 512
// bytes as cpio pads it.
func Newc(members ...string) []byte {
	var b bytes.Buffer
	add := func(name string, mode uint32, data []byte) {
		fmt.Fprintf(&b, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
			1, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name)+1, 0)
		b.WriteString(name + "\x00")
		for b.Len()%4 != 0 {
			b.WriteByte(0)
		}
		b.Write(data)
		for b.Len()%4 != 0 {
			b.WriteByte(0)
		}
	}
	for _, m := range members {
		if dir, ok := strings.CutSuffix(m, "/"); ok {
			add(dir, 0o40755, nil)
		} else {
			add(m, 0o100644, []byte("content of "+m+"\n"))
		}
	}
	add("TRAILER!!!", 0, nil)
	for b.Len()%512 != 0 {
		b.WriteByte(0)
	}
	return b.Bytes()
}

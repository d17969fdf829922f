package volume

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
)

// identify names what a volume that holds no filesystem we read holds
// instead, with its UUID, when its signature is one blkid knows: "swap
// (UUID ...)", "LUKS1 (UUID ...)", "LUKS2 (UUID ...)", "btrfs (UUID
// ...)"; "" otherwise. It reads the first 68 KiB at most.
func identify(r io.ReaderAt, size int64) string {
	read := func(off, n int64) []byte {
		if off+n > size {
			return nil
		}
		b := make([]byte, n)
		if _, err := r.ReadAt(b, off); err != nil && err != io.EOF {
			return nil
		}
		return b
	}
	// LUKS: "LUKS\xba\xbe", a big-endian version, the UUID as text at
	// byte 168 in both versions (cryptsetup's luks1.h, luks2.h).
	if h := read(0, 208); h != nil && bytes.Equal(h[:6], []byte("LUKS\xba\xbe")) {
		v := binary.BigEndian.Uint16(h[6:])
		return fmt.Sprintf("LUKS%d (UUID %s)", v, cString(h[168:208]))
	}
	// Swap: "SWAPSPACE2" ends the first page (4 KiB on most machines,
	// up to 64 KiB); the UUID follows the 1 KiB boot block, version,
	// last page and bad page count (util-linux swapheader.h).
	for _, page := range []int64{4096, 8192, 16384, 65536} {
		if m := read(page-10, 10); m != nil && (string(m) == "SWAPSPACE2" || string(m) == "SWAP-SPACE") {
			if h := read(1024, 28); h != nil {
				return fmt.Sprintf("swap (UUID %s)", uuid(h[12:28]))
			}
		}
	}
	// Btrfs: the superblock at 64 KiB, "_BHRfS_M" at byte 64, the
	// filesystem UUID at byte 32.
	if sb := read(64<<10, 80); sb != nil && string(sb[64:72]) == "_BHRfS_M" {
		return fmt.Sprintf("btrfs (UUID %s)", uuid(sb[32:48]))
	}
	return ""
}

// uuid formats 16 bytes as blkid prints a UUID.
func uuid(b []byte) string {
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// cString is b up to its first NUL, with anything unprintable dropped.
func cString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(bytes.Map(func(r rune) rune {
		if r < ' ' || r > '~' {
			return -1
		}
		return r
	}, b))
}

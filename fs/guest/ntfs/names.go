package ntfs

import (
	"encoding/binary"
	"unicode/utf16"
)

// decodeName turns a UTF-16LE name into UTF-8. Unpaired surrogates,
// which NTFS allows, become U+FFFD.
func decodeName(b []byte) string {
	u := make([]uint16, len(b)/2)
	for i := range u {
		u[i] = binary.LittleEndian.Uint16(b[2*i:])
	}
	return string(utf16.Decode(u))
}

package ntfs

import (
	"encoding/binary"
	"errors"
)

// LZNT1 as NTFS stores compressed files: a compression unit (16
// clusters) is a sequence of chunks, each decompressing to at most 4096
// bytes. This follows [MS-XCA] 2.5 and ntfs-3g's ntfs_decompress.
const lzntChunk = 4096

var errLZNT1 = errors.New("malformed LZNT1 data")

// lznt1Decompress decodes src into dst, which is the whole unit; output
// that the chunks do not cover, and the rest of a short chunk, reads as
// zeros. Every length is checked; nothing is read or written outside
// src and dst.
func lznt1Decompress(dst, src []byte) error {
	le := binary.LittleEndian
	out := 0
	for in := 0; ; {
		if in+2 > len(src) || out == len(dst) {
			break
		}
		h := le.Uint16(src[in:])
		if h == 0 {
			break
		}
		end := in + 2 + int(h&0x0FFF) + 1 // chunk data runs to here
		if end > len(src) || out+lzntChunk > len(dst) {
			return errLZNT1
		}
		in += 2
		chunk := dst[out : out+lzntChunk]
		if h&0x8000 == 0 {
			// Stored chunk: always a full 4096 bytes.
			if end-in != lzntChunk {
				return errLZNT1
			}
			copy(chunk, src[in:end])
			in = end
			out += lzntChunk
			continue
		}
		pos := 0 // bytes decoded in this chunk
		for in < end {
			tag := src[in]
			in++
			for bit := 0; bit < 8 && in < end; bit++ {
				if tag&(1<<bit) == 0 {
					if pos >= lzntChunk {
						return errLZNT1
					}
					chunk[pos] = src[in]
					pos++
					in++
					continue
				}
				if in+2 > end || pos == 0 {
					return errLZNT1
				}
				tok := int(le.Uint16(src[in:]))
				in += 2
				lg := 0
				for i := pos - 1; i >= 0x10; i >>= 1 {
					lg++
				}
				back := (tok >> (12 - lg)) + 1
				n := (tok & (0xFFF >> lg)) + 3
				if back > pos || pos+n > lzntChunk {
					return errLZNT1
				}
				// Byte by byte: the copy may overlap its own output.
				for k := 0; k < n; k++ {
					chunk[pos] = chunk[pos-back]
					pos++
				}
			}
		}
		clear(chunk[pos:])
		out += lzntChunk
	}
	clear(dst[out:])
	return nil
}

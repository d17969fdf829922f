package ext4

import (
	"encoding/binary"
	"hash/crc32"
)

// Checksums of ext4 and jbd2. metadata_csum and journal checksums v2/v3
// are crc32c as the kernel computes it: seeded, and neither inverted on
// entry nor on exit. The old group descriptor checksum (gdt_csum) is
// crc16 (ANSI, reflected); the old journal checksum (v1) is the
// big-endian crc32 of the kernel's crc32_be.

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// crc32c continues the raw crc32c crc over p. hash/crc32 inverts on
// entry and exit; undoing both gives the kernel's crc32c(crc, p, len).
func crc32c(crc uint32, p []byte) uint32 {
	return ^crc32.Update(^crc, castagnoli, p)
}

// crc32cLE continues crc over the little-endian bytes of v.
func crc32cLE(crc, v uint32) uint32 {
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], v)
	return crc32c(crc, b[:])
}

var zeros [8]byte

// crc32cSkip continues crc over b with the n bytes at off read as zeros,
// for checksums computed with their own field zeroed.
func crc32cSkip(crc uint32, b []byte, off, n int) uint32 {
	crc = crc32c(crc, b[:off])
	crc = crc32c(crc, zeros[:n])
	return crc32c(crc, b[off+n:])
}

var crc16Table = func() (t [256]uint16) {
	for i := range t {
		c := uint16(i)
		for range 8 {
			if c&1 != 0 {
				c = c>>1 ^ 0xA001
			} else {
				c >>= 1
			}
		}
		t[i] = c
	}
	return t
}()

// crc16 continues the kernel's crc16 (polynomial 0x8005, reflected).
func crc16(crc uint16, p []byte) uint16 {
	for _, b := range p {
		crc = crc>>8 ^ crc16Table[byte(crc)^b]
	}
	return crc
}

var crc32beTable = func() (t [256]uint32) {
	for i := range t {
		c := uint32(i) << 24
		for range 8 {
			if c&0x80000000 != 0 {
				c = c<<1 ^ 0x04C11DB7
			} else {
				c <<= 1
			}
		}
		t[i] = c
	}
	return t
}()

// crc32be continues the kernel's crc32_be (polynomial 0x04C11DB7, most
// significant bit first, no inversion).
func crc32be(crc uint32, p []byte) uint32 {
	for _, b := range p {
		crc = crc<<8 ^ crc32beTable[byte(crc>>24)^b]
	}
	return crc
}

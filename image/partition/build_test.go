package partition

import (
	"encoding/binary"
	"hash/crc32"
	"unicode/utf16"
)

// GPT type GUIDs in on-disk byte order.
var (
	linuxFS   = guidBytes("0FC63DAF-8483-4772-8E79-3D69D8477DE4")
	efiSystem = guidBytes("C12A7328-F81F-11D2-BA4B-00A0C93EC93B")
)

func guidBytes(s string) [16]byte {
	var b [16]byte
	hex := func(s string) []byte {
		out := make([]byte, len(s)/2)
		for i := range out {
			var v byte
			for _, c := range s[2*i : 2*i+2] {
				v <<= 4
				switch {
				case c >= '0' && c <= '9':
					v |= byte(c - '0')
				default:
					v |= byte(c-'A') + 10
				}
			}
			out[i] = v
		}
		return out
	}
	raw := hex(s[0:8] + s[9:13] + s[14:18] + s[19:23] + s[24:36])
	le := binary.LittleEndian
	be := binary.BigEndian
	le.PutUint32(b[0:], be.Uint32(raw[0:]))
	le.PutUint16(b[4:], be.Uint16(raw[4:]))
	le.PutUint16(b[6:], be.Uint16(raw[6:]))
	copy(b[8:], raw[8:])
	return b
}

type gptPart struct {
	typ         [16]byte
	first, last uint64
	name        string
}

// buildGPT writes a whole disk of sectors*ss bytes with a protective MBR,
// both GPT headers and both entries arrays, for tests sgdisk cannot make
// (4096-byte sectors, forged entries).
func buildGPT(ss int, sectors uint64, parts []gptPart) []byte {
	img := make([]byte, uint64(ss)*sectors)
	le := binary.LittleEndian
	mbr := img[446:]
	mbr[4] = 0xEE
	le.PutUint32(mbr[8:], 1)
	le.PutUint32(mbr[12:], uint32(min(sectors-1, 0xFFFFFFFF)))
	img[510], img[511] = 0x55, 0xAA

	const n, esize = 128, 128
	entries := make([]byte, n*esize)
	for i, p := range parts {
		e := entries[i*esize:]
		copy(e, p.typ[:])
		e[16] = byte(i + 1) // unique GUID
		le.PutUint64(e[32:], p.first)
		le.PutUint64(e[40:], p.last)
		for j, c := range utf16.Encode([]rune(p.name)) {
			le.PutUint16(e[56+2*j:], c)
		}
	}
	arr := uint64((n*esize + ss - 1) / ss)
	last := sectors - 1
	header := func(my, alt, entriesLBA uint64) {
		h := img[my*uint64(ss):][:92]
		copy(h, "EFI PART")
		le.PutUint32(h[8:], 0x00010000)
		le.PutUint32(h[12:], 92)
		le.PutUint64(h[24:], my)
		le.PutUint64(h[32:], alt)
		le.PutUint64(h[40:], 2+arr)
		le.PutUint64(h[48:], last-1-arr)
		h[56] = 0x42
		le.PutUint64(h[72:], entriesLBA)
		le.PutUint32(h[80:], n)
		le.PutUint32(h[84:], esize)
		le.PutUint32(h[88:], crc32.ChecksumIEEE(entries))
		le.PutUint32(h[16:], crc32.ChecksumIEEE(h))
		copy(img[entriesLBA*uint64(ss):], entries)
	}
	header(1, last, 2)
	header(last, 1, last-arr)
	return img
}

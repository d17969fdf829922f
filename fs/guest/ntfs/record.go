package ntfs

import (
	"encoding/binary"
	"fmt"

	"github.com/cairn-backup/cairn/fs/guest"
)

// MFT record header flags.
const (
	recInUse = 0x0001
	recIsDir = 0x0002
)

// Attribute types.
const (
	atStandardInfo = 0x10
	atAttrList     = 0x20
	atFileName     = 0x30
	atData         = 0x80
	atIndexRoot    = 0x90
	atIndexAlloc   = 0xA0
	atBitmap       = 0xB0
	atReparse      = 0xC0
	atEA           = 0xE0
	atEnd          = 0xFFFFFFFF
)

// Attribute flags.
const (
	attrCompressed = 0x0001
	attrEncrypted  = 0x4000
	attrSparse     = 0x8000
)

// mrefNum and mrefSeq split a file reference: 48 bits of record number,
// 16 bits of sequence number.
func mrefNum(ref uint64) uint64 { return ref & (1<<48 - 1) }
func mrefSeq(ref uint64) uint16 { return uint16(ref >> 48) }

// record is one MFT record after its update sequence was verified and
// undone, with its attributes located.
type record struct {
	num   uint64
	seq   uint16
	links uint16
	flags uint16
	base  uint64 // file reference of the base record; 0 in a base record
	attrs []rawAttr
}

// rawAttr is one attribute as a record holds it. For a non-resident
// attribute only this record's extent (lowVCN..highVCN) is described.
type rawAttr struct {
	typ      uint32
	name     string
	flags    uint16
	instance uint16
	resident bool
	value    []byte // resident value

	lowVCN, highVCN uint64
	mapping         []byte // mapping pairs (runlist) of this extent
	cuShift         uint8  // compression unit: 2^cuShift clusters
	allocSize       uint64 // the sizes are valid in the extent with lowVCN 0
	dataSize        uint64
	initSize        uint64
	compSize        uint64
}

func corruptRecord(num uint64, format string, args ...any) error {
	return fmt.Errorf("ntfs: MFT record %d: %s: %w", num, fmt.Sprintf(format, args...), guest.ErrCorrupt)
}

// unfixup verifies the update sequence of a multi-sector structure (an
// MFT record or an index block) and puts back the bytes it replaced at
// the end of every 512-byte sector. what names the structure in errors.
func unfixup(b []byte, what func() string) error {
	le := binary.LittleEndian
	usaOff := int(le.Uint16(b[4:]))
	usaCount := int(le.Uint16(b[6:]))
	if usaOff%2 != 0 || usaCount-1 != len(b)/sectorSize || usaOff < 8 || usaOff+2*usaCount > sectorSize-2 {
		return fmt.Errorf("ntfs: %s: update sequence array of %d at offset %d: %w", what(), usaCount, usaOff, guest.ErrCorrupt)
	}
	usn := le.Uint16(b[usaOff:])
	for i := 1; i < usaCount; i++ {
		p := i*sectorSize - 2
		if le.Uint16(b[p:]) != usn {
			return fmt.Errorf("ntfs: %s: update sequence mismatch in sector %d (torn or damaged write): %w", what(), i-1, guest.ErrCorrupt)
		}
		copy(b[p:p+2], b[usaOff+2*i:])
	}
	return nil
}

// parseRecord checks the fixed-up MFT record b of number num and locates
// its attributes. b is kept: the attributes refer into it.
func parseRecord(num uint64, b []byte) (*record, error) {
	le := binary.LittleEndian
	switch string(b[:4]) {
	case "FILE":
	case "BAAD":
		return nil, corruptRecord(num, "marked bad by chkdsk")
	default:
		return nil, corruptRecord(num, "bad magic %q", b[:4])
	}
	if err := unfixup(b, func() string { return fmt.Sprintf("MFT record %d", num) }); err != nil {
		return nil, err
	}
	r := &record{
		num:   num,
		seq:   le.Uint16(b[0x10:]),
		links: le.Uint16(b[0x12:]),
		flags: le.Uint16(b[0x16:]),
		base:  le.Uint64(b[0x20:]),
	}
	attrsOff := uint64(le.Uint16(b[0x14:]))
	inUse := uint64(le.Uint32(b[0x18:]))
	alloc := uint64(le.Uint32(b[0x1C:]))
	if alloc != uint64(len(b)) || inUse > alloc || attrsOff < 0x18 || attrsOff+4 > inUse {
		return nil, corruptRecord(num, "header: attributes at %d, %d of %d bytes in use", attrsOff, inUse, alloc)
	}
	if r.flags&recInUse == 0 {
		return r, nil // free: its attributes are of no interest
	}
	for off := attrsOff; ; {
		if off+4 > inUse {
			return nil, corruptRecord(num, "attributes run past the %d bytes in use", inUse)
		}
		a := b[off:inUse]
		typ := le.Uint32(a)
		if typ == atEnd {
			break
		}
		if len(a) < 0x18 {
			return nil, corruptRecord(num, "attribute 0x%x cut at offset %d", typ, off)
		}
		length := uint64(le.Uint32(a[4:]))
		if length < 0x18 || length > uint64(len(a)) {
			return nil, corruptRecord(num, "attribute 0x%x of length %d at offset %d", typ, length, off)
		}
		a = a[:length]
		ra, err := parseAttr(num, typ, a)
		if err != nil {
			return nil, err
		}
		r.attrs = append(r.attrs, ra)
		off += length
	}
	return r, nil
}

func parseAttr(num uint64, typ uint32, a []byte) (rawAttr, error) {
	le := binary.LittleEndian
	ra := rawAttr{
		typ:      typ,
		resident: a[8] == 0,
		flags:    le.Uint16(a[0xC:]),
		instance: le.Uint16(a[0xE:]),
	}
	nameLen := int(a[9])
	nameOff := int(le.Uint16(a[0xA:]))
	if nameLen > 0 {
		if nameOff+2*nameLen > len(a) {
			return ra, corruptRecord(num, "attribute 0x%x name runs past the attribute", typ)
		}
		ra.name = decodeName(a[nameOff : nameOff+2*nameLen])
	}
	if ra.resident {
		vlen := uint64(le.Uint32(a[0x10:]))
		voff := uint64(le.Uint16(a[0x14:]))
		if voff+vlen > uint64(len(a)) {
			return ra, corruptRecord(num, "attribute 0x%x value of %d bytes at %d runs past the attribute", typ, vlen, voff)
		}
		ra.value = a[voff : voff+vlen]
		return ra, nil
	}
	if len(a) < 0x40 {
		return ra, corruptRecord(num, "non-resident attribute 0x%x of %d bytes", typ, len(a))
	}
	ra.lowVCN = le.Uint64(a[0x10:])
	ra.highVCN = le.Uint64(a[0x18:])
	mpOff := int(le.Uint16(a[0x20:]))
	ra.cuShift = a[0x22]
	ra.allocSize = le.Uint64(a[0x28:])
	ra.dataSize = le.Uint64(a[0x30:])
	ra.initSize = le.Uint64(a[0x38:])
	if mpOff >= 0x48 && ra.flags&(attrCompressed|attrSparse) != 0 {
		ra.compSize = le.Uint64(a[0x40:])
	} else {
		ra.compSize = ra.allocSize
	}
	if mpOff < 0x40 || mpOff > len(a) {
		return ra, corruptRecord(num, "attribute 0x%x mapping pairs at offset %d", typ, mpOff)
	}
	ra.mapping = a[mpOff:]
	return ra, nil
}

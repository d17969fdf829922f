package lvm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// Sizes and magic numbers of the LVM2 on-disk format (lib/label/label.h
// and lib/format_text/layout.h of LVM2). LVM counts in 512-byte sectors
// whatever the device's own sector size.
const (
	sectorSize     = 512
	labelSectors   = 4 // the label is in one of the first four sectors
	labelHeaderLen = 32
	mdaHeaderSize  = 512
	idLen          = 32
	initialCRC     = 0xf597a6cf
	rawLocnIgnored = 0x1

	labelID   = "LABELONE"
	labelType = "LVM2 001"
	fmttMagic = " LVM2 x[5A%r0N*>"
)

// Limits that keep reading bounded whatever the disk claims.
const (
	// MaxMetadata bounds the metadata text read from one metadata area.
	// LVM's default area is 1 MiB; big VGs use a few MiB.
	MaxMetadata = 32 << 20
	// maxAreas bounds each list of the PV header; the label sector holds
	// far fewer anyway.
	maxAreas = 16
)

// Area is a stretch of a PV, in bytes from the start of the device.
type Area struct {
	Offset, Size int64
}

// Label is the LVM2 label of a physical volume: sector 0-3 of the
// device, "LABELONE" followed by the PV header.
type Label struct {
	Sector  int    // where the label is, 0-3
	UUID    string // PV UUID as LVM prints it (6-4-4-4-4-4-6 characters)
	DevSize int64  // device size in bytes, as pvcreate saw it
	Data    []Area // data areas; the VG metadata's pe_start is what counts
	Meta    []Area // metadata areas, each starting with an mda header
}

// crc is LVM's calc_crc: CRC-32 (IEEE, reflected) started from
// initialCRC and without the final inversion.
func crc(b []byte) uint32 {
	return ^crc32.Update(^uint32(initialCRC), crc32.IEEETable, b)
}

// ReadLabel finds the LVM2 label in the first four sectors of a device of
// size bytes. It returns (nil, nil) when there is none: the device is no
// PV. A label that is there but damaged is an error wrapping ErrCorrupt.
func ReadLabel(r io.ReaderAt, size int64) (*Label, error) {
	n := min(size, labelSectors*sectorSize)
	if n < sectorSize {
		return nil, nil
	}
	buf := make([]byte, n)
	if err := readFull(r, buf, 0); err != nil {
		return nil, err
	}
	var firstErr error
	for s := 0; s < int(n/sectorSize); s++ {
		sec := buf[s*sectorSize:][:sectorSize]
		if string(sec[:8]) != labelID {
			continue
		}
		l, err := parseLabel(sec, s)
		if err == nil {
			return l, nil
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	return nil, firstErr
}

func parseLabel(sec []byte, s int) (*Label, error) {
	le := binary.LittleEndian
	bad := func(format string, a ...any) error {
		return fmt.Errorf("lvm: label in sector %d: %s: %w", s, fmt.Sprintf(format, a...), ErrCorrupt)
	}
	if got := le.Uint64(sec[8:]); got != uint64(s) {
		return nil, bad("says it is in sector %d", got)
	}
	if got, want := le.Uint32(sec[16:]), crc(sec[20:]); got != want {
		return nil, bad("bad checksum %#x, computed %#x", got, want)
	}
	if string(sec[24:32]) != labelType {
		return nil, bad("type %q, want %q", sec[24:32], labelType)
	}
	off := le.Uint32(sec[20:])
	// The PV header: UUID, device size, then two zero-terminated lists
	// of (offset, size) pairs, all inside the label's sector.
	if off < labelHeaderLen || off > sectorSize-idLen-8 {
		return nil, bad("PV header at offset %d", off)
	}
	h := sec[off:]
	l := &Label{Sector: s, DevSize: int64(le.Uint64(h[idLen:]))}
	if l.DevSize < 0 {
		return nil, bad("device size %d", uint64(l.DevSize))
	}
	uuid, err := formatUUID(h[:idLen])
	if err != nil {
		return nil, bad("PV UUID: %v", err)
	}
	l.UUID = uuid
	rest := h[idLen+8:]
	list := func() ([]Area, error) {
		var out []Area
		for {
			if len(rest) < 16 {
				return nil, bad("area list runs past the sector")
			}
			o, sz := le.Uint64(rest), le.Uint64(rest[8:])
			rest = rest[16:]
			if o == 0 {
				return out, nil
			}
			if len(out) == maxAreas {
				return nil, bad("more than %d areas", maxAreas)
			}
			if o > 1<<62 || sz > 1<<62 {
				return nil, bad("area %d+%d", o, sz)
			}
			out = append(out, Area{int64(o), int64(sz)})
		}
	}
	if l.Data, err = list(); err != nil {
		return nil, err
	}
	if l.Meta, err = list(); err != nil {
		return nil, err
	}
	return l, nil
}

// formatUUID checks a 32-character LVM ID and adds LVM's dashes.
func formatUUID(id []byte) (string, error) {
	for _, c := range id {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '!' || c == '#') {
			return "", fmt.Errorf("character %q", c)
		}
	}
	var b bytes.Buffer
	for i, n := range []int{6, 4, 4, 4, 4, 4, 6} {
		if i > 0 {
			b.WriteByte('-')
		}
		b.Write(id[:n])
		id = id[n:]
	}
	return b.String(), nil
}

// errNoMetadata: a metadata area that holds no VG (an orphan PV, or one
// whose area is set to be ignored).
var errNoMetadata = errors.New("no metadata in this area")

// readMetadata returns the committed metadata text of the metadata area
// a of a device of size bytes, without its terminating NUL.
func readMetadata(r io.ReaderAt, size int64, a Area) ([]byte, error) {
	le := binary.LittleEndian
	bad := func(format string, args ...any) error {
		return fmt.Errorf("lvm: metadata area at %d: %s: %w", a.Offset, fmt.Sprintf(format, args...), ErrCorrupt)
	}
	if a.Offset < 0 || a.Offset > size-mdaHeaderSize {
		return nil, bad("outside the device of %d bytes", size)
	}
	var h [mdaHeaderSize]byte
	if err := readFull(r, h[:], a.Offset); err != nil {
		return nil, err
	}
	if got, want := le.Uint32(h[:]), crc(h[4:]); got != want {
		return nil, bad("header checksum %#x, computed %#x", got, want)
	}
	if string(h[4:20]) != fmttMagic {
		return nil, bad("no metadata area magic")
	}
	if v := le.Uint32(h[20:]); v != 1 {
		return nil, bad("version %d", v)
	}
	if start := le.Uint64(h[24:]); start != uint64(a.Offset) {
		return nil, bad("header says it starts at %d", start)
	}
	mdaSize := le.Uint64(h[32:])
	if mdaSize <= mdaHeaderSize || mdaSize > uint64(size-a.Offset) {
		return nil, bad("size %d on a device of %d bytes", mdaSize, size)
	}
	// raw_locn[0] is the committed metadata (raw_locn[1], when set, is a
	// precommitted copy an interrupted command left: not used).
	loc := h[40:]
	off, n, sum, flags := le.Uint64(loc), le.Uint64(loc[8:]), le.Uint32(loc[16:]), le.Uint32(loc[20:])
	if flags&rawLocnIgnored != 0 || off == 0 && n == 0 {
		return nil, errNoMetadata
	}
	if off < mdaHeaderSize || off >= mdaSize || n == 0 || n > mdaSize-mdaHeaderSize {
		return nil, bad("metadata text %d+%d in an area of %d", off, n, mdaSize)
	}
	if n > MaxMetadata {
		return nil, bad("metadata text of %d bytes, more than %d", n, MaxMetadata)
	}
	// The area is a ring after its header: text that runs past the end
	// goes on right after the header.
	text := make([]byte, n)
	first := min(n, mdaSize-off)
	if err := readFull(r, text[:first], a.Offset+int64(off)); err != nil {
		return nil, err
	}
	if first < n {
		if err := readFull(r, text[first:], a.Offset+mdaHeaderSize); err != nil {
			return nil, err
		}
	}
	if got := crc(text); got != sum {
		return nil, bad("metadata text checksum %#x, header says %#x", got, sum)
	}
	if i := bytes.IndexByte(text, 0); i >= 0 {
		text = text[:i]
	}
	return text, nil
}

// readFull reads len(p) bytes at off; a short read is an I/O error of
// the device, not damage, so it does not wrap ErrCorrupt.
func readFull(r io.ReaderAt, p []byte, off int64) error {
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("lvm: read %d bytes at %d: %w", len(p), off, err)
}

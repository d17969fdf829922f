// Package lvmtest writes LVM2 physical volumes for tests: the label, the
// metadata area and the metadata text, laid out as LVM2 2.03 writes them
// (lib/label/label.c, lib/format_text/format-text.c, export.c), so that
// tests build LVM disks on plain files without loop devices or
// device-mapper. Its output is checked against the real tools (pvck
// --dump, vgcfgrestore --list) by the lvm package's tests.
//
// On-disk layout of a PV as written here (all integers little-endian,
// LVM's sectors are 512 bytes whatever the device's):
//
//	sector 0-3    the label in one of them (LVM uses sector 1):
//	              "LABELONE", its sector number (u64), CRC of the rest
//	              of the sector from byte 20 (u32), offset of the PV
//	              header (u32, 32), "LVM2 001"; then the PV header: UUID
//	              (32 characters), device size (u64), data areas
//	              (offset, size pairs of u64) ending in a zero pair,
//	              metadata areas likewise, then the header extension
//	              (version 2, flags 1, an empty bootloader-area list).
//	mda start     (usually 4096) the metadata area header, 512 bytes:
//	              CRC of its bytes 4-511 (u32), magic " LVM2 x[5A%r0N*>",
//	              version 1 (u32), start (u64, the area's own offset),
//	              size (u64), then raw locations (offset from the area
//	              start, size, CRC of the text, flags; u64 u64 u32 u32)
//	              ending in a zero one: the first is the committed text.
//	mda + offset  the metadata text with a NUL, in a ring that runs
//	              from the end of the area on right after its header.
//	pe_start      extent 0 of the data area (usually 1 MiB).
//
// CRCs are LVM's calc_crc: CRC-32 (IEEE, reflected) from 0xf597a6cf,
// without the final inversion.
package lvmtest

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"strings"
)

// ID makes a deterministic 32-character LVM ID from seed.
func ID(seed string) string {
	const chars = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	h := crc32.ChecksumIEEE([]byte(seed))
	var b strings.Builder
	for i := 0; i < 32; i++ {
		h = h*1103515245 + 12345
		b.WriteByte(chars[(h>>16)%uint32(len(chars))])
	}
	return b.String()
}

// Dashed formats a 32-character ID as LVM prints it: 6-4-4-4-4-4-6.
func Dashed(id string) string {
	var parts []string
	for _, n := range []int{6, 4, 4, 4, 4, 4, 6} {
		parts = append(parts, id[:n])
		id = id[n:]
	}
	return strings.Join(parts, "-")
}

// Label is one PV's label and metadata areas.
type Label struct {
	Sector  int    // 0-3; LVM writes 1
	UUID    string // 32 characters, no dashes
	DevSize int64
	PEStart int64 // bytes; the data area starts here and runs to DevSize
	MDAs    []MDA
}

// MDA is a metadata area and what it holds.
type MDA struct {
	Offset, Size int64
	// TextAt is where the committed text starts, from the area's start;
	// 0 puts it right after the header. Near Size it wraps.
	TextAt int64
	Text   []byte // without the NUL; nil: no VG (an orphan PV)
	// Ignored sets the raw location's "ignored" flag.
	Ignored bool
	// Old texts written before Text in the ring (older seqnos).
	Old [][]byte
}

// crc is LVM's calc_crc.
func crc(b []byte) uint32 {
	return ^crc32.Update(^uint32(0xf597a6cf), crc32.IEEETable, b)
}

// Write writes the label and metadata areas of l to w.
func Write(w io.WriterAt, l Label) error {
	le := binary.LittleEndian
	sec := make([]byte, 512)
	copy(sec, "LABELONE")
	le.PutUint64(sec[8:], uint64(l.Sector))
	le.PutUint32(sec[20:], 32)
	copy(sec[24:], "LVM2 001")
	h := sec[32:]
	copy(h, l.UUID)
	le.PutUint64(h[32:], uint64(l.DevSize))
	o := 40
	put := func(a, b int64) {
		le.PutUint64(h[o:], uint64(a))
		le.PutUint64(h[o+8:], uint64(b))
		o += 16
	}
	put(l.PEStart, 0) // data area: from pe_start, size 0 = to the end
	put(0, 0)
	for _, m := range l.MDAs {
		put(m.Offset, m.Size)
	}
	put(0, 0)
	le.PutUint32(h[o:], 2) // extension version
	le.PutUint32(h[o+4:], 1)
	o += 8
	put(0, 0)
	le.PutUint32(sec[16:], crc(sec[20:]))
	if _, err := w.WriteAt(sec, int64(l.Sector)*512); err != nil {
		return err
	}
	for _, m := range l.MDAs {
		if err := writeMDA(w, m); err != nil {
			return err
		}
	}
	return nil
}

func writeMDA(w io.WriterAt, m MDA) error {
	le := binary.LittleEndian
	at := m.TextAt
	if at == 0 {
		at = 512
	}
	// ring writes text with its NUL at offset off of the area's ring,
	// going on after the header past the end; returns where it ended.
	ring := func(text []byte, off int64) (int64, error) {
		b := append(append([]byte(nil), text...), 0)
		first := min(int64(len(b)), m.Size-off)
		if _, err := w.WriteAt(b[:first], m.Offset+off); err != nil {
			return 0, err
		}
		if first < int64(len(b)) {
			if _, err := w.WriteAt(b[first:], m.Offset+512); err != nil {
				return 0, err
			}
			return 512 + int64(len(b)) - first, nil
		}
		return off + first, nil
	}
	pos := int64(512)
	for _, old := range m.Old {
		end, err := ring(old, pos)
		if err != nil {
			return err
		}
		pos = (end + 511) / 512 * 512
	}
	h := make([]byte, 512)
	copy(h[4:], " LVM2 x[5A%r0N*>")
	le.PutUint32(h[20:], 1)
	le.PutUint64(h[24:], uint64(m.Offset))
	le.PutUint64(h[32:], uint64(m.Size))
	if m.Text != nil {
		if _, err := ring(m.Text, at); err != nil {
			return err
		}
		text := append(append([]byte(nil), m.Text...), 0)
		le.PutUint64(h[40:], uint64(at))
		le.PutUint64(h[48:], uint64(len(text)))
		le.PutUint32(h[56:], crc(text))
		if m.Ignored {
			le.PutUint32(h[60:], 1)
		}
	} else if m.Ignored {
		le.PutUint32(h[60:], 1)
	}
	le.PutUint32(h, crc(h[4:]))
	_, err := w.WriteAt(h, m.Offset)
	return err
}

// VG describes a volume group's metadata text.
type VG struct {
	Name       string
	ID         string // 32 characters
	Seqno      int
	ExtentSize int64 // bytes
	PVs        []PV
	LVs        []LV
}

// PV is a physical volume of a VG.
type PV struct {
	ID      string
	Device  string // the hint LVM records, "/dev/sda2"
	DevSize int64  // bytes
	PEStart int64  // bytes
	PECount int64
}

// LV is a logical volume of a VG.
type LV struct {
	Name     string
	Hidden   bool
	Segments []Segment
}

// Segment is one segment: striped over Stripes, or of another Type
// with its settings in Lines ("thin_pool = \"pool\"", ...).
type Segment struct {
	Start, Count int64 // extents
	Type         string
	StripeSize   int64 // bytes
	Stripes      []Stripe
	Lines        []string
}

// Stripe is where one stripe lies: extent Extent of PV number PV (or of
// the LV named LV).
type Stripe struct {
	PV     int
	LV     string
	Extent int64
}

// Text renders vg as LVM2's text export does.
func (vg VG) Text() []byte {
	var b strings.Builder
	f := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	f("%s {", vg.Name)
	f("id = %q", Dashed(vg.ID))
	f("seqno = %d", vg.Seqno)
	f(`format = "lvm2"`)
	f(`status = ["RESIZEABLE", "READ", "WRITE"]`)
	f("flags = []")
	f("extent_size = %d", vg.ExtentSize/512)
	f("max_lv = 0\nmax_pv = 0\nmetadata_copies = 0\n")
	f("physical_volumes {\n")
	for i, pv := range vg.PVs {
		f("pv%d {", i)
		f("id = %q", Dashed(pv.ID))
		f("device = %q\n", pv.Device)
		f(`status = ["ALLOCATABLE"]`)
		f("flags = []")
		f("dev_size = %d", pv.DevSize/512)
		f("pe_start = %d", pv.PEStart/512)
		f("pe_count = %d", pv.PECount)
		f("}")
	}
	f("}\n")
	if len(vg.LVs) > 0 {
		f("logical_volumes {\n")
		for _, lv := range vg.LVs {
			f("%s {", lv.Name)
			f("id = %q", Dashed(ID(vg.Name+"/"+lv.Name)))
			if lv.Hidden {
				f(`status = ["READ", "WRITE"]`)
			} else {
				f(`status = ["READ", "WRITE", "VISIBLE"]`)
			}
			f("flags = []")
			f("creation_time = 1700000000\t# 2023-11-14 22:13:20 +0000")
			f(`creation_host = "test"`)
			f("segment_count = %d\n", len(lv.Segments))
			for i, s := range lv.Segments {
				f("segment%d {", i+1)
				f("start_extent = %d", s.Start)
				f("extent_count = %d\n", s.Count)
				typ := s.Type
				if typ == "" {
					typ = "striped"
				}
				f("type = %q", typ)
				if typ == "striped" {
					f("stripe_count = %d", len(s.Stripes))
					if len(s.Stripes) > 1 {
						f("stripe_size = %d", s.StripeSize/512)
					}
					f("\nstripes = [")
					for j, st := range s.Stripes {
						name := fmt.Sprintf("pv%d", st.PV)
						if st.LV != "" {
							name = st.LV
						}
						sep := ","
						if j == len(s.Stripes)-1 {
							sep = ""
						}
						f("%q, %d%s", name, st.Extent, sep)
					}
					f("]")
				}
				for _, l := range s.Lines {
					f("%s", l)
				}
				f("}")
			}
			f("}\n")
		}
		f("}\n")
	}
	f("}")
	f("# Generated by LVM2 version 2.03.16(2) (2022-05-18): Tue Nov 14 22:13:20 2023\n")
	f(`contents = "Text Format Volume Group"`)
	f("version = 1\n")
	f(`description = "written by lvmtest"` + "\n")
	f(`creation_host = "test"	# Linux test`)
	f("creation_time = 1700000000\t# Tue Nov 14 22:13:20 2023\n")
	return []byte(b.String())
}

// WriteAll writes the PVs of vg to devs (one per PV, in order): each a
// label in sector 1 and one metadata area from 4 KiB to pe_start holding
// vg's text, as pvcreate and vgcreate lay them out.
func (vg VG) WriteAll(devs []io.WriterAt) error {
	text := vg.Text()
	for i, pv := range vg.PVs {
		l := Label{Sector: 1, UUID: pv.ID, DevSize: pv.DevSize, PEStart: pv.PEStart,
			MDAs: []MDA{{Offset: 4096, Size: pv.PEStart - 4096, Text: text}}}
		if err := Write(devs[i], l); err != nil {
			return err
		}
	}
	return nil
}

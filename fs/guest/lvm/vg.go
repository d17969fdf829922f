package lvm

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
)

var (
	// ErrCorrupt is wrapped by every error about damaged LVM labels or
	// metadata.
	ErrCorrupt = errors.New("damaged LVM metadata")
	// ErrMissingPV: an LV has extents on a physical volume that is not
	// among the devices scanned (it is on another disk).
	ErrMissingPV = errors.New("physical volume not found")
	// ErrUnsupported: an LV of a kind this package does not read (RAID,
	// mirror, cache, VDO, ...).
	ErrUnsupported = errors.New("logical volume type not supported")
)

// Limits on what metadata may describe, so that arithmetic on it cannot
// overflow and loops over it stay short.
const (
	maxBytes    = int64(1) << 62
	maxStripes  = 128
	maxSegments = 1 << 16
	maxLVDepth  = 8 // LVs stacked on LVs (thin on pool data on stripes)
)

// VG is a volume group as its newest metadata describes it.
type VG struct {
	Name       string
	UUID       string
	Seqno      int64
	ExtentSize int64 // bytes
	PVs        []*PV
	LVs        []*LV // in metadata order, hidden ones included
}

// PV is one physical volume of a VG.
type PV struct {
	Key     string // its name in the metadata: "pv0", "pv1", ...
	UUID    string
	Hint    string // the device's path when the metadata was written
	PEStart int64  // bytes from the start of the device to extent 0
	PECount int64
	Dev     *Device // where it was found; nil when missing
}

// LV is one logical volume.
type LV struct {
	Name     string
	UUID     string
	VG       *VG
	Visible  bool // hidden LVs are parts of others (thin pool data, snapshot store, RAID images)
	Extents  int64
	Segments []*Segment

	err  error     // why it cannot be read; set once the VG is assembled
	m    mapper    // how its bytes map onto devices, when readable
	size int64     // bytes; a snapshot's is its origin's
	use  []*Role   // what other LVs use it for
	thin *thinPool // a thin pool's opened metadata, shared by its thin LVs
	// height is 1 for an LV on PVs only, else 1 + that of the tallest LV
	// it is built on: it bounds how deep a read recurses.
	height int
}

// Role says that an LV is a part of another: Of uses it as What
// ("thin pool data", "snapshot store", ...).
type Role struct {
	Of   *LV
	What string
	seg  *Segment // of Of that says so
}

// Segment is a run of an LV's extents with one layout.
type Segment struct {
	Start, Count int64  // extents of the LV
	Type         string // "striped", "thin-pool", "thin", "snapshot", ...
	StripeSize   int64  // bytes, for more than one stripe
	Stripes      []Stripe

	// Thin pools, thin volumes and snapshots.
	Pool, Metadata, Data, Origin, COW, External *LV
	DeviceID                                    int64
	ChunkSize                                   int64 // bytes
	Merging                                     bool  // a snapshot being merged into its origin
}

// Stripe is where a stripe of a segment lies: extents of a PV or of
// another LV.
type Stripe struct {
	PV     *PV
	LV     *LV
	Extent int64 // first extent used
}

// Size is the LV's size in bytes: its extents', or for a snapshot its
// origin's (the extents are then the store of changed chunks).
func (lv *LV) Size() int64 {
	if lv.size > 0 {
		return lv.size
	}
	return lv.Extents * lv.VG.ExtentSize
}

// Err says why the LV cannot be read; nil when it can.
func (lv *LV) Err() error { return lv.err }

// Roles says what other LVs use this one for.
func (lv *LV) Roles() []*Role { return lv.use }

// Kind names the LV's layout for people: "linear", "striped (2
// stripes)", "thin", "thin pool", "snapshot of root", ...
func (lv *LV) Kind() string {
	if len(lv.Segments) == 0 {
		return "empty"
	}
	for _, r := range lv.use {
		if r.What == "snapshot store" {
			return "snapshot of " + r.seg.Origin.Name
		}
	}
	s := lv.Segments[0]
	switch s.Type {
	case "striped":
		stripes := 1
		for _, s := range lv.Segments {
			if s.Type != "striped" {
				return "mixed"
			}
			stripes = max(stripes, len(s.Stripes))
		}
		if stripes == 1 {
			return "linear"
		}
		return fmt.Sprintf("striped (%d stripes)", stripes)
	case "thin-pool":
		return "thin pool"
	case "thin":
		if s.Origin != nil {
			return "thin snapshot of " + s.Origin.Name
		}
		return "thin"
	}
	return s.Type
}

// parseVG builds a VG from a parsed metadata text: the first top-level
// section is the VG, as in LVM (lib/format_text/import_vsn1.c).
func parseVG(root *node) (*VG, error) {
	var vgn *node
	for _, c := range root.children {
		if c.section {
			vgn = c
			break
		}
	}
	if vgn == nil {
		return nil, fmt.Errorf("lvm: metadata text holds no volume group: %w", ErrCorrupt)
	}
	bad := func(format string, a ...any) error {
		return fmt.Errorf("lvm: VG %q: %s: %w", vgn.key, fmt.Sprintf(format, a...), ErrCorrupt)
	}
	if !validName(vgn.key) {
		return nil, bad("not a valid VG name")
	}
	// Strings are cloned: the text they point into is let go.
	vg := &VG{Name: strings.Clone(vgn.key)}
	var ok bool
	if vg.UUID, ok = vgn.str("id"); !ok {
		return nil, bad("no id")
	}
	vg.UUID = strings.Clone(vg.UUID)
	if vg.Seqno, ok = vgn.int("seqno"); !ok || vg.Seqno < 0 {
		return nil, bad("no seqno")
	}
	es, ok := vgn.int("extent_size")
	if !ok || es <= 0 || es > 1<<32 {
		return nil, bad("extent size %d sectors", es)
	}
	vg.ExtentSize = es * sectorSize
	pvs := map[string]*PV{}
	for _, pn := range vgn.get("physical_volumes").sections() {
		pv := &PV{Key: pn.key}
		pv.UUID, _ = pn.str("id")
		pv.Hint, _ = pn.str("device")
		start, ok1 := pn.int("pe_start")
		count, ok2 := pn.int("pe_count")
		if pv.UUID == "" || !ok1 || !ok2 || start < 0 || count < 0 ||
			start > maxBytes/sectorSize || count > (maxBytes-start*sectorSize)/vg.ExtentSize {
			return nil, bad("PV %s: id %q, pe_start %d, pe_count %d", pn.key, pv.UUID, start, count)
		}
		pv.PEStart, pv.PECount = start*sectorSize, count
		pv.Key, pv.UUID, pv.Hint = strings.Clone(pv.Key), strings.Clone(pv.UUID), strings.Clone(pv.Hint)
		pvs[pv.Key] = pv
		vg.PVs = append(vg.PVs, pv)
	}
	// LVs first by name, then their segments, which name PVs and LVs.
	lvs := map[string]*LV{}
	lvNodes := vgn.get("logical_volumes").sections()
	for _, ln := range lvNodes {
		if !validName(ln.key) {
			return nil, bad("LV %q: not a valid name", ln.key)
		}
		lv := &LV{Name: strings.Clone(ln.key), VG: vg}
		lv.UUID, _ = ln.str("id")
		lv.UUID = strings.Clone(lv.UUID)
		lv.Visible = slices.Contains(ln.strings("status"), "VISIBLE")
		lvs[lv.Name] = lv
		vg.LVs = append(vg.LVs, lv)
	}
	for i, ln := range lvNodes {
		if err := parseSegments(vg, vg.LVs[i], ln, pvs, lvs); err != nil {
			return nil, err
		}
	}
	return vg, nil
}

func parseSegments(vg *VG, lv *LV, ln *node, pvs map[string]*PV, lvs map[string]*LV) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("lvm: LV %s/%s: %s: %w", vg.Name, lv.Name, fmt.Sprintf(format, a...), ErrCorrupt)
	}
	sns := ln.sections()
	if len(sns) > maxSegments {
		return bad("%d segments", len(sns))
	}
	if n, ok := ln.int("segment_count"); ok && n != int64(len(sns)) {
		return bad("segment_count %d but %d segments", n, len(sns))
	}
	for _, sn := range sns {
		s := &Segment{Type: "striped"}
		if t, ok := sn.str("type"); ok {
			s.Type = strings.Clone(t)
		}
		var ok1, ok2 bool
		s.Start, ok1 = sn.int("start_extent")
		s.Count, ok2 = sn.int("extent_count")
		if !ok1 || !ok2 || s.Start < 0 || s.Count <= 0 || s.Count > maxBytes/vg.ExtentSize {
			return bad("segment %s: extents %d+%d", sn.key, s.Start, s.Count)
		}
		lvRef := func(key string) (*LV, error) {
			name, ok := sn.str(key)
			if !ok {
				return nil, bad("segment %s: no %s", sn.key, key)
			}
			l := lvs[name]
			if l == nil {
				return nil, bad("segment %s: %s %q is no LV", sn.key, key, name)
			}
			return l, nil
		}
		var err error
		switch s.Type {
		case "striped":
			err = parseStripes(s, sn, vg, pvs, lvs, bad)
		case "thin-pool":
			if s.Metadata, err = lvRef("metadata"); err == nil {
				s.Data, err = lvRef("pool")
			}
			if err == nil {
				err = chunkSize(s, sn, bad)
			}
		case "thin":
			if s.Pool, err = lvRef("thin_pool"); err == nil {
				var ok bool
				if s.DeviceID, ok = sn.int("device_id"); !ok || s.DeviceID < 0 || s.DeviceID >= 1<<24 {
					err = bad("segment %s: device_id %d", sn.key, s.DeviceID)
				}
			}
			if _, ok := sn.str("origin"); ok && err == nil {
				s.Origin, err = lvRef("origin")
			}
			if _, ok := sn.str("external_origin"); ok && err == nil {
				s.External, err = lvRef("external_origin")
			}
		case "snapshot":
			if s.Origin, err = lvRef("origin"); err == nil {
				if _, ok := sn.str("merging_store"); ok {
					s.Merging = true
					s.COW, err = lvRef("merging_store")
				} else {
					s.COW, err = lvRef("cow_store")
				}
			}
			if err == nil {
				err = chunkSize(s, sn, bad)
			}
		}
		if err != nil {
			return err
		}
		lv.Segments = append(lv.Segments, s)
	}
	slices.SortFunc(lv.Segments, func(a, b *Segment) int { return cmp.Compare(a.Start, b.Start) })
	for _, s := range lv.Segments {
		if s.Start != lv.Extents {
			return bad("segment at extent %d, want %d", s.Start, lv.Extents)
		}
		if lv.Extents += s.Count; lv.Extents > maxBytes/vg.ExtentSize {
			return bad("%d extents", lv.Extents)
		}
	}
	return nil
}

// parseStripes reads stripe_count, stripe_size and stripes = ["pv0", 0,
// "pv1", 0]: each stripe is Count/stripe_count extents of a PV or LV.
func parseStripes(s *Segment, sn *node, vg *VG, pvs map[string]*PV, lvs map[string]*LV, bad func(string, ...any) error) error {
	n, ok := sn.int("stripe_count")
	if !ok || n < 1 || n > maxStripes || s.Count%n != 0 {
		return bad("segment %s: %d stripes over %d extents", sn.key, n, s.Count)
	}
	if n > 1 {
		ss, ok := sn.int("stripe_size")
		if !ok || ss <= 0 || ss > 1<<32 {
			return bad("segment %s: stripe size %d", sn.key, ss)
		}
		s.StripeSize = ss * sectorSize
	}
	arr := sn.get("stripes")
	if arr == nil || arr.val.kind != kindArray || len(arr.val.arr) != int(2*n) {
		return bad("segment %s: stripes array does not list %d stripes", sn.key, n)
	}
	per := s.Count / n
	for i := 0; i < int(n); i++ {
		name, ext := arr.val.arr[2*i], arr.val.arr[2*i+1]
		if name.kind != kindString || ext.kind != kindInt || ext.i < 0 {
			return bad("segment %s: stripe %d", sn.key, i)
		}
		a := Stripe{PV: pvs[name.s], Extent: ext.i}
		limit := int64(0)
		switch {
		case a.PV != nil:
			limit = a.PV.PECount
		case lvs[name.s] != nil:
			a.LV = lvs[name.s]
			limit = maxBytes / vg.ExtentSize // checked against its size once all are read
		default:
			return bad("segment %s: stripe %d on %q, no PV or LV of the VG", sn.key, i, name.s)
		}
		if a.Extent > limit-per {
			return bad("segment %s: stripe %d at extents %d+%d of %s with %d", sn.key, i, a.Extent, per, name.s, limit)
		}
		s.Stripes = append(s.Stripes, a)
	}
	return nil
}

func chunkSize(s *Segment, sn *node, bad func(string, ...any) error) error {
	c, ok := sn.int("chunk_size")
	if !ok || c <= 0 || c > 1<<24 {
		return bad("segment %s: chunk size %d sectors", sn.key, c)
	}
	s.ChunkSize = c * sectorSize
	return nil
}

// validName reports whether s is a name LVM accepts for a VG or LV
// (lib/misc/lvm-string.c): up to 127 characters of [a-zA-Z0-9+_.-], not
// starting with '-', not "." or "..". So names never hold a '/'.
func validName(s string) bool {
	if s == "" || len(s) > 127 || s[0] == '-' || s == "." || s == ".." {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '+' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

// DMName is the device-mapper name of an LV, as /dev/mapper shows it:
// VG and LV joined by '-', with every '-' inside either doubled.
func DMName(vg, lv string) string {
	return strings.ReplaceAll(vg, "-", "--") + "-" + strings.ReplaceAll(lv, "-", "--")
}

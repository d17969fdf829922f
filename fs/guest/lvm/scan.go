package lvm

import (
	"errors"
	"fmt"
	"io"
	"strings"
)

// maxScanMetadata bounds the metadata text one Scan reads over all
// devices: a few copies of the largest text.
const maxScanMetadata = 4 * MaxMetadata

// Device is a place a PV may be: a partition or a whole disk.
type Device struct {
	Name string // for messages: "part2", "disk"
	R    io.ReaderAt
	Size int64

	Label *Label // set by Scan when the device is a PV
	VG    *VG    // set by Scan when the PV's VG was assembled
}

// Scan reads the labels of devs and the metadata of those that are PVs,
// and assembles the VGs they hold, each from the newest metadata (by
// seqno) any of its PVs carries. Damage on one device or in one VG does
// not stop the others: it comes back in problems, each error naming
// what it is about. VGs come in the order their first PV was found.
func Scan(devs []*Device) (vgs []*VG, problems []error) {
	type candidate struct {
		vg   *VG
		from *Device
	}
	var order []string
	newest := map[string]candidate{}
	budget := int64(maxScanMetadata)
	for _, d := range devs {
		l, err := ReadLabel(d.R, d.Size)
		if err != nil {
			problems = append(problems, fmt.Errorf("%s: %w", d.Name, err))
			continue
		}
		if l == nil {
			continue
		}
		d.Label = l
		for _, a := range l.Meta {
			if budget <= 0 {
				problems = append(problems, fmt.Errorf("%s: metadata not read: more than %d bytes of it on the disk: %w",
					d.Name, maxScanMetadata, ErrCorrupt))
				break
			}
			text, err := readMetadata(d.R, d.Size, a)
			budget -= int64(len(text))
			if errors.Is(err, errNoMetadata) {
				continue
			}
			var vg *VG
			if err == nil {
				vg, err = ParseMetadata(text)
			}
			if err != nil {
				problems = append(problems, fmt.Errorf("%s: %w", d.Name, err))
				continue
			}
			c, seen := newest[vg.UUID]
			if !seen {
				order = append(order, vg.UUID)
			}
			if !seen || vg.Seqno > c.vg.Seqno {
				newest[vg.UUID] = candidate{vg, d}
			}
		}
	}
	for _, id := range order {
		vg := newest[id].vg
		vg.bind(devs)
		vgs = append(vgs, vg)
	}
	return vgs, problems
}

// ParseMetadata parses one metadata text (as an LVM metadata area or a
// vgcfgbackup file holds it) into a VG with nothing bound: every LV
// reports its PVs missing until the VG is assembled by Scan.
func ParseMetadata(text []byte) (*VG, error) {
	root, err := parseConfig(text)
	if err != nil {
		return nil, err
	}
	vg, err := parseVG(root)
	if err != nil {
		return nil, err
	}
	vg.bind(nil)
	return vg, nil
}

// bind finds each PV of the VG among devs by UUID, then decides for
// each LV whether it can be read and how its bytes map onto devices.
func (vg *VG) bind(devs []*Device) {
	for _, pv := range vg.PVs {
		pv.Dev = nil
		for _, d := range devs {
			if d.Label != nil && d.Label.UUID == pv.UUID {
				pv.Dev, d.VG = d, vg
				break
			}
		}
	}
	for _, lv := range vg.LVs {
		lv.err, lv.m, lv.use, lv.size, lv.thin, lv.height = nil, nil, nil, 0, nil, 0
	}
	for _, lv := range vg.LVs {
		for _, s := range lv.Segments {
			switch s.Type {
			case "thin-pool":
				s.Metadata.use = append(s.Metadata.use, &Role{lv, "thin pool metadata", s})
				s.Data.use = append(s.Data.use, &Role{lv, "thin pool data", s})
			case "thin":
				s.Pool.use = append(s.Pool.use, &Role{lv, "thin pool", s})
			case "snapshot":
				s.COW.use = append(s.COW.use, &Role{lv, "snapshot store", s})
				s.Origin.use = append(s.Origin.use, &Role{lv, "snapshot origin", s})
			}
		}
	}
	state := map[*LV]int{} // 1: being resolved, 2: done
	for _, lv := range vg.LVs {
		vg.resolve(lv, state, 0)
	}
}

// resolve sets lv.m or lv.err, resolving the LVs it is built on first.
func (vg *VG) resolve(lv *LV, state map[*LV]int, depth int) error {
	switch state[lv] {
	case 2:
		return lv.err
	case 1:
		return fmt.Errorf("LV %s/%s is built on itself: %w", vg.Name, lv.Name, ErrCorrupt)
	}
	if depth > maxLVDepth {
		return fmt.Errorf("LVs stacked more than %d deep: %w", maxLVDepth, ErrCorrupt)
	}
	state[lv] = 1
	defer func() { state[lv] = 2 }()
	height := 0 // of the LVs it is built on
	m, err := vg.mapperOf(lv, func(l *LV) error {
		if err := vg.resolve(l, state, depth+1); err != nil {
			return fmt.Errorf("%s: %w", l.Name, err)
		}
		height = max(height, l.height)
		return nil
	})
	if err == nil && height >= maxLVDepth {
		err = fmt.Errorf("LVs stacked more than %d deep: %w", maxLVDepth, ErrCorrupt)
	}
	if err != nil {
		lv.err = fmt.Errorf("LV %s/%s: %w", vg.Name, lv.Name, err)
		return lv.err
	}
	lv.m, lv.height = m, height+1
	return nil
}

// mapperOf chooses how lv is read; need resolves an LV it is built on.
func (vg *VG) mapperOf(lv *LV, need func(*LV) error) (mapper, error) {
	if len(lv.Segments) == 0 {
		return nil, fmt.Errorf("no segments: %w", ErrCorrupt)
	}
	for _, r := range lv.use {
		switch {
		case r.What == "snapshot store":
			return newSnapshotMap(vg, lv, r.seg, need)
		case r.What == "snapshot origin" && r.seg.Merging:
			return nil, fmt.Errorf("a snapshot is being merged into it: %w", ErrUnsupported)
		}
	}
	var types []string
	for _, s := range lv.Segments {
		if s.Type != "striped" {
			types = append(types, s.Type)
		}
	}
	switch {
	case len(types) == 0:
		return newStripedMap(vg, lv, need)
	case len(types) > 1 || len(lv.Segments) > 1:
		return nil, fmt.Errorf("segments of types %s: %w", strings.Join(types, ", "), ErrUnsupported)
	}
	s := lv.Segments[0]
	switch s.Type {
	case "thin":
		return newThinMap(vg, lv, s, need)
	case "thin-pool":
		var thins []string
		for _, r := range lv.use {
			thins = append(thins, r.Of.Name)
		}
		return nil, fmt.Errorf("a thin pool holds its thin volumes (%s), no filesystem of its own: %w",
			strings.Join(thins, ", "), ErrUnsupported)
	case "snapshot":
		return nil, fmt.Errorf("the snapshot of %s is read as %s: %w", s.Origin.Name, s.COW.Name, ErrUnsupported)
	}
	return nil, fmt.Errorf("%s: %w", s.Type, ErrUnsupported)
}

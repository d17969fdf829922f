package lvm

import (
	"errors"
	"fmt"
	"io"
	"sort"
)

// mapper maps an LV's bytes onto devices.
type mapper interface {
	// locate maps byte off of the LV (0 <= off < size): n > 0 bytes
	// from there lie at devOff of dev, or read as zeros when dev is nil.
	locate(off int64) (dev *Device, devOff, n int64, err error)
}

// Locate says where byte off of the LV lies: the n bytes from off are at
// devOff of dev, or read as zeros when dev is nil (unprovisioned blocks
// of a thin volume).
func (lv *LV) Locate(off int64) (dev *Device, devOff, n int64, err error) {
	if lv.err != nil {
		return nil, 0, 0, lv.err
	}
	if off < 0 || off >= lv.Size() {
		return nil, 0, 0, io.EOF
	}
	return lv.m.locate(off)
}

// ReadAt reads the LV's bytes; it is safe for concurrent use. An LV that
// cannot be read returns Err at every read.
func (lv *LV) ReadAt(p []byte, off int64) (int, error) {
	if lv.err != nil {
		return 0, lv.err
	}
	size := lv.Size()
	if off < 0 {
		return 0, errors.New("lvm: negative offset")
	}
	if off >= size {
		return 0, io.EOF
	}
	want := p[:min(int64(len(p)), size-off)]
	if err := readVia(lv.m, size, want, off); err != nil {
		return 0, fmt.Errorf("LV %s/%s: %w", lv.VG.Name, lv.Name, err)
	}
	if len(want) < len(p) {
		return len(want), io.EOF
	}
	return len(p), nil
}

// readVia fills p from byte off of what m maps, which is size bytes.
func readVia(m mapper, size int64, p []byte, off int64) error {
	if off < 0 || off > size || int64(len(p)) > size-off {
		return fmt.Errorf("read of %d bytes at %d of %d: %w", len(p), off, size, ErrCorrupt)
	}
	for done := 0; done < len(p); {
		dev, devOff, n, err := m.locate(off + int64(done))
		if err != nil {
			return err
		}
		if n <= 0 {
			return fmt.Errorf("empty run at %d: %w", off+int64(done), ErrCorrupt)
		}
		k := int(min(n, int64(len(p)-done)))
		if dev == nil {
			clear(p[done : done+k])
		} else if err := readFull(dev.R, p[done:done+k], devOff); err != nil {
			return fmt.Errorf("%s: %w", dev.Name, err)
		}
		done += k
	}
	return nil
}

// stripedMap reads linear and striped segments: each stripe is a run of
// a PV's (or another LV's) extents; with more than one, the segment's
// bytes go round-robin over them in stripe-size chunks, as dm-stripe
// lays them out.
type stripedMap struct {
	vg    *VG
	segs  []*Segment
	start []int64 // byte offset of each segment in the LV
}

func newStripedMap(vg *VG, lv *LV, need func(*LV) error) (mapper, error) {
	m := &stripedMap{vg: vg, segs: lv.Segments}
	es := vg.ExtentSize
	for _, s := range lv.Segments {
		m.start = append(m.start, s.Start*es)
		per := s.Count / int64(len(s.Stripes)) * es // bytes of each stripe
		if len(s.Stripes) > 1 && per%s.StripeSize != 0 {
			return nil, fmt.Errorf("stripes of %d bytes are no multiple of the stripe size %d: %w", per, s.StripeSize, ErrCorrupt)
		}
		for _, st := range s.Stripes {
			if err := checkStripe(vg, st, per, need); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

// checkStripe makes sure a stripe of per bytes can be read.
func checkStripe(vg *VG, st Stripe, per int64, need func(*LV) error) error {
	es := vg.ExtentSize
	if st.LV != nil {
		if err := need(st.LV); err != nil {
			return err
		}
		if st.Extent > st.LV.Extents || per > (st.LV.Extents-st.Extent)*es {
			return fmt.Errorf("extents %d+%d of LV %s with %d: %w", st.Extent, per/es, st.LV.Name, st.LV.Extents, ErrCorrupt)
		}
		return nil
	}
	pv := st.PV
	if pv.Dev == nil {
		was := ""
		if pv.Hint != "" {
			was = ", last seen as " + pv.Hint
		}
		return fmt.Errorf("needs PV %s (UUID %s%s), which is not on this disk: %w", pv.Key, pv.UUID, was, ErrMissingPV)
	}
	if end := pv.PEStart + st.Extent*es + per; end > pv.Dev.Size {
		return fmt.Errorf("extents %d+%d of PV %s end at byte %d, past the end of %s (%d bytes): %w",
			st.Extent, per/es, pv.Key, end, pv.Dev.Name, pv.Dev.Size, ErrCorrupt)
	}
	return nil
}

func (m *stripedMap) locate(off int64) (*Device, int64, int64, error) {
	i := sort.Search(len(m.start), func(i int) bool { return m.start[i] > off }) - 1
	s := m.segs[i]
	es := m.vg.ExtentSize
	o := off - m.start[i]
	var st Stripe
	var at, n int64 // at: byte in the stripe; n: bytes left in this run
	if len(s.Stripes) == 1 {
		st, at, n = s.Stripes[0], o, s.Count*es-o
	} else {
		ss := s.StripeSize
		chunk, within := o/ss, o%ss
		k := chunk % int64(len(s.Stripes))
		st, at, n = s.Stripes[k], chunk/int64(len(s.Stripes))*ss+within, ss-within
	}
	base := st.Extent*es + at
	if st.PV != nil {
		return st.PV.Dev, st.PV.PEStart + base, n, nil
	}
	dev, devOff, n2, err := st.LV.m.locate(base)
	return dev, devOff, min(n, n2), err
}

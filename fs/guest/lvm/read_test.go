package lvm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand"
	"strings"
	"testing"

	"github.com/cairn-backup/cairn/fs/guest/lvm/lvmtest"
)

// tagged fills every PV's data area with sectors tagged (device, byte
// offset), and places each LV sector's expected tag where dm-linear and
// dm-stripe put it: stripe k of a segment holds the segment's chunks k,
// k+N, k+2N, ... back to back from its first extent.
func tagged(mds []*memDev) {
	for i, d := range mds {
		for off := int64(mib); off+512 <= int64(len(d.b)); off += 512 {
			binary.LittleEndian.PutUint64(d.b[off:], uint64(i))
			binary.LittleEndian.PutUint64(d.b[off+8:], uint64(off))
		}
	}
}

// want returns the tag of byte off of lv in vg: its device and offset.
func wantTag(vg lvmtest.VG, lvName string, off int64) (int, int64) {
	for _, lv := range vg.LVs {
		if lv.Name != lvName {
			continue
		}
		for _, s := range lv.Segments {
			start, end := s.Start*vg.ExtentSize, (s.Start+s.Count)*vg.ExtentSize
			if off < start || off >= end {
				continue
			}
			o := off - start
			st, at := s.Stripes[0], o
			if n := int64(len(s.Stripes)); n > 1 {
				chunk := o / s.StripeSize
				st, at = s.Stripes[chunk%n], chunk/n*s.StripeSize+o%s.StripeSize
			}
			pv := vg.PVs[st.PV]
			return st.PV, pv.PEStart + st.Extent*vg.ExtentSize + at
		}
	}
	panic("no such byte")
}

func TestLinearStripedMultiSegment(t *testing.T) {
	vg := twoPVs()
	mds := writeVG(t, vg)
	tagged(mds)
	got := scanOne(t, devices(mds))
	r := rand.New(rand.NewSource(1))
	for _, name := range []string{"lin", "str-ipe", "multi", "hid"} {
		lv := got.lv(t, name)
		size := lv.Size()
		// The whole LV in odd-sized reads, then random ones.
		buf := make([]byte, 3*64*kib+512)
		check := func(p []byte, off int64) {
			for i := int64(0); i < int64(len(p)); i += 512 {
				dev, at := wantTag(vg, name, off+i)
				gd, ga := binary.LittleEndian.Uint64(p[i:]), binary.LittleEndian.Uint64(p[i+8:])
				if gd != uint64(dev) || ga != uint64(at) {
					t.Fatalf("%s at %d: sector of pv%d at %d, want pv%d at %d", name, off+i, gd, ga, dev, at)
				}
			}
		}
		for off := int64(0); off < size; off += int64(len(buf)) {
			n, err := lv.ReadAt(buf, off)
			if n != int(min(int64(len(buf)), size-off)) || (err != nil && err != io.EOF) {
				t.Fatalf("%s: read at %d: %d, %v", name, off, n, err)
			}
			check(buf[:n], off)
		}
		for i := 0; i < 200; i++ {
			off := r.Int63n(size/512) * 512
			p := make([]byte, 512*(1+r.Intn(300)))
			n, _ := lv.ReadAt(p, off)
			check(p[:n], off)
		}
		if n, err := lv.ReadAt(buf, size); n != 0 || err != io.EOF {
			t.Errorf("%s: read at the end: %d, %v", name, n, err)
		}
		// Locate agrees with the reads: a run never crosses a stripe.
		dev, devOff, n, err := lv.Locate(0)
		d0, a0 := wantTag(vg, name, 0)
		if err != nil || dev.Name != devices(mds)[d0].Name || devOff != a0 || n <= 0 {
			t.Errorf("%s: Locate(0) = %v %d %d %v, want pv%d %d", name, dev, devOff, n, err, d0, a0)
		}
		if name == "str-ipe" && n != 64*kib {
			t.Errorf("striped run of %d bytes, want the stripe size", n)
		}
	}
}

// An LV spanning two PVs when only one is there: listed, unreadable, and
// saying which PV is missing; the LVs wholly on the PV that is there
// still read.
func TestMissingPV(t *testing.T) {
	vg := twoPVs()
	mds := writeVG(t, vg)
	got := scanOne(t, devices(mds[:1]))
	for name, ok := range map[string]bool{"lin": true, "str-ipe": false, "multi": false, "hid": false} {
		lv := got.lv(t, name)
		err := lv.Err()
		if ok != (err == nil) {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if ok {
			continue
		}
		if !errors.Is(err, ErrMissingPV) || !strings.Contains(err.Error(), "pv1 (UUID "+lvmtest.Dashed(vg.PVs[1].ID)) ||
			!strings.Contains(err.Error(), "/dev/vdb2") {
			t.Errorf("%s: %v", name, err)
		}
		if _, rerr := lv.ReadAt(make([]byte, 512), 0); !errors.Is(rerr, ErrMissingPV) {
			t.Errorf("%s: read: %v", name, rerr)
		}
	}
	t.Log(got.lv(t, "multi").Err())
}

// Damage in what the metadata claims is an error at scan or on the LV,
// never a read outside the PV.
func TestBadLayouts(t *testing.T) {
	for name, c := range map[string]struct {
		edit func(*lvmtest.VG)
		want string // in the scan's problem, or the LV's error
	}{
		"past the device": {func(v *lvmtest.VG) { v.PVs[0].PECount = 40; v.LVs[0].Segments[0].Stripes[0].Extent = 30 },
			"past the end of pv0"},
		"past pe_count":  {func(v *lvmtest.VG) { v.LVs[0].Segments[0].Stripes[0].Extent = 14 }, "stripe 0 at extents 14+3"},
		"segment gap":    {func(v *lvmtest.VG) { v.LVs[2].Segments[1].Start = 3 }, "segment at extent 3, want 2"},
		"uneven stripes": {func(v *lvmtest.VG) { v.LVs[1].Segments[0].Count = 3 }, "2 stripes over 3 extents"},
		"no such pv": {func(v *lvmtest.VG) { v.LVs[0].Segments[0].Stripes[0].PV = 5 },
			`stripe 0 on "pv5", no PV or LV of the VG`},
		"stripe not a multiple": {func(v *lvmtest.VG) { v.LVs[1].Segments[0].StripeSize = 3 * 64 * kib },
			"no multiple of the stripe size"},
		"self stacked": {func(v *lvmtest.VG) { v.LVs[0].Segments[0].Stripes[0] = lvmtest.Stripe{LV: "lin"} },
			"built on itself"},
	} {
		t.Run(name, func(t *testing.T) {
			vg := twoPVs()
			c.edit(&vg)
			mds := writeVG(t, vg)
			vgs, problems := Scan(devices(mds))
			var msgs []string
			for _, p := range problems {
				if !errors.Is(p, ErrCorrupt) {
					t.Errorf("problem %v does not wrap ErrCorrupt", p)
				}
				msgs = append(msgs, p.Error())
			}
			for _, v := range vgs {
				for _, lv := range v.LVs {
					if err := lv.Err(); err != nil {
						if !errors.Is(err, ErrCorrupt) {
							t.Errorf("LV error %v does not wrap ErrCorrupt", err)
						}
						msgs = append(msgs, err.Error())
					}
				}
			}
			if all := strings.Join(msgs, "\n"); !strings.Contains(all, c.want) {
				t.Errorf("want %q in:\n%s", c.want, all)
			}
		})
	}
}

// LVs stacked on LVs (as a thin pool's data is) read through both maps.
func TestStackedLV(t *testing.T) {
	vg := twoPVs()
	vg.LVs = append(vg.LVs, lvmtest.LV{Name: "upper", Segments: []lvmtest.Segment{
		{Count: 2, StripeSize: 64 * kib, Stripes: []lvmtest.Stripe{{LV: "str-ipe", Extent: 1}, {LV: "multi", Extent: 1}}}}})
	mds := writeVG(t, vg)
	tagged(mds)
	got := scanOne(t, devices(mds))
	upper, stripe, multi := got.lv(t, "upper"), got.lv(t, "str-ipe"), got.lv(t, "multi")
	if upper.Err() != nil {
		t.Fatal(upper.Err())
	}
	a, b := make([]byte, 2*mib), make([]byte, 64*kib)
	if _, err := upper.ReadAt(a, 0); err != nil {
		t.Fatal(err)
	}
	for chunk := int64(0); chunk < 2*mib/(64*kib); chunk++ {
		under, at := stripe, mib+chunk/2*64*kib
		if chunk%2 == 1 {
			under = multi
		}
		under.ReadAt(b, at)
		if !bytes.Equal(a[chunk*64*kib:][:64*kib], b) {
			t.Fatalf("chunk %d differs from %s at %d", chunk, under.Name, at)
		}
	}
}

func TestDMName(t *testing.T) {
	for in, want := range map[[2]string]string{{"vg0", "root"}: "vg0-root", {"my-vg", "str-ipe"}: "my--vg-str--ipe",
		{"a--b", "-"}: "a----b---"} {
		if got := DMName(in[0], in[1]); got != want {
			t.Errorf("DMName(%q, %q) = %q, want %q", in[0], in[1], got, want)
		}
	}
}

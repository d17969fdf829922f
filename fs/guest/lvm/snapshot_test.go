package lvm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/cairn-backup/cairn/fs/guest/lvm/lvmtest"
)

// snapVG adds to twoPVs an old-style snapshot "snap" of "lin": its
// store (2 MiB on pv1) is the visible LV, tied to its origin by the
// hidden "snapshot0", as lvcreate -s writes them.
func snapVG() lvmtest.VG {
	vg := twoPVs()
	vg.LVs = append(vg.LVs,
		lvmtest.LV{Name: "snap", Segments: []lvmtest.Segment{{Count: 2, Stripes: []lvmtest.Stripe{{PV: 1, Extent: 12}}}}},
		lvmtest.LV{Name: "snapshot0", Hidden: true, Segments: []lvmtest.Segment{{Count: 3, Type: "snapshot", Lines: []string{
			"chunk_size = 8", `origin = "lin"`, `cow_store = "snap"`}}}})
	return vg
}

// cowStore writes a persistent exception store as dm-snap-persistent.c
// does: header chunk, then areas of one chunk of (old, new) pairs
// followed by their data chunks. ex maps origin chunk to its content.
func cowStore(chunk int64, size int64, order []int64, content func(int64) []byte) []byte {
	le := binary.LittleEndian
	b := make([]byte, size)
	le.PutUint32(b, snapMagic)
	le.PutUint32(b[4:], 1)
	le.PutUint32(b[8:], 1)
	le.PutUint32(b[12:], uint32(chunk/512))
	per := chunk / 16
	next := int64(2) // chunk 1 is the first area
	for i, old := range order {
		area := int64(i) / per
		if int64(i)%per == 0 && i > 0 {
			next++ // skip the next area's chunk
		}
		at := (1+area*(per+1))*chunk + int64(i)%per*16
		le.PutUint64(b[at:], uint64(old))
		le.PutUint64(b[at+8:], uint64(next))
		copy(b[next*chunk:], content(old))
		next++
	}
	return b
}

// putStore writes the snapshot store where snapVG puts it: 2 MiB from
// extent 12 of pv1.
func putStore(mds []*memDev, b []byte) { copy(mds[1].b[mib+12*mib:], b) }

func TestSnapshot(t *testing.T) {
	const chunk = 4 * kib
	vgText := snapVG()
	checkWithVgcfgrestore(t, vgText)
	mds := writeVG(t, vgText)
	tagged(mds)
	vg := scanOne(t, devices(mds))
	lin := vg.lv(t, "lin")
	origin := make([]byte, lin.Size())
	lin.ReadAt(origin, 0)
	changed := func(c int64) []byte { return bytes.Repeat([]byte{byte(c), 0xEE}, chunk/2) }
	// 300 changed chunks: more than one area holds (256 at 4 KiB).
	var order []int64
	for c := int64(0); c < 300; c++ {
		order = append(order, (c*7)%(lin.Size()/chunk))
	}
	putStore(mds, cowStore(chunk, 2*mib, order, changed))
	vg = scanOne(t, devices(mds))
	snap := vg.lv(t, "snap")
	if snap.Err() != nil || snap.Size() != lin.Size() || snap.Kind() != "snapshot of lin" {
		t.Fatalf("snap: %v, %d bytes, %q", snap.Err(), snap.Size(), snap.Kind())
	}
	want := append([]byte(nil), origin...)
	for _, c := range order {
		copy(want[c*chunk:], changed(c))
	}
	got := make([]byte, snap.Size())
	if n, err := snap.ReadAt(got, 0); n != len(got) || err != nil {
		t.Fatalf("read: %d, %v", n, err)
	}
	for c := int64(0); c < snap.Size()/chunk; c++ {
		if !bytes.Equal(got[c*chunk:][:chunk], want[c*chunk:][:chunk]) {
			t.Fatalf("chunk %d differs", c)
		}
	}
	// The origin reads as itself, and a never-used store as the origin.
	if b := make([]byte, lin.Size()); func() bool { vg.lv(t, "lin").ReadAt(b, 0); return !bytes.Equal(b, origin) }() {
		t.Error("origin changed")
	}
	putStore(mds, make([]byte, 2*mib))
	vg = scanOne(t, devices(mds))
	vg.lv(t, "snap").ReadAt(got, 0)
	if !bytes.Equal(got, origin) {
		t.Error("an unused snapshot does not read as its origin")
	}
	// An invalidated snapshot and a store pointing past its end.
	for name, edit := range map[string]func([]byte){
		"invalid": func(b []byte) { b[4] = 0 },
		"past":    func(b []byte) { binary.LittleEndian.PutUint64(b[chunk+8:], 1<<40) },
	} {
		store := cowStore(chunk, 2*mib, order, changed)
		edit(store)
		putStore(mds, store)
		vg := scanOne(t, devices(mds))
		if _, err := vg.lv(t, "snap").ReadAt(got, 0); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s store: %v", name, err)
		} else {
			t.Log(err)
		}
	}
	// A snapshot being merged is not read, nor is its origin.
	merging := snapVG()
	merging.LVs[len(merging.LVs)-1].Segments[0].Lines[2] = `merging_store = "snap"`
	vg = scanOne(t, devices(writeVG(t, merging)))
	for _, name := range []string{"snap", "lin"} {
		if err := vg.lv(t, name).Err(); !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "merg") {
			t.Errorf("%s while merging: %v", name, err)
		}
	}
}

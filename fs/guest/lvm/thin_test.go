package lvm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/cairn-backup/cairn/fs/guest/lvm/lvmtest"
)

// thinVG is a VG of two 16 MiB PVs holding a thin pool: its metadata LV
// (2 MiB on pv0), its data LV (8 MiB striped over both PVs, 128 chunks
// of 64 KiB), and thin LVs thin1 (device 1) and snap1 (device 2, a thin
// snapshot of thin1), 16 MiB each.
func thinVG() lvmtest.VG {
	vg := twoPVs()
	vg.LVs = []lvmtest.LV{
		{Name: "pool", Segments: []lvmtest.Segment{{Count: 8, Type: "thin-pool", Lines: []string{
			`metadata = "pool_tmeta"`, `pool = "pool_tdata"`, "transaction_id = 2", "chunk_size = 128",
			`discards = "passdown"`, "zero_new_blocks = 1"}}}},
		{Name: "thin1", Segments: []lvmtest.Segment{{Count: 16, Type: "thin", Lines: []string{
			`thin_pool = "pool"`, "transaction_id = 0", "device_id = 1"}}}},
		{Name: "snap1", Segments: []lvmtest.Segment{{Count: 16, Type: "thin", Lines: []string{
			`thin_pool = "pool"`, "transaction_id = 1", "device_id = 2", `origin = "thin1"`}}}},
		{Name: "lvol0_pmspare", Hidden: true, Segments: []lvmtest.Segment{{Count: 2, Stripes: []lvmtest.Stripe{{PV: 1, Extent: 10}}}}},
		{Name: "pool_tmeta", Hidden: true, Segments: []lvmtest.Segment{{Count: 2, Stripes: []lvmtest.Stripe{{PV: 0, Extent: 0}}}}},
		{Name: "pool_tdata", Hidden: true, Segments: []lvmtest.Segment{{Count: 8, StripeSize: 64 * kib,
			Stripes: []lvmtest.Stripe{{PV: 0, Extent: 4}, {PV: 1, Extent: 2}}}}},
	}
	return vg
}

// thinDevice is the mapping of one thin device: virtual chunk to data
// chunk.
type thinDevice map[int64]int64

// thinMetadata makes pool metadata with thin_restore from the XML that
// thin_dump prints, and checks it with thin_check.
func thinMetadata(t *testing.T, size int64, nrData int64, devs map[int]thinDevice) []byte {
	t.Helper()
	needTool(t, "thin_restore", "thin_check", "thin_dump")
	var x strings.Builder
	fmt.Fprintf(&x, `<superblock uuid="" time="1" transaction="2" data_block_size="128" nr_data_blocks="%d">`+"\n", nrData)
	for id := 1; id <= len(devs); id++ {
		fmt.Fprintf(&x, `<device dev_id="%d" mapped_blocks="%d" transaction="0" creation_time="0" snap_time="1">`+"\n", id, len(devs[id]))
		for v, d := range devs[id] {
			fmt.Fprintf(&x, `<single_mapping origin_block="%d" data_block="%d" time="%d"/>`+"\n", v, d, id-1)
		}
		x.WriteString("</device>\n")
	}
	x.WriteString("</superblock>\n")
	dir := t.TempDir()
	xml := writeFile(t, dir, "pool.xml", []byte(x.String()))
	meta := writeFile(t, dir, "tmeta", make([]byte, size))
	run(t, "thin_restore", "-i", xml, "-o", meta)
	run(t, "thin_check", meta)
	dump := run(t, "thin_dump", meta)
	if n := strings.Count(dump, "<device "); n != len(devs) {
		t.Fatalf("thin_dump shows %d devices:\n%s", n, dump)
	}
	b, err := os.ReadFile(meta)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// place writes b at byte off of LV name, by the reader's own map (the
// map itself is checked by TestLinearStripedMultiSegment).
func place(t *testing.T, vg *VG, mds []*memDev, name string, b []byte, off int64) {
	t.Helper()
	lv := vg.lv(t, name)
	for done := int64(0); done < int64(len(b)); {
		dev, devOff, n, err := lv.Locate(off + done)
		if err != nil || dev == nil {
			t.Fatalf("%s at %d: %v", name, off+done, err)
		}
		n = min(n, int64(len(b))-done)
		copy(dev.R.(*memDev).b[devOff:], b[done:done+n])
		done += n
	}
}

func TestThin(t *testing.T) {
	const chunk = 64 * kib
	// A real ext4 as thin1's first 4 MiB: its non-zero chunks on data
	// chunks in reverse order; snap1 shares them but for two it rewrote.
	needTool(t, "mkfs.ext4")
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "tree", "etc"), 0o755)
	os.WriteFile(filepath.Join(dir, "tree", "etc", "hostname"), []byte("thin\n"), 0o644)
	img := filepath.Join(dir, "ext4.img")
	run(t, "mkfs.ext4", "-q", "-F", "-d", filepath.Join(dir, "tree"), img, "4M")
	fsys, _ := os.ReadFile(img)
	thin1, snap1 := thinDevice{}, thinDevice{}
	next := int64(127)
	for v := int64(0); v < int64(len(fsys))/chunk; v++ {
		if !allZero(fsys[v*chunk:][:chunk]) {
			thin1[v], snap1[v] = next, next
			next--
		}
	}
	snap1[0], snap1[200] = 3, 4 // own chunks, one past the origin's data
	thin1[250] = 5
	meta := thinMetadata(t, 2*mib, 128, map[int]thinDevice{1: thin1, 2: snap1})

	vgText := thinVG()
	checkWithVgcfgrestore(t, vgText)
	mds := writeVG(t, vgText)
	vg := scanOne(t, devices(mds))
	place(t, vg, mds, "pool_tmeta", meta, 0)
	data := func(d int64) []byte {
		return bytes.Repeat([]byte(fmt.Sprintf("data chunk %6d\n", d)), chunk/18+1)[:chunk]
	}
	for v, d := range thin1 {
		if v*chunk < int64(len(fsys)) {
			place(t, vg, mds, "pool_tdata", fsys[v*chunk:][:chunk], d*chunk)
		} else {
			place(t, vg, mds, "pool_tdata", data(d), d*chunk)
		}
	}
	for _, d := range []int64{3, 4} {
		place(t, vg, mds, "pool_tdata", data(d), d*chunk)
	}

	for _, name := range []string{"thin1", "snap1"} {
		lv := vg.lv(t, name)
		if lv.Err() != nil || lv.Size() != 16*mib {
			t.Fatalf("%s: %v, %d bytes", name, lv.Err(), lv.Size())
		}
		got := make([]byte, lv.Size())
		if n, err := lv.ReadAt(got, 0); n != len(got) || err != nil {
			t.Fatalf("%s: read %d, %v", name, n, err)
		}
		want := make([]byte, lv.Size())
		copy(want, fsys)
		if name == "thin1" {
			copy(want[250*chunk:], data(5))
		} else {
			copy(want[0:], data(3))
			copy(want[200*chunk:], data(4))
		}
		if !bytes.Equal(got, want) {
			for c := int64(0); c < lv.Size()/chunk; c++ {
				if !bytes.Equal(got[c*chunk:][:chunk], want[c*chunk:][:chunk]) {
					t.Errorf("%s: chunk %d differs", name, c)
				}
			}
		}
		// An unmapped chunk is a hole: no device.
		if dev, _, n, err := lv.Locate(100*chunk + 5); dev != nil || n != chunk-5 || err != nil {
			t.Errorf("%s: unmapped chunk: %v %d %v", name, dev, n, err)
		}
	}
	if k := vg.lv(t, "snap1").Kind(); k != "thin snapshot of thin1" {
		t.Errorf("snap1 kind %q", k)
	}
	pool := vg.lv(t, "pool")
	if err := pool.Err(); !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "thin1, snap1") {
		t.Errorf("pool: %v", err)
	}

	// Damage: a B-tree node's checksum, then the superblock.
	for name, at := range map[string]int64{"node": 4096*int64(nodeOf(t, meta)) + 100, "superblock": 200} {
		bad := append([]byte(nil), meta...)
		bad[at] ^= 0x40
		place(t, vg, mds, "pool_tmeta", bad, 0)
		vg := scanOne(t, devices(mds))
		_, err := vg.lv(t, "thin1").ReadAt(make([]byte, 4096), 0)
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "checksum") {
			t.Errorf("damaged %s: %v", name, err)
		}
		t.Log(err)
	}
	place(t, vg, mds, "pool_tmeta", make([]byte, len(meta)), 0)
	vg = scanOne(t, devices(mds))
	if _, err := vg.lv(t, "thin1").ReadAt(make([]byte, 4096), 0); !errors.Is(err, ErrCorrupt) ||
		!strings.Contains(err.Error(), "never written") {
		t.Errorf("zeroed metadata: %v", err)
	}
}

// nodeOf returns the metadata block of the mapping tree's root.
func nodeOf(t *testing.T, meta []byte) uint64 {
	root := binary.LittleEndian.Uint64(meta[320:])
	if root == 0 || root*4096 >= uint64(len(meta)) {
		t.Fatalf("mapping root %d", root)
	}
	return root
}

// checkWithVgcfgrestore has LVM2 import the VG text: it knows what a
// thin pool, a thin LV and a snapshot must say.
func checkWithVgcfgrestore(t *testing.T, vg lvmtest.VG) {
	t.Helper()
	needTool(t, "vgcfgrestore")
	p := writeFile(t, t.TempDir(), vg.Name+".vg", vg.Text())
	out, _ := lvmTool(t, "vgcfgrestore", "--list", "--file", p, vg.Name)
	if !regexp.MustCompile(`VG name:\s+`+vg.Name).MatchString(out) || strings.Contains(out, "Unable") ||
		strings.Contains(out, "Couldn't") {
		t.Fatalf("vgcfgrestore --list does not accept the text:\n%s\n%s", out, vg.Text())
	}
}

package lvm

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/cairn-backup/cairn/fs/guest/lvm/lvmtest"
)

// TestWriterMatchesLVMTools checks the test writer against LVM2 itself:
// pvck reads the label, PV header and metadata area of each PV file and
// finds every checksum right and the text where it was written, and
// vgcfgrestore --list imports the text as a whole VG (it checks each
// segment against its PVs and LVs). The reader then reads the same
// files; so reader and writer cannot share a misreading of the format.
func TestWriterMatchesLVMTools(t *testing.T) {
	needTool(t, "pvck", "vgcfgrestore")
	dir := t.TempDir()
	vg := twoPVs()
	mds := writeVG(t, vg)
	for i, d := range mds {
		p := writeFile(t, dir, fmt.Sprintf("pv%d.img", i), d.b)
		out, err := lvmTool(t, "pvck", "--dump", "headers", p)
		if err != nil || strings.Contains(out, "CHECK") || strings.Contains(out, "invalid") {
			t.Fatalf("pvck --dump headers %s: %v\n%s", p, err, out)
		}
		for _, want := range []string{
			"label_header.sector 1",
			"pv_header.pv_uuid " + vg.PVs[i].ID,
			fmt.Sprintf("pv_header.device_size %d", vg.PVs[i].DevSize),
			"pv_header.disk_locn[0].offset 1048576",
			"pv_header.disk_locn[2].offset 4096",
			"mda_header_1.start 4096",
			"mda_header_1.raw_locn[0].offset 512",
			fmt.Sprintf("vgname my-vg seqno %d", vg.Seqno),
		} {
			if !strings.Contains(out, want) {
				t.Errorf("pvck --dump headers pv%d: no %q in\n%s", i, want, out)
			}
		}
		out, err = lvmTool(t, "pvck", "--dump", "metadata", p)
		if err != nil || !strings.Contains(out, string(vg.Text())) {
			t.Errorf("pvck --dump metadata pv%d: %v\n%s", i, err, out)
		}
	}
	text := writeFile(t, dir, "my-vg.vg", vg.Text())
	out, _ := lvmTool(t, "vgcfgrestore", "--list", "--file", text, "my-vg")
	if !regexp.MustCompile(`VG name:\s+my-vg`).MatchString(out) || strings.Contains(out, "Unable") ||
		strings.Contains(out, "Couldn't") {
		t.Fatalf("vgcfgrestore --list does not accept the text:\n%s", out)
	}
	// And it refuses a broken one, so the check above can fail.
	broken := writeFile(t, dir, "broken.vg", bytes.Replace(vg.Text(), []byte("stripe_count = 2"), []byte("stripe_count = 3"), 1))
	if out, _ := lvmTool(t, "vgcfgrestore", "--list", "--file", broken, "my-vg"); !strings.Contains(out, "Unable") {
		t.Fatalf("vgcfgrestore --list accepts a broken text:\n%s", out)
	}

	got := scanOne(t, devices(mds))
	if got.Name != "my-vg" || got.UUID != lvmtest.Dashed(vg.ID) || got.Seqno != 7 || got.ExtentSize != mib {
		t.Errorf("VG %+v", got)
	}
	var lvs []string
	for _, lv := range got.LVs {
		lvs = append(lvs, fmt.Sprintf("%s:%s:%d:%v:%v", lv.Name, lv.Kind(), lv.Size()/mib, lv.Visible, lv.Err()))
	}
	want := "lin:linear:3:true:<nil> str-ipe:striped (2 stripes):4:true:<nil> multi:linear:5:true:<nil> hid:linear:1:false:<nil>"
	if s := strings.Join(lvs, " "); s != want {
		t.Errorf("LVs:\n%s\nwant\n%s", s, want)
	}
}

// pvckHeaders asks pvck what it thinks of a PV file's label and area.
func pvckHeaders(t *testing.T, b []byte) string {
	t.Helper()
	p := writeFile(t, t.TempDir(), "pv.img", b)
	out, _ := lvmTool(t, "pvck", "--dump", "headers", p)
	return out
}

func TestLabelPlacesAndDamage(t *testing.T) {
	text := twoPVs().Text()
	id := lvmtest.ID("x")
	build := func(l lvmtest.Label) *memDev {
		d := newMemDev(2 * mib)
		if l.UUID == "" {
			l.UUID = id
		}
		l.DevSize, l.PEStart = 2*mib, mib
		if l.MDAs == nil {
			l.MDAs = []lvmtest.MDA{{Offset: 4096, Size: mib - 4096, Text: text}}
		}
		if err := lvmtest.Write(d, l); err != nil {
			t.Fatal(err)
		}
		return d
	}
	for s := 0; s < 4; s++ {
		d := build(lvmtest.Label{Sector: s})
		l, err := ReadLabel(d, int64(len(d.b)))
		if err != nil || l == nil || l.Sector != s || l.UUID != lvmtest.Dashed(id) || l.DevSize != 2*mib ||
			fmt.Sprint(l.Data, l.Meta) != fmt.Sprintf("[{%d 0}] [{4096 %d}]", mib, mib-4096) {
			t.Errorf("label in sector %d: %+v, %v", s, l, err)
		}
	}
	if l, err := ReadLabel(newMemDev(mib), mib); l != nil || err != nil {
		t.Errorf("blank device: %+v, %v", l, err)
	}
	if l, err := ReadLabel(newMemDev(100), 100); l != nil || err != nil {
		t.Errorf("tiny device: %+v, %v", l, err)
	}
	damage := map[string]func(b []byte){
		"label crc":      func(b []byte) { b[512+100] ^= 1 },
		"wrong sector":   func(b []byte) { b[512+8] = 2 },
		"mda header crc": func(b []byte) { b[4096+30] ^= 1 },
		"mda magic":      func(b []byte) { b[4096+5] = 'X' },
		"text crc":       func(b []byte) { b[4096+512+3] ^= 1 },
	}
	for name, f := range damage {
		t.Run(name, func(t *testing.T) {
			d := build(lvmtest.Label{Sector: 1})
			f(d.b)
			vgs, problems := Scan([]*Device{d.dev("part2")})
			if len(vgs) != 0 || len(problems) != 1 || !errors.Is(problems[0], ErrCorrupt) ||
				!strings.HasPrefix(problems[0].Error(), "part2: ") {
				t.Fatalf("VGs %d, problems %v", len(vgs), problems)
			}
			t.Log(problems[0])
			// LVM agrees that it is damaged.
			if _, err := lvmTool(t, "pvck", "--version"); err == nil {
				out := pvckHeaders(t, d.b)
				if !strings.Contains(out, "CHECK") && !strings.Contains(out, "No label") &&
					!strings.Contains(out, "bad") && !strings.Contains(out, "wrong") {
					t.Errorf("pvck finds nothing wrong:\n%s", out)
				}
			}
		})
	}
}

// The metadata area is a ring: text near its end goes on right after the
// header, and LVM reads it back (pvck); so do we.
func TestMetadataWraps(t *testing.T) {
	vg := twoPVs()
	text := vg.Text()
	const size = 64 * kib
	d := newMemDev(4*mib + 64*kib)
	l := lvmtest.Label{Sector: 1, UUID: vg.PVs[0].ID, DevSize: int64(len(d.b)), PEStart: mib,
		MDAs: []lvmtest.MDA{{Offset: 4096, Size: size, TextAt: size - 1000, Text: text}}}
	if err := lvmtest.Write(d, l); err != nil {
		t.Fatal(err)
	}
	got, err := readMetadata(d, int64(len(d.b)), Area{4096, size})
	if err != nil || !bytes.Equal(got, text) {
		t.Fatalf("wrapped text: %d bytes, %v", len(got), err)
	}
	needTool(t, "pvck")
	p := writeFile(t, t.TempDir(), "pv.img", d.b)
	out, err := lvmTool(t, "pvck", "--dump", "metadata", p)
	if err != nil || !strings.Contains(out, string(text)) {
		t.Errorf("pvck does not read the wrapped text: %v\n%s", err, out)
	}
}

// Of several copies, the newest seqno wins, whichever PV holds it; an
// ignored area and an orphan PV's empty area hold none.
func TestNewestMetadataWins(t *testing.T) {
	vg := twoPVs()
	old := vg
	old.Seqno = 6
	old.LVs = old.LVs[:1]
	a, b := newMemDev(16*mib), newMemDev(16*mib)
	mda := func(text []byte, ignored bool) []lvmtest.MDA {
		return []lvmtest.MDA{{Offset: 4096, Size: mib - 4096, Text: text, Ignored: ignored, Old: [][]byte{old.Text()}}}
	}
	lvmtest.Write(a, lvmtest.Label{Sector: 1, UUID: vg.PVs[0].ID, DevSize: 16 * mib, PEStart: mib, MDAs: mda(old.Text(), false)})
	lvmtest.Write(b, lvmtest.Label{Sector: 1, UUID: vg.PVs[1].ID, DevSize: 16 * mib, PEStart: mib, MDAs: mda(vg.Text(), false)})
	got := scanOne(t, devices([]*memDev{a, b}))
	if got.Seqno != 7 || len(got.LVs) != 4 {
		t.Errorf("seqno %d, %d LVs: want the newest, 7 with 4", got.Seqno, len(got.LVs))
	}
	// The newer copy in an ignored area does not count.
	lvmtest.Write(b, lvmtest.Label{Sector: 1, UUID: vg.PVs[1].ID, DevSize: 16 * mib, PEStart: mib, MDAs: mda(vg.Text(), true)})
	got = scanOne(t, devices([]*memDev{a, b}))
	if got.Seqno != 6 || len(got.LVs) != 1 {
		t.Errorf("seqno %d, %d LVs: want 6 with 1 from the area not ignored", got.Seqno, len(got.LVs))
	}
	// A PV without metadata: a label only, found and bound, no VG of its own.
	orphan := newMemDev(16 * mib)
	lvmtest.Write(orphan, lvmtest.Label{Sector: 1, UUID: lvmtest.ID("orphan"), DevSize: 16 * mib, PEStart: mib,
		MDAs: []lvmtest.MDA{{Offset: 4096, Size: mib - 4096}}})
	devs := []*Device{orphan.dev("part1")}
	vgs, problems := Scan(devs)
	if len(vgs) != 0 || len(problems) != 0 || devs[0].Label == nil || devs[0].VG != nil {
		t.Errorf("orphan PV: %d VGs, %v, label %v", len(vgs), problems, devs[0].Label)
	}
}

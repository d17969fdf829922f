package lvm

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairn-backup/cairn/fs/guest/lvm/lvmtest"
)

// needTool skips when a fixture tool is missing, but fails under CI.
func needTool(t testing.TB, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is not installed", n)
			}
			t.Skipf("%s is not installed", n)
		}
	}
}

// lvmTool runs one of LVM's commands on files: no device scan, no
// device-mapper, no noise about inherited descriptors.
func lvmTool(t testing.TB, name string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "LVM_SUPPRESS_FD_WARNINGS=1")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// memDev is a device in memory that grows as it is written.
type memDev struct{ b []byte }

func newMemDev(size int64) *memDev { return &memDev{b: make([]byte, size)} }

func (d *memDev) WriteAt(p []byte, off int64) (int, error) {
	if end := off + int64(len(p)); end > int64(len(d.b)) {
		d.b = append(d.b, make([]byte, end-int64(len(d.b)))...)
	}
	return copy(d.b[off:], p), nil
}

func (d *memDev) ReadAt(p []byte, off int64) (int, error) {
	return bytes.NewReader(d.b).ReadAt(p, off)
}

func (d *memDev) dev(name string) *Device {
	return &Device{Name: name, R: d, Size: int64(len(d.b))}
}

const (
	mib = 1 << 20
	kib = 1 << 10
)

// twoPVs is a VG "my-vg" of two 16 MiB PVs with 1 MiB extents: a linear
// LV, a striped one (2 stripes of 64 KiB), one of two segments on both
// PVs, and a hidden one.
func twoPVs() lvmtest.VG {
	pv := func(i int) lvmtest.PV {
		return lvmtest.PV{ID: lvmtest.ID("pv" + string(rune('0'+i))), Device: "/dev/vdb" + string(rune('1'+i)),
			DevSize: 16 * mib, PEStart: mib, PECount: 15}
	}
	return lvmtest.VG{Name: "my-vg", ID: lvmtest.ID("my-vg"), Seqno: 7, ExtentSize: mib,
		PVs: []lvmtest.PV{pv(0), pv(1)},
		LVs: []lvmtest.LV{
			{Name: "lin", Segments: []lvmtest.Segment{{Count: 3, Stripes: []lvmtest.Stripe{{PV: 0, Extent: 1}}}}},
			{Name: "str-ipe", Segments: []lvmtest.Segment{{Count: 4, StripeSize: 64 * kib,
				Stripes: []lvmtest.Stripe{{PV: 0, Extent: 5}, {PV: 1, Extent: 0}}}}},
			{Name: "multi", Segments: []lvmtest.Segment{
				{Count: 2, Stripes: []lvmtest.Stripe{{PV: 1, Extent: 4}}},
				{Start: 2, Count: 3, Stripes: []lvmtest.Stripe{{PV: 0, Extent: 8}}}}},
			{Name: "hid", Hidden: true, Segments: []lvmtest.Segment{{Count: 1, Stripes: []lvmtest.Stripe{{PV: 1, Extent: 10}}}}},
		}}
}

// writeVG writes vg's PVs into memory devices named pv0, pv1, ...
func writeVG(t testing.TB, vg lvmtest.VG) []*memDev {
	t.Helper()
	var mds []*memDev
	var ws []io.WriterAt
	for _, pv := range vg.PVs {
		d := newMemDev(pv.DevSize)
		mds = append(mds, d)
		ws = append(ws, d)
	}
	if err := vg.WriteAll(ws); err != nil {
		t.Fatal(err)
	}
	return mds
}

func devices(mds []*memDev) []*Device {
	var out []*Device
	for i, d := range mds {
		out = append(out, d.dev("pv"+string(rune('0'+i))))
	}
	return out
}

// scanOne scans devs and wants exactly one VG and no problems.
func scanOne(t testing.TB, devs []*Device) *VG {
	t.Helper()
	vgs, problems := Scan(devs)
	if len(problems) > 0 || len(vgs) != 1 {
		t.Fatalf("scan: %d VGs, problems %v", len(vgs), problems)
	}
	return vgs[0]
}

func (vg *VG) lv(t testing.TB, name string) *LV {
	t.Helper()
	for _, lv := range vg.LVs {
		if lv.Name == name {
			return lv
		}
	}
	t.Fatalf("no LV %s", name)
	return nil
}

func writeFile(t testing.TB, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

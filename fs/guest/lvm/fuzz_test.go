package lvm

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/fs/guest/fuzzimg"
	"github.com/cairn-backup/cairn/fs/guest/lvm/lvmtest"
)

// Fuzz disks are in fuzzimg's run-length form, at most maxFuzzDisk
// bytes unpacked, and split in two halves: two devices that may be PVs.
const maxFuzzDisk = 4 << 20

func unpack(b []byte) []byte {
	var img []byte
	fuzzimg.Decode(b, maxFuzzDisk,
		func(n int64, fill byte) { img = append(img, bytes.Repeat([]byte{fill}, int(n))...) },
		func(p []byte) { img = append(img, p...) })
	return img
}

func fuzzDevices(img []byte) []*Device {
	half := len(img) / 2
	return []*Device{
		{Name: "a", R: bytes.NewReader(img[:half]), Size: int64(half)},
		{Name: "b", R: bytes.NewReader(img[half:]), Size: int64(len(img) - half)},
	}
}

func knownErr(err error) bool {
	for _, s := range []error{ErrCorrupt, ErrMissingPV, ErrUnsupported, io.EOF, io.ErrUnexpectedEOF} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// exercise scans devs and reads a little of every LV; it returns how
// many LVs read without error.
func exercise(t *testing.T, devs []*Device) (readable int) {
	vgs, problems := Scan(devs)
	for _, p := range problems {
		if !knownErr(p) {
			t.Fatalf("scan: unknown error %v", p)
		}
	}
	buf := make([]byte, 64<<10)
	for _, vg := range vgs {
		for _, lv := range vg.LVs {
			lv.Kind()
			lv.Roles()
			if err := lv.Err(); err != nil {
				if !knownErr(err) {
					t.Fatalf("%s: unknown error %v", lv.Name, err)
				}
				continue
			}
			size := lv.Size()
			if size <= 0 {
				t.Fatalf("%s: readable with size %d", lv.Name, size)
			}
			ok := true
			for _, off := range []int64{0, size / 2, size - int64(len(buf))/2} {
				if dev, _, n, err := lv.Locate(off); err == nil && n <= 0 {
					t.Fatalf("%s: Locate(%d) = %v, %d bytes", lv.Name, off, dev, n)
				}
				if _, err := lv.ReadAt(buf, off); err != nil && err != io.EOF {
					if !knownErr(err) {
						t.Fatalf("%s: read at %d: unknown error %v", lv.Name, off, err)
					}
					ok = false
				}
			}
			if ok {
				readable++
			}
		}
	}
	return readable
}

// FuzzScan scans fuzzed pairs of devices and reads their LVs: no panic,
// no hang, no unknown error. Run it with -fuzzminimizetime 3s (each
// input unpacks to 4 MiB: minimizing one for the default 60 s stalls
// the run). VOLUME_FUZZ_WATCHDOG=1 turns an input slower than 3 s into
// a crash.
func FuzzScan(f *testing.F) {
	f.Fuzz(func(t *testing.T, packed []byte) {
		if os.Getenv("VOLUME_FUZZ_WATCHDOG") != "" {
			tm := time.AfterFunc(3*time.Second, func() { panic("slow input") })
			defer tm.Stop()
		}
		exercise(t, fuzzDevices(unpack(packed)))
	})
}

// FuzzMetadata parses fuzzed metadata texts.
func FuzzMetadata(f *testing.F) {
	f.Fuzz(func(t *testing.T, text []byte) {
		vg, err := ParseMetadata(text)
		if err != nil {
			if !knownErr(err) {
				t.Fatalf("unknown error %v", err)
			}
			return
		}
		for _, lv := range vg.LVs {
			lv.Kind()
			if err := lv.Err(); err != nil && !knownErr(err) {
				t.Fatalf("%s: unknown error %v", lv.Name, err)
			}
		}
	})
}

// smallVG is a VG laid out small enough for a fuzz seed: two PVs of
// 2 MiB with 64 KiB extents after a 64 KiB head.
func smallVG(lvs ...lvmtest.LV) lvmtest.VG {
	pv := func(i int) lvmtest.PV {
		return lvmtest.PV{ID: lvmtest.ID(fmt.Sprint("small", i)), Device: fmt.Sprint("/dev/vdc", i+1),
			DevSize: 2 * mib, PEStart: 64 * kib, PECount: 31}
	}
	return lvmtest.VG{Name: "vg0", ID: lvmtest.ID("vg0"), Seqno: 3, ExtentSize: 64 * kib,
		PVs: []lvmtest.PV{pv(0), pv(1)}, LVs: lvs}
}

func seg(count int64, stripes ...lvmtest.Stripe) lvmtest.Segment {
	return lvmtest.Segment{Count: count, StripeSize: 16 * kib, Stripes: stripes}
}

// seedDisks builds the FuzzScan seeds: linear, striped and two-segment
// LVs; a thin pool with a thin LV; an old-style snapshot.
func seedDisks(t *testing.T) map[string][]byte {
	write := func(vg lvmtest.VG) (*memDev, *memDev, []byte) {
		a, b := newMemDev(2*mib), newMemDev(2*mib)
		if err := vg.WriteAll([]io.WriterAt{a, b}); err != nil {
			t.Fatal(err)
		}
		return a, b, nil
	}
	join := func(a, b *memDev) []byte { return append(append([]byte(nil), a.b...), b.b...) }
	seeds := map[string][]byte{}

	plain := smallVG(
		lvmtest.LV{Name: "lin", Segments: []lvmtest.Segment{seg(4, lvmtest.Stripe{PV: 0})}},
		lvmtest.LV{Name: "str", Segments: []lvmtest.Segment{seg(4, lvmtest.Stripe{PV: 0, Extent: 4}, lvmtest.Stripe{PV: 1})}},
		lvmtest.LV{Name: "two", Segments: []lvmtest.Segment{seg(2, lvmtest.Stripe{PV: 1, Extent: 2}),
			{Start: 2, Count: 2, Stripes: []lvmtest.Stripe{{PV: 0, Extent: 6}}}}},
	)
	a, b, _ := write(plain)
	copy(a.b[64*kib:], "the first bytes of lin")
	seeds["striped"] = join(a, b)

	thin := smallVG(
		lvmtest.LV{Name: "pool", Segments: []lvmtest.Segment{{Count: 4, Type: "thin-pool", Lines: []string{
			`metadata = "pool_tmeta"`, `pool = "pool_tdata"`, "transaction_id = 1", "chunk_size = 128",
			`discards = "passdown"`, "zero_new_blocks = 1"}}}},
		lvmtest.LV{Name: "thin", Segments: []lvmtest.Segment{{Count: 16, Type: "thin", Lines: []string{
			`thin_pool = "pool"`, "transaction_id = 0", "device_id = 1"}}}},
		lvmtest.LV{Name: "pool_tmeta", Hidden: true, Segments: []lvmtest.Segment{seg(4, lvmtest.Stripe{PV: 0})}},
		lvmtest.LV{Name: "pool_tdata", Hidden: true, Segments: []lvmtest.Segment{seg(4, lvmtest.Stripe{PV: 1})}},
	)
	a, b, _ = write(thin)
	meta := thinMetadata(t, 256*kib, 4, map[int]thinDevice{1: {0: 2, 9: 1}})
	copy(a.b[64*kib:], meta)
	copy(b.b[64*kib+2*64*kib:], "thin chunk 0")
	seeds["thin"] = join(a, b)

	snap := smallVG(
		lvmtest.LV{Name: "lin", Segments: []lvmtest.Segment{seg(4, lvmtest.Stripe{PV: 0})}},
		lvmtest.LV{Name: "snap", Segments: []lvmtest.Segment{seg(2, lvmtest.Stripe{PV: 1})}},
		lvmtest.LV{Name: "snapshot0", Hidden: true, Segments: []lvmtest.Segment{{Count: 4, Type: "snapshot",
			Lines: []string{"chunk_size = 8", `origin = "lin"`, `cow_store = "snap"`}}}},
	)
	a, b, _ = write(snap)
	copy(b.b[64*kib:], cowStore(4*kib, 128*kib, []int64{1, 5}, func(c int64) []byte { return []byte(fmt.Sprint("chunk ", c)) }))
	seeds["snapshot"] = join(a, b)
	return seeds
}

var updateSeeds = flag.Bool("lvm.update-seeds", false, "rewrite testdata/fuzz/FuzzScan and FuzzMetadata seeds")

// TestFuzzSeeds checks that the seeds read (every LV of each but the
// thin pool's parts and the pool itself) and with -lvm.update-seeds
// writes them as the corpora.
func TestFuzzSeeds(t *testing.T) {
	texts := map[string][]byte{"two-pvs": twoPVs().Text(), "thin": thinVG().Text(), "snapshot": snapVG().Text()}
	for name, img := range seedDisks(t) {
		packed := fuzzimg.Pack(img)
		if len(packed) > 16<<10 {
			t.Errorf("%s: seed of %d bytes", name, len(packed))
		}
		devs := fuzzDevices(unpack(packed))
		n := exercise(t, devs)
		want := map[string]int{"striped": 3, "thin": 3, "snapshot": 2}[name]
		if n != want {
			t.Errorf("%s: %d LVs read, want %d", name, n, want)
		}
		if *updateSeeds {
			writeSeed(t, "FuzzScan", name, packed)
		}
		if l := devs[0].Label; l != nil {
			text, err := readMetadata(devs[0].R, devs[0].Size, l.Meta[0])
			if err != nil {
				t.Fatal(err)
			}
			texts["small-"+name] = text
		}
	}
	for name, text := range texts {
		if _, err := ParseMetadata(text); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if *updateSeeds {
			writeSeed(t, "FuzzMetadata", name, text)
		}
	}
}

func writeSeed(t *testing.T, fuzz, name string, b []byte) {
	dir := filepath.Join("testdata", "fuzz", fuzz)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)
	if err := os.WriteFile(filepath.Join(dir, "seed-"+name), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

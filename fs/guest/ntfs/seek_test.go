package ntfs

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/cairn-backup/cairn/fs/guest"
)

// dataRanges collects every data range NextData reports for a file.
func dataRanges(t *testing.T, fsys *FS, ino uint64, size int64) [][2]int64 {
	t.Helper()
	var out [][2]int64
	for off := int64(0); off < size; {
		s, e, err := fsys.NextData(ino, off)
		if err != nil {
			t.Fatalf("NextData(%d, %d): %v", ino, off, err)
		}
		if s == size {
			if e != size {
				t.Fatalf("NextData(%d, %d) = %d, %d past the data", ino, off, s, e)
			}
			break
		}
		if s < off || e <= s || e > size {
			t.Fatalf("NextData(%d, %d) = [%d, %d) of a %d-byte file", ino, off, s, e, size)
		}
		out = append(out, [2]int64{s, e})
		off = e
	}
	return out
}

func lookupPath(t *testing.T, fsys *FS, path string) uint64 {
	t.Helper()
	ino := fsys.Root()
	for _, c := range strings.Split(path, "/") {
		var err error
		if ino, err = fsys.Lookup(ino, c); err != nil {
			t.Fatalf("lookup %s: %v", path, err)
		}
	}
	return ino
}

// TestNextData checks the data ranges of sparse, compressed and resident
// files: what lies outside them reads as zeros, everything non-zero is
// inside, and the holes the files were written with are holes.
func TestNextData(t *testing.T) {
	img := richImage(t)
	fsys := openImage(t, img)
	cases := []struct {
		path     string
		maxData  int64   // data ranges add up to at most this
		holesAt  []int64 // offsets that must be in holes
		minData  int64
		readBack bool // read the whole file to check zeros outside the data
	}{
		{"sparse", 256 << 10, []int64{512 << 10, 2 << 20, 4 << 20}, 24 << 10, true},
		{"huge", 1 << 20, []int64{1 << 30, 3<<30 - 4<<20}, 9000, false},
		{"comp/sparse", 256 << 10, []int64{0, 2 << 20}, 10000, true},
		{"comp/zeros", 128 << 10, []int64{0, 128 << 10}, 3, true},
		{"comp/text", 300000, nil, 300000, true},
		{"f700", 700, nil, 700, true},
		{"f1048699", 1048699, nil, 1048699, true},
		{"frag", 1200 * 4096, []int64{4096 + 100, 3*4096*1000 + 5000}, 1200 * 4096, true},
	}
	for _, c := range cases {
		ino := lookupPath(t, fsys, c.path)
		a, err := fsys.Stat(ino)
		must(t, err)
		size := int64(a.Size)
		rs := dataRanges(t, fsys, ino, size)
		total := int64(0)
		for _, r := range rs {
			total += r[1] - r[0]
		}
		if total > c.maxData || total < c.minData {
			t.Errorf("%s: %d bytes of data in %d ranges, want %d to %d", c.path, total, len(rs), c.minData, c.maxData)
		}
		for _, h := range c.holesAt {
			if s, _, err := fsys.NextData(ino, h); err != nil || s == h {
				t.Errorf("%s: offset %d is not in a hole (next data at %d, %v)", c.path, h, s, err)
			}
		}
		if !c.readBack {
			continue
		}
		data := readAll(t, fsys, ino, a.Size)
		in := make([]bool, len(data))
		for _, r := range rs {
			for i := r[0]; i < r[1]; i++ {
				in[i] = true
			}
		}
		for i, b := range data {
			if b != 0 && !in[i] {
				t.Errorf("%s: byte %d is %#x, in a hole", c.path, i, b)
				break
			}
		}
	}
}

// TestMapFile reads the extents MapFile gives straight from the image and
// compares them with the file, for plain files; for compressed ones the
// extents must lie inside the volume and cover what it stores.
func TestMapFile(t *testing.T) {
	img := richImage(t)
	fsys := openImage(t, img)
	raw, err := os.ReadFile(img)
	must(t, err)
	for _, p := range []string{"f1048699", "f100000", "frag", "sparse", "f700"} {
		ino := lookupPath(t, fsys, p)
		a, err := fsys.Stat(ino)
		must(t, err)
		data := readAll(t, fsys, ino, a.Size)
		var got []byte
		for off := int64(0); off < int64(a.Size); {
			s, e, err := fsys.NextData(ino, off)
			must(t, err)
			if s >= int64(a.Size) {
				break
			}
			for s < e {
				exts, err := fsys.MapFile(nil, ino, s, e-s)
				must(t, err)
				n := int64(0)
				for _, x := range exts {
					got = append(got, raw[x.Off:x.Off+x.Len]...)
					n += x.Len
				}
				if n == 0 && p != "f700" {
					t.Fatalf("%s: no extents for data [%d, %d)", p, s, e)
				}
				if n == 0 {
					got = append(got, data[s:e]...) // resident: no extent
					n = e - s
				}
				s += n
			}
			off = e
		}
		var want []byte
		for off := int64(0); off < int64(a.Size); {
			s, e, _ := fsys.NextData(ino, off)
			if s >= int64(a.Size) {
				break
			}
			want = append(want, data[s:e]...)
			off = e
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: the extents MapFile gives do not hold the file's data", p)
		}
	}
	ino := lookupPath(t, fsys, "comp/mixed")
	exts, err := fsys.MapFile([]guest.Extent{}, ino, 0, 1<<30)
	must(t, err)
	total := int64(0)
	for _, x := range exts {
		if x.Off < 0 || x.Len <= 0 || x.Off+x.Len > int64(len(raw)) {
			t.Errorf("comp/mixed: extent %+v outside the volume", x)
		}
		total += x.Len
	}
	a, _ := fsys.Stat(ino)
	if total == 0 || uint64(total) != a.Blocks*512 {
		t.Errorf("comp/mixed: extents hold %d bytes, the file has %d blocks", total, a.Blocks)
	}
}

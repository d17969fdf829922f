package ext4

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
)

// span is a byte range [start, end) of a file.
type span struct{ start, end int64 }

// dataSpans lists the data ranges NextData reports for ino, merging
// ranges that touch, and checks each answer's shape on the way.
func dataSpans(t *testing.T, fsys *FS, ino uint64, size int64) []span {
	t.Helper()
	var out []span
	for off := int64(0); off < size; {
		start, end, err := fsys.NextData(ino, off)
		if err != nil {
			t.Fatalf("NextData(%d): %v", off, err)
		}
		if start == size {
			if end != size {
				t.Fatalf("NextData(%d) = %d, %d: no data but end is not the size %d", off, start, end, size)
			}
			break
		}
		if start < off || end <= start || end > size {
			t.Fatalf("NextData(%d) = [%d, %d) in a file of %d bytes", off, start, end, size)
		}
		if n := len(out); n > 0 && out[n-1].end == start {
			out[n-1].end = end
		} else {
			out = append(out, span{start, end})
		}
		off = end
	}
	return out
}

func inSpans(spans []span, off int64) bool {
	for _, s := range spans {
		if off >= s.start && off < s.end {
			return true
		}
	}
	return false
}

// sparseTree writes files with holes: small writes into a truncated file,
// one past 4 GiB, one with a hole at its start, a fully written file and
// an empty one. It returns the written (offset, length) pieces per name.
func sparseTree(t *testing.T, dir string) map[string][][2]int64 {
	r := rand.New(rand.NewPCG(7, 8))
	files := map[string][][2]int64{
		"holes":     {{0, 5000}, {1 << 20, 100}, {3<<20 + 77, 9000}, {7 << 20, 1}},
		"lead":      {{6<<20 + 3, 4096}},
		"huge":      {{100, 3000}, {4<<30 + 12345, 3000}},
		"full":      {{0, 300_000}},
		"empty":     nil,
		"tail-hole": {{0, 10}},
	}
	sizes := map[string]int64{"holes": 8 << 20, "lead": 6<<20 + 4099, "huge": 5 << 30, "full": 300_000, "tail-hole": 2 << 20}
	for name, pieces := range files {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pieces {
			if _, err := f.WriteAt(randBytes(r, int(p[1])), p[0]); err != nil {
				t.Fatal(err)
			}
		}
		if err := f.Truncate(sizes[name]); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	return files
}

var extentRE = regexp.MustCompile(`(?m)^\s*\d+/\s*\d+\s+\d+/\s*\d+\s+(\d+) -\s*(\d+)\s+\d+(?: -\s*\d+)?\s+\d+\s*(Uninit)?\s*$`)

// TestNextData checks NextData on sparse files in every variant: each
// written byte is inside a data range, every block that holds no written
// byte is outside one (mke2fs -d copies only the data), big holes cost
// one call, and on extent variants the ranges are debugfs's extents.
func TestNextData(t *testing.T) {
	src := t.TempDir()
	files := sparseTree(t, src)
	for _, v := range variants {
		if testing.Short() && v.name != "ext4-4k" && v.name != "ext2-1k" {
			continue
		}
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			img := mkfs(t, v.prog, src, v.size, v.opts...)
			fsys := openImage(t, img)
			imgFile, err := os.Open(img)
			if err != nil {
				t.Fatal(err)
			}
			defer imgFile.Close()
			bs := int64(fsys.BlockSize())
			for name, pieces := range files {
				ino := lookupPath(t, fsys, name)
				a, err := fsys.Stat(ino)
				if err != nil {
					t.Fatal(err)
				}
				size := int64(a.Size)
				spans := dataSpans(t, fsys, ino, size)
				var data int64
				for _, s := range spans {
					data += s.end - s.start
				}
				for _, p := range pieces {
					if !inSpans(spans, p[0]) || !inSpans(spans, p[0]+p[1]-1) {
						t.Errorf("%s: written [%d, %d) outside data %v", name, p[0], p[0]+p[1], spans)
					}
				}
				if v.name == "ext4-inline" {
					// mke2fs 1.47 with inline_data on writes some holes
					// as zero blocks and drops trailing holes.
					continue
				}
				// Every block with no written byte is a hole.
				written := func(b int64) bool {
					for _, p := range pieces {
						if p[0] < (b+1)*bs && p[0]+p[1] > b*bs {
							return true
						}
					}
					return false
				}
				for _, s := range spans {
					for b := s.start / bs; b*bs < s.end; b++ {
						if !written(b) {
							t.Errorf("%s: block %d holds no written byte but is in data %v", name, b, spans)
							break
						}
					}
				}
				checkMapFile(t, fsys, imgFile, ino, spans, size)
				if name == "full" && (len(spans) != 1 || spans[0] != (span{0, size})) {
					t.Errorf("full: data %v, want [0, %d)", spans, size)
				}
				if extents := regexp.MustCompile(`extent`); v.prog == "mkfs.ext4" && !extents.MatchString(v.name) {
					want := debugfsData(t, img, name, bs, size)
					if len(want) == 0 && len(pieces) > 0 {
						t.Errorf("%s: debugfs lists no extents", name)
					}
					if !equalSpans(spans, want) {
						t.Errorf("%s: data %v, debugfs says %v", name, spans, want)
					}
				}
			}
			// Offsets inside data, in a hole and past the end.
			ino := lookupPath(t, fsys, "holes")
			if s, e, err := fsys.NextData(ino, 4000); err != nil || s != 4000 || e < 5000 {
				t.Errorf("NextData inside data: %d, %d, %v", s, e, err)
			}
			if s, _, err := fsys.NextData(ino, 2<<20); err != nil || s != (3<<20+77)/bs*bs {
				t.Errorf("NextData in a hole: %d, %v", s, err)
			}
			a, _ := fsys.Stat(ino)
			if s, e, err := fsys.NextData(ino, 9<<20); err != nil || s != int64(a.Size) || e != s {
				t.Errorf("NextData past the end: %d, %d, %v", s, e, err)
			}
			if _, _, err := fsys.NextData(fsys.Root(), 0); err == nil {
				t.Error("NextData on a directory: no error")
			}
		})
	}
}

// debugfsData returns the initialized extents of file name as merged
// byte ranges, clipped to size.
func debugfsData(t *testing.T, img, name string, bs, size int64) []span {
	t.Helper()
	var out []span
	for _, m := range extentRE.FindAllStringSubmatch(runTool(t, "debugfs", "-R", "ex "+name, img), -1) {
		if m[3] != "" {
			continue
		}
		first, _ := strconv.ParseInt(m[1], 10, 64)
		last, _ := strconv.ParseInt(m[2], 10, 64)
		s := span{first * bs, min((last+1)*bs, size)}
		if s.start >= size {
			continue
		}
		if n := len(out); n > 0 && out[n-1].end == s.start {
			out[n-1].end = s.end
		} else {
			out = append(out, s)
		}
	}
	return out
}

func equalSpans(a, b []span) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestNextDataUnwritten: a preallocated (unwritten) extent is a hole,
// also past the file size.
func TestNextDataUnwritten(t *testing.T) {
	src := t.TempDir()
	data := randBytes(rand.New(rand.NewPCG(1, 1)), 4096)
	writeFile(t, filepath.Join(src, "f"), data)
	writeFile(t, filepath.Join(src, "g"), data)
	img := mkfs(t, "mkfs.ext4", src, "16M", "-b", "4096")
	runTool(t, "debugfs", "-w", "-R", "fallocate /f 1 20", img)
	runTool(t, "debugfs", "-w", "-R", "sif /f size 86016", img)
	runTool(t, "debugfs", "-w", "-R", "fallocate /g 1 20", img)
	fsys := openImage(t, img)
	for name, size := range map[string]int64{"f": 86016, "g": 4096} {
		ino := lookupPath(t, fsys, name)
		if got := dataSpans(t, fsys, ino, size); !equalSpans(got, []span{{0, 4096}}) {
			t.Errorf("%s: data %v, want [0, 4096)", name, got)
		}
	}
}

// TestNextDataInline: a file kept in its inode is data throughout.
func TestNextDataInline(t *testing.T) {
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "tiny"), bytes.Repeat([]byte("x"), 40))
	img := mkfs(t, "mkfs.ext4", src, "16M", "-O", "inline_data")
	fsys := openImage(t, img)
	ino := lookupPath(t, fsys, "tiny")
	if s, e, err := fsys.NextData(ino, 5); s != 5 || e != 40 || err != nil {
		t.Errorf("inline: %d, %d, %v", s, e, err)
	}
}

// checkMapFile checks that the extents MapFile gives for windows of file
// ino hold, on the volume img, the bytes of the data ranges (spans) in
// each window: MapFile leaves out exactly the holes NextData skips.
// Windows longer than 16 MiB may be cut short.
func checkMapFile(t *testing.T, fsys *FS, img *os.File, ino uint64, spans []span, size int64) {
	t.Helper()
	for _, w := range []span{{0, size}, {0, 1}, {4000, 1 << 20}, {size - 10, size + 100}, {size / 3, size}, {3<<20 + 5, 7<<20 + 1}} {
		if w.start < 0 || w.start > size {
			continue
		}
		exts, err := fsys.MapFile(nil, ino, w.start, w.end-w.start)
		if err != nil {
			t.Fatalf("MapFile(%d, %d): %v", w.start, w.end-w.start, err)
		}
		var got, want []byte
		for _, e := range exts {
			b := make([]byte, e.Len)
			if _, err := img.ReadAt(b, e.Off); err != nil {
				t.Fatalf("extent %+v: %v", e, err)
			}
			got = append(got, b...)
		}
		for _, s := range spans {
			lo, hi := max(s.start, w.start), min(s.end, w.end)
			if lo < hi {
				b := make([]byte, hi-lo)
				if _, err := fsys.ReadAt(ino, b, lo); err != nil && lo+int64(len(b)) < size {
					t.Fatal(err)
				}
				want = append(want, b...)
			}
		}
		// Over long windows MapFile may stop early (maxMapRuns).
		if !bytes.Equal(got, want) && (w.end-w.start <= 16<<20 || !bytes.HasPrefix(want, got)) {
			t.Errorf("MapFile(%d, %d): %d bytes in %d extents, data ranges hold %d other bytes", w.start, w.end-w.start, len(got), len(exts), len(want))
		}
	}
}

package qcow2

import (
	"bytes"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// needTool skips the test when an outside tool is missing, except under
// CI=true where a missing tool is a failure.
func needTool(t testing.TB, names ...string) {
	t.Helper()
	for _, name := range names {
		if _, err := exec.LookPath(name); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("required tool %s is missing: %v", name, err)
			}
			t.Skipf("tool %s not installed", name)
		}
	}
}

func run(t testing.TB, name string, args ...string) []byte {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return out
}

// makeRaw writes a raw disk of size bytes mixing random, text and zero
// regions, with all-zero holes between them, and returns its path.
func makeRaw(t testing.TB, dir string, size int64, seed int64) string {
	t.Helper()
	rng := rand.New(rand.NewSource(seed))
	buf := make([]byte, size)
	text := []byte("cairn keeps every point of a disk as a virtual full backup. ")
	for off := int64(0); off < size; {
		n := int64(rng.Intn(300<<10) + 1)
		n = min(n, size-off)
		switch rng.Intn(5) {
		case 3:
			// Repeats 20 KiB apart: deflate back-references longer than
			// qemu's 4 KiB zlib window.
			rng.Read(buf[off : off+min(n, 20<<10)])
			for i := off + 20<<10; i < off+n; i += 20 << 10 {
				copy(buf[i:off+n], buf[off:off+20<<10])
			}
		case 0:
			rng.Read(buf[off : off+n])
		case 1:
			for i := off; i < off+n; i += int64(len(text)) {
				copy(buf[i:off+n], text)
			}
		case 2:
			// a few scattered bytes in an otherwise zero area
			for i := 0; i < 3; i++ {
				buf[off+rng.Int63n(n)] = byte(rng.Intn(255) + 1)
			}
		}
		off += n
	}
	p := filepath.Join(dir, "src.raw")
	if err := os.WriteFile(p, buf, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// qemuRaw converts any image to raw with qemu-img and returns the bytes.
func qemuRaw(t testing.TB, path string) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "ref.raw")
	run(t, "qemu-img", "convert", "-O", "raw", path, out)
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkImage compares every way of reading im against want.
func checkImage(t *testing.T, im *Image, want []byte) {
	t.Helper()
	if im.Size() != int64(len(want)) {
		t.Fatalf("Size = %d, want %d", im.Size(), len(want))
	}
	got := make([]byte, len(want))
	if n, err := im.ReadAt(got, 0); n != len(got) || (err != nil && n != len(want)) {
		t.Fatalf("ReadAt whole: n=%d err=%v", n, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("whole image differs from qemu-img convert at byte %d", firstDiff(got, want))
	}
	rng := rand.New(rand.NewSource(1))
	for i := 0; i < 300; i++ {
		off := rng.Int63n(int64(len(want)))
		n := min(int64(rng.Intn(200<<10)+1), int64(len(want))-off)
		p := make([]byte, n)
		if _, err := im.ReadAt(p, off); err != nil && off+n < int64(len(want)) {
			t.Fatalf("ReadAt(%d, %d): %v", n, off, err)
		}
		if !bytes.Equal(p, want[off:off+n]) {
			t.Fatalf("ReadAt(%d, %d) differs at +%d", n, off, firstDiff(p, want[off:off+n]))
		}
	}
	// Every non-zero byte must lie in a data range.
	covered := make([]bool, len(want))
	var prevEnd int64 = -1
	for off := int64(0); ; {
		s, e, err := im.NextData(off)
		if err != nil {
			t.Fatalf("NextData(%d): %v", off, err)
		}
		if s == im.Size() {
			break
		}
		if s < off || e <= s || e > im.Size() {
			t.Fatalf("NextData(%d) = [%d,%d)", off, s, e)
		}
		if s == prevEnd {
			t.Fatalf("NextData returned adjacent ranges ending/starting at %d", s)
		}
		for i := s; i < e; i++ {
			covered[i] = true
		}
		prevEnd, off = e, e
	}
	for i, b := range want {
		if b != 0 && !covered[i] {
			t.Fatalf("non-zero byte at %d outside every NextData range", i)
		}
	}
}

func dataBytes(t *testing.T, s interface {
	NextData(int64) (int64, int64, error)
	Size() int64
}) int64 {
	t.Helper()
	var total int64
	for off := int64(0); ; {
		st, e, err := s.NextData(off)
		if err != nil {
			t.Fatal(err)
		}
		if st == s.Size() {
			return total
		}
		total += e - st
		off = e
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

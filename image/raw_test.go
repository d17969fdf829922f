package image

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRawSparseExtents(t *testing.T) {
	path := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	const size = 64 << 20
	f.Truncate(size)
	f.WriteAt([]byte("hello"), 10<<20)
	f.WriteAt([]byte("world"), 40<<20)
	f.Close()

	r, err := OpenRaw(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.Size() != size {
		t.Fatalf("size = %d", r.Size())
	}
	var ranges [][2]int64
	for off := int64(0); ; {
		s, e, err := r.NextData(off)
		if err != nil {
			t.Fatal(err)
		}
		if s >= size {
			break
		}
		ranges = append(ranges, [2]int64{s, e})
		off = e
	}
	// Filesystems allocate in blocks: each write is one small range.
	if len(ranges) != 2 || ranges[0][0] > 10<<20 || ranges[0][1]-ranges[0][0] > 1<<20 ||
		ranges[1][0] > 40<<20 || ranges[1][1] < 40<<20+5 {
		t.Fatalf("data ranges = %v", ranges)
	}
	b := make([]byte, 5)
	r.ReadAt(b, 40<<20)
	if string(b) != "world" {
		t.Fatalf("read %q", b)
	}
}

func TestRawRejectsBadSources(t *testing.T) {
	dir := t.TempDir()
	if _, err := OpenRaw(dir); err == nil || !strings.Contains(err.Error(), "directory") {
		t.Errorf("directory: %v", err)
	}
	if _, err := OpenRaw(filepath.Join(dir, "missing")); !os.IsNotExist(err) {
		t.Errorf("missing: %v", err)
	}
	if _, err := OpenRaw("/dev/null"); err == nil {
		t.Error("character device accepted")
	}
}

// TestRawCurrentSize checks that a file truncated under an open Raw is
// noticed: Size stays what it was at open, CurrentSize tells the truth.
func TestRawCurrentSize(t *testing.T) {
	path := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(path, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := OpenRaw(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := os.Truncate(path, 300<<10); err != nil {
		t.Fatal(err)
	}
	if n, err := r.CurrentSize(); err != nil || n != 300<<10 || r.Size() != 1<<20 {
		t.Fatalf("after truncate: Size %d, CurrentSize %d, %v", r.Size(), n, err)
	}
}

package fat

import (
	"bytes"
	"errors"
	"os"
	"testing"

	"github.com/cairn-backup/cairn/fs/guest"
)

// TestNextData: a FAT file is data from any offset to its end.
func TestNextData(t *testing.T) {
	img, _ := makeImage(t, "12", 8192, false)
	fs := openImage(t, img)
	ino := walk(t, fs, "clusters.bin")
	for off, want := range map[int64][2]int64{0: {0, 70000}, 4097: {4097, 70000}, 70000: {70000, 70000}, 1 << 40: {70000, 70000}} {
		if s, e, err := fs.NextData(ino, off); err != nil || s != want[0] || e != want[1] {
			t.Errorf("NextData(%d) = %d, %d, %v; want %v", off, s, e, err, want)
		}
	}
	if s, e, err := fs.NextData(walk(t, fs, "empty.txt"), 0); err != nil || s != 0 || e != 0 {
		t.Errorf("empty file: %d, %d, %v", s, e, err)
	}
	for _, dir := range []uint64{fs.Root(), walk(t, fs, "many")} {
		if _, _, err := fs.NextData(dir, 0); !errors.Is(err, guest.ErrIsDir) {
			t.Errorf("directory %d: %v", dir, err)
		}
	}
	if _, _, err := fs.NextData(12345, 0); !errors.Is(err, guest.ErrNotFound) {
		t.Errorf("bad inode: %v", err)
	}
}

// checkMapFile checks that the extents MapFile gives for windows of
// file ino hold, on the volume img, exactly the window's bytes of data.
func checkMapFile(t *testing.T, fs *FS, img string, ino uint64, data []byte) {
	t.Helper()
	vol, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	size := int64(len(data))
	for _, w := range [][2]int64{{0, size}, {0, 1}, {1000, 9000}, {size - 10, 100}, {size / 3, size}, {size, 10}, {0, 1 << 40}} {
		exts, err := fs.MapFile(nil, ino, w[0], w[1])
		if err != nil {
			t.Fatalf("MapFile(%d, %d): %v", w[0], w[1], err)
		}
		var got []byte
		for _, e := range exts {
			if e.Off < 0 || e.Len <= 0 || e.Off+e.Len > int64(len(vol)) {
				t.Fatalf("MapFile(%d, %d): extent %+v on a %d-byte volume", w[0], w[1], e, len(vol))
			}
			got = append(got, vol[e.Off:e.Off+e.Len]...)
		}
		lo, hi := min(w[0], size), min(w[0]+min(w[1], size), size)
		if !bytes.Equal(got, data[lo:hi]) {
			t.Errorf("MapFile(%d, %d): %d bytes that differ from the file's %d", w[0], w[1], len(got), hi-lo)
		}
	}
}

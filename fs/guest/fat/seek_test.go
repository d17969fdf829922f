package fat

import (
	"errors"
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

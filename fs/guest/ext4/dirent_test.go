package ext4

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/cairn-backup/cairn/fs/guest"
)

// TestUnusedInode: an entry naming an inode of mode 0 (e2fsck's
// "deleted/unused inode") is left out of its directory and logged; its
// name is not found.
func TestUnusedInode(t *testing.T) {
	c := newCsumImage(t)
	debugfsScript(t, c.path, "sif /f1 mode 0")
	img := readFile(t, c.path)
	if out := e2fsckN(t, img); !strings.Contains(out, "(/f1) has invalid mode (00)") {
		t.Fatalf("e2fsck -fn does not see the unused inode:\n%s", out)
	}
	log := &logRecorder{}
	fsys := openBytes(t, img, log)
	names := dirNames(t, fsys, fsys.Root())
	if slices.Contains(names, "f1") || !slices.Contains(names, "f0") || !slices.Contains(names, "f2") {
		t.Errorf("root lists %v", names)
	}
	if _, err := fsys.Lookup(fsys.Root(), "f1"); !errors.Is(err, guest.ErrNotFound) {
		t.Errorf("Lookup f1: %v, want not found", err)
	}
	if !log.has(`"f1"`) || !log.has("unused inode") {
		t.Errorf("nothing logged for f1: %q", log.lines)
	}
}

func dirNames(t *testing.T, fsys *FS, ino uint64) []string {
	t.Helper()
	ents, err := fsys.ReadDir(ino)
	if err != nil {
		t.Fatalf("ReadDir %d: %v", ino, err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name)
	}
	return names
}

func readFile(t testing.TB, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestDirEntryDamage damages one entry of a directory block (without
// metadata_csum, so that the block still reads) and checks what the
// listing keeps: a record length or inode number that makes no sense
// ends the block there, as the kernel's readdir does, keeping the
// entries before it; a name FUSE cannot carry, or repeated, loses only
// that entry. The rest of the filesystem is untouched.
func TestDirEntryDamage(t *testing.T) {
	c := newCsumImage(t, "-O", "^metadata_csum")
	le := binary.LittleEndian
	blk := c.firstBlock(t, "d") * c.bs
	// The names in on-disk order, and where each entry starts.
	var order []string
	offs := map[string]int{}
	for off := 0; off < c.bs; {
		e := c.img[blk+off:]
		if n := int(e[6]); le.Uint32(e) != 0 && n > 0 {
			name := string(e[8 : 8+n])
			if name != "." && name != ".." {
				order = append(order, name)
				offs[name] = blk + off
			}
		}
		off += int(le.Uint16(e[4:]))
	}
	if len(order) != 20 {
		t.Fatalf("d's first block holds %d entries: %v", len(order), order)
	}
	mid := order[7]
	before := order[:7]
	sorted := func(s []string) []string { s = slices.Clone(s); slices.Sort(s); return s }
	for _, tc := range []struct {
		name   string
		damage func(b []byte)
		want   []string
		log    string
	}{
		{"record length", func(b []byte) { le.PutUint16(b[offs[mid]+4:], 5) }, sorted(before), "record length 5"},
		{"record past the block", func(b []byte) { le.PutUint16(b[offs[mid]+4:], 8192) }, sorted(before), "record length 8192"},
		{"inode number", func(b []byte) { le.PutUint32(b[offs[mid]:], 0xFFFFFF00) }, sorted(before), "names inode 4294967040"},
		{"slash in name", func(b []byte) { b[offs[mid]+9] = '/' },
			sorted(slices.DeleteFunc(slices.Clone(order), func(s string) bool { return s == mid })), "left out"},
		{"repeated name", func(b []byte) { copy(b[offs[mid]+8:], order[6]) },
			// the entry renamed like its neighbour before it: one stays
			sorted(slices.DeleteFunc(slices.Clone(order), func(s string) bool { return s == mid })), "second entry"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if len(order[6]) != len(mid) {
				t.Skip("neighbouring names differ in length")
			}
			img := bytes.Clone(c.img)
			tc.damage(img)
			log := &logRecorder{}
			fsys := openBytes(t, img, log)
			if got := dirNames(t, fsys, c.ino["d"]); !slices.Equal(got, tc.want) {
				t.Errorf("d lists %v\nwant %v", got, tc.want)
			}
			if !log.has(tc.log) {
				t.Errorf("log %q lacks %q", log.lines, tc.log)
			}
			for _, name := range tc.want {
				if _, err := fsys.Lookup(c.ino["d"], name); err != nil {
					t.Errorf("Lookup %s: %v", name, err)
				}
			}
			// Everything outside d reads as before.
			base := dropPaths(treeView(t, openBytes(t, c.img, nil)), []string{"/d"})
			if got := dropPaths(treeView(t, fsys), []string{"/d"}); got != base {
				t.Errorf("outside d:\n%s", diffLines(got, base))
			}
		})
	}
}

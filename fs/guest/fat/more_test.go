package fat

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"testing"

	"github.com/cairn-backup/cairn/fs/guest"
	"github.com/cairn-backup/cairn/fs/guest/lru"
)

func names(t testing.TB, fs *FS, ino uint64) []string {
	t.Helper()
	ents, err := fs.ReadDir(ino)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name)
	}
	return out
}

func TestDeletedAndBrokenLongNames(t *testing.T) {
	p, _ := makeImage(t, "12", 4096, false)
	tool(t, "mdel", "-i", p, "::/small.txt")
	fs := openImage(t, p)
	root := names(t, fs, fs.Root())
	if slices.Contains(root, "small.txt") {
		t.Fatalf("deleted file listed: %q", root)
	}
	if _, err := fs.Lookup(fs.Root(), "small.txt"); !errors.Is(err, guest.ErrNotFound) {
		t.Fatalf("deleted file found: %v", err)
	}

	// Break the checksum of a long name: the 8.3 alias takes its place.
	ino := walk(t, fs, "A long file name with spaces.txt")
	img, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	img[ino-32+13] ^= 0xFF // the last LFN entry before the short one
	fs2, err := Open(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	root = names(t, fs2, fs2.Root())
	if slices.Contains(root, "A long file name with spaces.txt") || !slices.Contains(root, "ALONGF~1.TXT") {
		t.Fatalf("broken long name not replaced by its alias: %q", root)
	}
	if got := walk(t, fs2, "alongf~1.txt"); got != ino {
		t.Fatalf("alias inode %d, want %d", got, ino)
	}
}

func TestFragmentedFile(t *testing.T) {
	needTool(t, "mkfs.vfat", "mcopy", "mdel")
	src := t.TempDir()
	if err := os.Mkdir(src+"/frag", 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		os.WriteFile(fmt.Sprintf("%s/frag/f%02d", src, i), bytes.Repeat([]byte{byte(i)}, 2000), 0o644)
	}
	img := t.TempDir() + "/fat.img"
	tool(t, "mkfs.vfat", "-F", "16", "-s", "4", "-C", img, "16384")
	tool(t, "mcopy", "-s", "-i", img, src+"/frag", "::/")
	tool(t, "mdel", "-i", img, "::/frag/f*[02468]")
	data := make([]byte, 60000)
	for i := range data {
		data[i] = byte(i * 31 / 7)
	}
	os.WriteFile(src+"/big", data, 0o644)
	tool(t, "mcopy", "-i", img, src+"/big", "::/")
	fs := openImage(t, img)
	ino := walk(t, fs, "big")
	got := make([]byte, len(data))
	if n, err := fs.ReadAt(ino, got, 0); n != len(data) || err != nil || !bytes.Equal(got, data) {
		t.Fatalf("n=%d err=%v, content equal %v", n, err, bytes.Equal(got, data))
	}
	c := uint32(binary.LittleEndian.Uint16(readEntry(t, img, ino)[26:]))
	ch, err := fs.chainOf(c, fs.l.clusters)
	if err != nil || len(ch.runs) < 5 {
		t.Fatalf("want a fragmented chain, got %+v, %v", ch, err)
	}
	// Every piece across run boundaries reads right.
	for off := 0; off < len(data); off += 1500 {
		p := make([]byte, 3000)
		n, _ := fs.ReadAt(ino, p, int64(off))
		if !bytes.Equal(p[:n], data[off:min(len(data), off+3000)]) {
			t.Fatalf("read at %d differs", off)
		}
	}
	checkMapFile(t, fs, img, ino, data)
}

func readEntry(t testing.TB, img string, ino uint64) []byte {
	t.Helper()
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	e := make([]byte, 32)
	if _, err := f.ReadAt(e, int64(ino)); err != nil {
		t.Fatal(err)
	}
	return e
}

func TestConcurrentReads(t *testing.T) {
	p, files := makeImage(t, "32", 40000, false)
	fs := openImage(t, p)
	// A tiny chain budget forces eviction while readers run.
	fs.chains = lru.New[uint32, *chain](2)
	fs.dirs = lru.New[uint64, *dir](40)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 40 {
				f := files[(g*7+i)%len(files)]
				ino := walk(t, fs, f.path)
				got := make([]byte, len(f.data)+1)
				n, err := fs.ReadAt(ino, got, 0)
				if err != io.EOF || !bytes.Equal(got[:n], f.data) {
					errs <- errors.New(f.path + ": content differs")
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// BenchmarkReadAt reads a 3 MB file of a FAT32 volume with 512-byte
// clusters in 128 KiB pieces at random offsets, as FUSE does.
func BenchmarkReadAt(b *testing.B) {
	p, files := makeImage(b, "32", 40000, true)
	raw, err := os.ReadFile(p)
	if err != nil {
		b.Fatal(err)
	}
	fs, err := Open(bytes.NewReader(raw), int64(len(raw)))
	if err != nil {
		b.Fatal(err)
	}
	f := files[len(files)-151] // big/random.bin, before the many/ files
	if f.path != "big/random.bin" {
		b.Fatalf("got %s", f.path)
	}
	ino := walk(b, fs, f.path)
	buf := make([]byte, 128<<10)
	b.SetBytes(int64(len(buf)))
	for i := 0; b.Loop(); i++ {
		off := int64(i*7919*4096) % int64(len(f.data)-len(buf))
		if _, err := fs.ReadAt(ino, buf, off); err != nil {
			b.Fatal(err)
		}
	}
}

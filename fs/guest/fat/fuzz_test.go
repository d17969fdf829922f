package fat

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
)

var updateSeeds = flag.Bool("update-seeds", false, "rewrite testdata/fuzz/FuzzOpen from mkfs.vfat volumes")

// sparseDisk is all zeros but for head at offset 0 and tail at tailOff, so
// a few KB of fuzz input stand for a volume of megabytes.
type sparseDisk struct {
	head, tail []byte
	tailOff    int64
	size       int64
}

func newSparseDisk(head []byte, tailOff uint32, tail []byte, extraSectors uint32) sparseDisk {
	d := sparseDisk{head: head, tail: tail, tailOff: int64(tailOff % (64 << 20))}
	d.size = max(int64(len(head)), d.tailOff+int64(len(tail))) + int64(extraSectors%(1<<18))*512
	return d
}

func (d sparseDisk) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("negative offset")
	}
	if off >= d.size {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), d.size-off))
	clear(p[:n])
	place := func(b []byte, at int64) {
		if at < off+int64(n) && at+int64(len(b)) > off {
			lo := max(at, off)
			hi := min(at+int64(len(b)), off+int64(n))
			copy(p[lo-off:hi-off], b[lo-at:hi-at])
		}
	}
	place(d.head, 0)
	place(d.tail, d.tailOff)
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func FuzzOpen(f *testing.F) {
	f.Add([]byte{0xEB, 0x3C, 0x90}, uint32(0), []byte{}, uint32(0))
	f.Fuzz(func(t *testing.T, head []byte, tailOff uint32, tail []byte, extra uint32) {
		d := newSparseDisk(head, tailOff, tail, extra)
		fs, err := Open(d, d.size)
		if err != nil {
			return
		}
		budget := 300 // inodes visited, so one input stays fast
		var visit func(ino uint64, depth int)
		visit = func(ino uint64, depth int) {
			if budget--; budget < 0 || depth > 10 {
				return
			}
			a, err := fs.Stat(ino)
			if err != nil {
				return
			}
			if a.Mode&0o170000 != 0o040000 {
				buf := make([]byte, 3000)
				for _, off := range []int64{0, 511, int64(a.Size) - 10} {
					n, err := fs.ReadAt(ino, buf, off)
					if n < 0 || n > len(buf) || (err == nil && n != len(buf)) {
						t.Fatalf("ReadAt: n=%d err=%v", n, err)
					}
				}
				return
			}
			ents, err := fs.ReadDir(ino)
			if err != nil {
				return
			}
			for _, e := range ents {
				// A damaged directory may hold names equal but for case,
				// so Lookup need not give e.Ino back; it must not fail.
				if _, err := fs.Lookup(ino, e.Name); err != nil {
					t.Fatalf("Lookup(%q) of a listed name: %v", e.Name, err)
				}
				visit(e.Ino, depth+1)
			}
		}
		visit(fs.Root(), 0)
	})
}

// TestWriteFuzzSeeds refreshes the committed corpus when run with
// -update-seeds: small volumes of each FAT type, stored as the head of
// the disk (boot sector and FAT) and the start of the data region.
func TestWriteFuzzSeeds(t *testing.T) {
	if !*updateSeeds {
		t.Skip("run with -update-seeds to rewrite the corpus")
	}
	needTool(t, "mkfs.vfat", "mcopy")
	dir := filepath.Join("testdata", "fuzz", "FuzzOpen")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	os.MkdirAll(filepath.Join(src, "sub", "deeper"), 0o755)
	os.WriteFile(filepath.Join(src, "a.txt"), []byte("hi\n"), 0o644)
	os.WriteFile(filepath.Join(src, "sub", "Long name é.txt"), bytes.Repeat([]byte("x"), 1200), 0o644)
	os.WriteFile(filepath.Join(src, "sub", "deeper", "lower.txt"), []byte("lower"), 0o644)
	for _, v := range []struct {
		name string
		args []string
		kb   int
	}{
		{"fat12", []string{"-F", "12", "-r", "16", "-f", "1", "-s", "1"}, 64},
		{"fat16", []string{"-F", "16", "-r", "16", "-f", "1", "-s", "1"}, 2100},
		{"fat32", []string{"-F", "32", "-f", "1", "-s", "1", "-R", "2"}, 33300},
	} {
		img := filepath.Join(t.TempDir(), "v.img")
		tool(t, "mkfs.vfat", append(append(v.args, "-S", "512", "-C", img), fmt.Sprint(v.kb))...)
		tool(t, "mcopy", "-s", "-m", "-i", img, filepath.Join(src, "a.txt"), filepath.Join(src, "sub"), "::/")
		raw, err := os.ReadFile(img)
		if err != nil {
			t.Fatal(err)
		}
		fs, err := Open(bytes.NewReader(raw), int64(len(raw)))
		if err != nil {
			t.Fatal(err)
		}
		// The head keeps the boot sector and the first FAT entries; the
		// tail the fixed root directory (if any) and the first clusters.
		head := bytes.TrimRight(raw[:fs.l.fatStart+512], "\x00")
		tailOff := fs.l.rootStart
		if fs.l.typ == FAT32 {
			tailOff = fs.l.dataStart
		}
		tail := bytes.TrimRight(raw[tailOff:fs.l.dataStart+16*fs.l.clusterSize], "\x00")
		extra := (int64(len(raw)) - tailOff - int64(len(tail))) / 512
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\nuint32(%d)\n[]byte(%q)\nuint32(%d)\n", head, tailOff, tail, extra)
		if err := os.WriteFile(filepath.Join(dir, v.name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		// The seed must read back as the same volume.
		d := newSparseDisk(head, uint32(tailOff), tail, uint32(extra))
		sfs, err := Open(d, d.size)
		if err != nil {
			t.Fatal(err)
		}
		if err := readAll(sfs, "sub/Long name é.txt"); err != nil {
			t.Fatalf("%s seed: %v", v.name, err)
		}
	}
}

package xfs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/fs/guest"
)

// walk visits the tree breadth first within limits and returns the first
// error; used on damaged images, where an error is fine and a panic or a
// hang is not.
func walk(fsys *FS, maxInodes int, maxRead int) error {
	var first error
	note := func(err error) {
		if err != nil && first == nil && !errors.Is(err, io.EOF) {
			first = err
		}
	}
	queue := []uint64{fsys.Root()}
	seen := map[uint64]bool{}
	buf := make([]byte, 8192)
	for len(queue) > 0 && len(seen) < maxInodes {
		ino := queue[0]
		queue = queue[1:]
		if seen[ino] {
			continue
		}
		seen[ino] = true
		a, err := fsys.Stat(ino)
		note(err)
		if err != nil {
			continue
		}
		names, err := fsys.ListXattr(ino)
		note(err)
		for _, n := range names {
			_, err := fsys.GetXattr(ino, n)
			note(err)
		}
		switch a.Mode & syscall.S_IFMT {
		case syscall.S_IFDIR:
			ents, err := fsys.ReadDir(ino)
			note(err)
			for _, e := range ents {
				_, err := fsys.Lookup(ino, e.Name)
				note(err)
				queue = append(queue, e.Ino)
			}
		case syscall.S_IFLNK:
			_, err := fsys.Readlink(ino)
			note(err)
		case syscall.S_IFREG:
			for off := int64(0); off < int64(maxRead) && uint64(off) < a.Size; off += int64(len(buf)) {
				_, err := fsys.ReadAt(ino, buf, off)
				note(err)
			}
			if a.Size > 4096 {
				_, err := fsys.ReadAt(ino, buf[:100], int64(a.Size)-50)
				note(err)
			}
			exts, err := fsys.MapFile(nil, ino, 0, 8<<20)
			note(err)
			for _, e := range exts {
				if e.Off < 0 || e.Len <= 0 || e.Off+e.Len > fsys.size {
					note(fmt.Errorf("extent %+v outside the volume", e))
				}
			}
			for off, n := int64(0), 0; off < int64(a.Size) && n < 64; n++ {
				_, end, err := fsys.NextData(ino, off)
				note(err)
				if err != nil || end <= off {
					break
				}
				off = end
			}
		}
	}
	return first
}

// inTime fails the test when f does not return within a deadline.
func inTime(t *testing.T, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("hang: no answer after 20s")
	}
}

// damageImage is a pristine image and where its structures lie.
type damageImage struct {
	im  *image
	img []byte
	ino map[string]uint64 // path -> inode number
	at  map[string]int64  // structure -> byte offset
}

var ptrRE = regexp.MustCompile(`bmbt\.ptrs\[1\] = (\d+)`)

func newDamageImage(t *testing.T, opts ...string) *damageImage {
	src := t.TempDir()
	buildTree(t, src, treeOpts{manyEntries: 3000, midEntries: 300})
	d := &damageImage{im: mkfs(t, src, "64m", opts...), ino: map[string]uint64{}, at: map[string]int64{}}
	img := d.im.path
	for _, p := range []string{"f4096", "f70000", "mid", "many", "link1000", "xremote", "f4097", "a"} {
		d.ino[p] = xfsIno(t, img, p)
	}
	inodeAt := func(p string) int64 {
		m := convertRE.FindStringSubmatch(xfsDB(t, img, fmt.Sprintf("convert inode %d byte", d.ino[p])))
		n, _ := strconv.ParseInt(m[1], 10, 64)
		return n
	}
	d.at["inode f4096"] = inodeAt("f4096")
	d.at["inode a"] = inodeAt("a")
	midExts := xfsBmap(t, img, "path /mid")
	d.at["mid block 0"] = byteOf(t, img, midExts[0].fsb)
	if midExts[0].n > 1 {
		d.at["mid block 1"] = d.at["mid block 0"] + d.im.bs
	} else {
		d.at["mid block 1"] = byteOf(t, img, midExts[1].fsb)
	}
	m := ptrRE.FindStringSubmatch(xfsDB(t, img, "path /many", "print "+d.im.fork()+".bmbt.ptrs"))
	if m == nil {
		t.Fatal("/many has no block map btree")
	}
	fsb, _ := strconv.ParseUint(m[1], 10, 64)
	d.at["many btree"] = byteOf(t, img, fsb)
	d.at["link1000 block"] = byteOf(t, img, xfsBmap(t, img, "path /link1000")[0].fsb)
	d.at["xremote leaf"] = byteOf(t, img, xfsBmapAttr(t, img, "/xremote")[0].fsb)
	var err error
	if d.img, err = os.ReadFile(img); err != nil {
		t.Fatal(err)
	}
	return d
}

func xfsBmapAttr(t testing.TB, img, path string) []bmapExtent {
	t.Helper()
	out := xfsDB(t, img, "path "+path, "bmap -a")
	var exts []bmapExtent
	for _, m := range bmapRE.FindAllStringSubmatch(out, -1) {
		off, _ := strconv.ParseUint(m[2], 10, 64)
		fsb, _ := strconv.ParseUint(m[3], 10, 64)
		n, _ := strconv.ParseUint(m[6], 10, 64)
		exts = append(exts, bmapExtent{off, fsb, n, m[7] == "1"})
	}
	return exts
}

func (d *damageImage) open(t *testing.T, img []byte) (*FS, *[]string) {
	t.Helper()
	var mu sync.Mutex
	logs := new([]string)
	fsys, err := OpenOptions(bytes.NewReader(img), int64(len(img)), Options{Logf: func(f string, a ...any) {
		mu.Lock()
		defer mu.Unlock()
		*logs = append(*logs, fmt.Sprintf(f, a...))
	}})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return fsys, logs
}

// badCRC asks xfs_db whether it sees a bad CRC in what the commands
// select, after img is written to disk.
func badCRC(t *testing.T, img []byte, cmds ...string) bool {
	p := filepath.Join(t.TempDir(), "damaged.img")
	if err := os.WriteFile(p, img, 0o644); err != nil {
		t.Fatal(err)
	}
	return strings.Contains(xfsDB(t, p, cmds...), "(bad)")
}

// mustCorrupt checks that err wraps ErrCorrupt and names inode ino.
func mustCorrupt(t *testing.T, what string, err error, ino uint64) {
	t.Helper()
	if !errors.Is(err, guest.ErrCorrupt) {
		t.Errorf("%s: %v, want ErrCorrupt", what, err)
	} else if ino != 0 && !strings.Contains(err.Error(), "inode "+itoa(int(ino))) {
		t.Errorf("%s: error does not name inode %d: %v", what, ino, err)
	}
}

// stillReads checks that the files damage did not touch read whole.
func stillReads(t *testing.T, fsys *FS, paths ...string) {
	t.Helper()
	for _, p := range paths {
		ino, err := fsys.Lookup(fsys.Root(), p)
		if err != nil {
			t.Errorf("Lookup %s: %v", p, err)
			continue
		}
		a, err := fsys.Stat(ino)
		if err != nil {
			t.Errorf("Stat %s: %v", p, err)
			continue
		}
		if a.Mode&syscall.S_IFMT == syscall.S_IFDIR {
			if _, err := fsys.ReadDir(ino); err != nil {
				t.Errorf("ReadDir %s: %v", p, err)
			}
			continue
		}
		if n, err := fsys.ReadAt(ino, make([]byte, a.Size+1), 0); uint64(n) != a.Size || err != io.EOF {
			t.Errorf("ReadAt %s: %d, %v", p, n, err)
		}
	}
}

func TestDamageV5(t *testing.T) {
	d := newDamageImage(t)
	flip := func(off int64) []byte {
		img := bytes.Clone(d.img)
		img[off] ^= 0x5A
		return img
	}
	t.Run("superblock CRC", func(t *testing.T) {
		img := flip(0x1F0) // unused, but inside the checksummed sector
		if !badCRC(t, img, "sb 0", "print crc") {
			t.Fatal("xfs_db sees no bad CRC")
		}
		_, err := Open(bytes.NewReader(img), int64(len(img)))
		mustCorrupt(t, "Open", err, 0)
	})
	t.Run("inode CRC", func(t *testing.T) {
		img := flip(d.at["inode f4096"] + 0x40) // nblocks
		if !badCRC(t, img, fmt.Sprintf("inode %d", d.ino["f4096"]), "print v3.crc") {
			t.Fatal("xfs_db sees no bad CRC")
		}
		fsys, logs := d.open(t, img)
		_, err := fsys.Stat(d.ino["f4096"])
		mustCorrupt(t, "Stat", err, d.ino["f4096"])
		_, err = fsys.ReadAt(d.ino["f4096"], make([]byte, 10), 0)
		mustCorrupt(t, "ReadAt", err, d.ino["f4096"])
		// The entry stays listed (its type is in the entry), and fails
		// alone.
		if _, err := fsys.Lookup(fsys.Root(), "f4096"); err != nil {
			t.Errorf("Lookup: %v", err)
		}
		stillReads(t, fsys, "f70000", "f4097", "mid", "a")
		if len(*logs) != 0 {
			t.Errorf("logged %q", *logs)
		}
	})
	t.Run("directory inode CRC", func(t *testing.T) {
		img := flip(d.at["inode a"] + 0x41)
		fsys, _ := d.open(t, img)
		_, err := fsys.ReadDir(d.ino["a"])
		mustCorrupt(t, "ReadDir", err, d.ino["a"])
		stillReads(t, fsys, "f70000", "mid", "many")
	})
	t.Run("directory block CRC", func(t *testing.T) {
		img := flip(d.at["mid block 0"] + 200)
		if !badCRC(t, img, "path /mid", "dblock 0", "print dhdr.hdr.crc") {
			t.Fatal("xfs_db sees no bad CRC")
		}
		fsys, logs := d.open(t, img)
		ents, err := fsys.ReadDir(d.ino["mid"])
		if err != nil {
			t.Fatalf("ReadDir: %v", err)
		}
		// The entries of the damaged block are left out, the others kept.
		if len(ents) == 0 || len(ents) >= 300 {
			t.Errorf("ReadDir: %d entries of 300", len(ents))
		}
		for _, e := range ents {
			if _, err := fsys.Stat(e.Ino); err != nil {
				t.Errorf("Stat %s: %v", e.Name, err)
			}
		}
		if len(*logs) != 1 || !strings.Contains((*logs)[0], "left out") || !strings.Contains((*logs)[0], "bad CRC") {
			t.Errorf("log %q", *logs)
		}
		stillReads(t, fsys, "f70000", "many", "a")
	})
	t.Run("misplaced directory block", func(t *testing.T) {
		// A block written at the wrong place: its CRC and owner are
		// right, the sector it names is not where it lies.
		img := bytes.Clone(d.img)
		b0, b1 := d.at["mid block 0"], d.at["mid block 1"]
		copy(img[b1:b1+d.im.bs], img[b0:b0+d.im.bs])
		fsys, logs := d.open(t, img)
		ents, err := fsys.ReadDir(d.ino["mid"])
		if err != nil || len(ents) == 0 || len(ents) >= 300 {
			t.Errorf("ReadDir: %d entries, %v", len(ents), err)
		}
		if len(*logs) != 1 || !strings.Contains((*logs)[0], "lies at sector") {
			t.Errorf("log %q", *logs)
		}
	})
	t.Run("btree block CRC", func(t *testing.T) {
		img := flip(d.at["many btree"] + 100)
		fsys, _ := d.open(t, img)
		_, err := fsys.ReadDir(d.ino["many"])
		mustCorrupt(t, "ReadDir", err, d.ino["many"])
		stillReads(t, fsys, "f70000", "mid", "a")
	})
	t.Run("symlink block CRC", func(t *testing.T) {
		img := flip(d.at["link1000 block"] + 100)
		if !badCRC(t, img, "path /link1000", "dblock 0", "type symlink", "print crc") {
			t.Fatal("xfs_db sees no bad CRC")
		}
		fsys, _ := d.open(t, img)
		_, err := fsys.Readlink(d.ino["link1000"])
		mustCorrupt(t, "Readlink", err, d.ino["link1000"])
		stillReads(t, fsys, "f70000", "mid")
	})
	t.Run("attribute leaf CRC", func(t *testing.T) {
		img := flip(d.at["xremote leaf"] + 100)
		if !badCRC(t, img, "path /xremote", "ablock 0", "print hdr.info.crc") {
			t.Fatal("xfs_db sees no bad CRC")
		}
		fsys, _ := d.open(t, img)
		_, err := fsys.ListXattr(d.ino["xremote"])
		mustCorrupt(t, "ListXattr", err, d.ino["xremote"])
		_, err = fsys.GetXattr(d.ino["xremote"], "user.tiny")
		mustCorrupt(t, "GetXattr", err, d.ino["xremote"])
		if n, err := fsys.ReadAt(d.ino["xremote"], make([]byte, 100), 0); n != 6 || err != io.EOF {
			t.Errorf("ReadAt: %d, %v", n, err)
		}
		if v, err := fsys.GetXattr(d.ino["f4097"], "user.big"); err != nil || len(v) != 3000 {
			t.Errorf("other file's attribute: %d bytes, %v", len(v), err)
		}
	})
	t.Run("truncated volume", func(t *testing.T) {
		img := d.img[:len(d.img)/8]
		fsys, err := Open(bytes.NewReader(img), int64(len(img)))
		if err == nil {
			inTime(t, func() { err = walk(fsys, 5000, 1<<20) })
		}
		mustCorrupt(t, "walk", err, 0)
	})
}

// TestDamageNoFtype: without file types in entries a listing reads each
// entry's inode, and one that cannot be read is left out and logged.
func TestDamageNoFtype(t *testing.T) {
	d := newDamageImage(t, "-m", "crc=0", "-n", "ftype=0")
	img := bytes.Clone(d.img)
	img[d.at["inode f4096"]] ^= 0xFF // inode magic
	fsys, logs := d.open(t, img)
	ents, err := fsys.ReadDir(fsys.Root())
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.Name == "f4096" {
			t.Error("damaged entry listed")
		}
	}
	if len(ents) < 20 {
		t.Errorf("%d entries listed", len(ents))
	}
	if len(*logs) != 1 || !strings.Contains((*logs)[0], `"f4096"`) {
		t.Errorf("log %q", *logs)
	}
	_, err = fsys.Stat(d.ino["f4096"])
	mustCorrupt(t, "Stat", err, d.ino["f4096"])
	stillReads(t, fsys, "f70000", "mid", "many")
}

// TestRandomDamage flips random bytes in the metadata and walks the tree:
// any error is fine, a panic or a hang is not.
func TestRandomDamage(t *testing.T) {
	for _, v5 := range []bool{true, false} {
		opts := []string{"-m", "crc=0"}
		if v5 {
			opts = nil
		}
		d := newDamageImage(t, opts...)
		r := rand.New(rand.NewPCG(7, 8))
		iters := 150
		if testing.Short() {
			iters = 30
		}
		// Damage where metadata lives: the first blocks (headers, inodes,
		// btrees) and the structures located above.
		var spots []int64
		for _, off := range d.at {
			spots = append(spots, off)
		}
		img := bytes.Clone(d.img)
		for range iters {
			type flip struct {
				at  int64
				old byte
			}
			var flips []flip
			for range 1 + r.IntN(20) {
				at := r.Int64N(2 << 20)
				if r.IntN(2) == 0 {
					at = spots[r.IntN(len(spots))] + r.Int64N(4096)
				}
				flips = append(flips, flip{at, img[at]})
				img[at] ^= byte(1 + r.IntN(255))
			}
			inTime(t, func() {
				fsys, err := Open(bytes.NewReader(img), int64(len(img)))
				if err == nil {
					_ = walk(fsys, 400, 256<<10)
				}
			})
			for i := len(flips) - 1; i >= 0; i-- {
				img[flips[i].at] = flips[i].old
			}
		}
	}
}

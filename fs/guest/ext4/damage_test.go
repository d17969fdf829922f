package ext4

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
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

type damageImage struct {
	img  []byte
	bs   int
	ino  map[string]uint64 // path -> inode number
	ioff map[string]int    // path -> byte offset of the inode
}

var imapRE = regexp.MustCompile(`located at block (\d+), offset 0x([0-9a-f]+)`)

func newDamageImage(t *testing.T) *damageImage {
	src := t.TempDir()
	r := rand.New(rand.NewPCG(5, 6))
	writeFile(t, filepath.Join(src, "data"), randBytes(r, 64<<10))
	if err := os.Mkdir(filepath.Join(src, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		writeFile(t, filepath.Join(src, "d", "file"+itoa(i)), []byte("x"))
	}
	path := mkfs(t, "mkfs.ext4", src, "16M", "-b", "4096")
	d := &damageImage{bs: 4096, ino: map[string]uint64{}, ioff: map[string]int{}}
	for _, p := range []string{"data", "d"} {
		out := runTool(t, "debugfs", "-R", "imap /"+p, path)
		m := imapRE.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("debugfs imap /%s: %s", p, out)
		}
		blk, _ := strconv.Atoi(m[1])
		off, _ := strconv.ParseInt(m[2], 16, 64)
		d.ioff[p] = blk*d.bs + int(off)
		out = runTool(t, "debugfs", "-R", "stat /"+p, path)
		m = regexp.MustCompile(`Inode: (\d+)`).FindStringSubmatch(out)
		n, _ := strconv.Atoi(m[1])
		d.ino[p] = uint64(n)
	}
	var err error
	if d.img, err = os.ReadFile(path); err != nil {
		t.Fatal(err)
	}
	return d
}

func (d *damageImage) clone() []byte { return bytes.Clone(d.img) }

func TestDamage(t *testing.T) {
	d := newDamageImage(t)
	le := binary.LittleEndian
	sb := superOffset
	dataExt := d.ioff["data"] + 0x28 // extent header in i_block

	openErr := func(img []byte) error {
		_, err := Open(bytes.NewReader(img), int64(len(img)))
		return err
	}
	readErr := func(img []byte, ino uint64) error {
		fsys, err := Open(bytes.NewReader(img), int64(len(img)))
		if err != nil {
			return err
		}
		_, err = fsys.ReadAt(ino, make([]byte, 64<<10), 0)
		return err
	}
	dirErr := func(img []byte, ino uint64) error {
		fsys, err := Open(bytes.NewReader(img), int64(len(img)))
		if err != nil {
			return err
		}
		_, err = fsys.ReadDir(ino)
		if err == nil {
			_, err = fsys.Lookup(ino, "file3")
		}
		return err
	}
	cases := []struct {
		name   string
		damage func(b []byte)
		check  func(b []byte) error
		want   error
		inode  uint64 // the error must name this inode
	}{
		{"magic", func(b []byte) { b[sb+0x38] ^= 0xff }, openErr, guest.ErrUnknown, 0},
		{"block size", func(b []byte) { le.PutUint32(b[sb+0x18:], 30) }, openErr, guest.ErrCorrupt, 0},
		{"inodes per group", func(b []byte) { le.PutUint32(b[sb+0x28:], 0) }, openErr, guest.ErrCorrupt, 0},
		{"blocks per group", func(b []byte) { le.PutUint32(b[sb+0x20:], 1<<31) }, openErr, guest.ErrCorrupt, 0},
		{"inode size", func(b []byte) { le.PutUint16(b[sb+0x58:], 100) }, openErr, guest.ErrCorrupt, 0},
		{"block count", func(b []byte) { le.PutUint32(b[sb+0x4:], 0); le.PutUint32(b[sb+0x150:], 0) }, openErr, guest.ErrCorrupt, 0},
		{"extent magic", func(b []byte) { b[dataExt] ^= 0x55 },
			func(b []byte) error { return readErr(b, d.ino["data"]) }, guest.ErrCorrupt, d.ino["data"]},
		{"extent depth", func(b []byte) { le.PutUint16(b[dataExt+6:], 9) },
			func(b []byte) error { return readErr(b, d.ino["data"]) }, guest.ErrCorrupt, d.ino["data"]},
		{"extent entries", func(b []byte) { le.PutUint16(b[dataExt+2:], 200) },
			func(b []byte) error { return readErr(b, d.ino["data"]) }, guest.ErrCorrupt, d.ino["data"]},
		{"extent beyond end", func(b []byte) { le.PutUint32(b[dataExt+12+8:], 0xFFFFFF00) },
			func(b []byte) error { return readErr(b, d.ino["data"]) }, guest.ErrCorrupt, d.ino["data"]},
		{"extent loop", func(b []byte) {
			// Root becomes an index pointing at a node that points at itself.
			last := uint32(len(b)/d.bs - 1)
			le.PutUint16(b[dataExt+2:], 1)
			le.PutUint16(b[dataExt+6:], 1)
			le.PutUint32(b[dataExt+12:], 0)
			le.PutUint32(b[dataExt+16:], last)
			le.PutUint16(b[dataExt+20:], 0)
			node := b[int(last)*d.bs:]
			copy(node, b[dataExt:dataExt+24])
			le.PutUint16(node[4:], 340)
		}, func(b []byte) error { return readErr(b, d.ino["data"]) }, guest.ErrCorrupt, d.ino["data"]},
		{"dir record length", func(b []byte) {
			blk := le.Uint32(b[d.ioff["d"]+0x28+12+8:]) // first extent of /d
			le.PutUint16(b[int(blk)*d.bs+4:], 5)
		}, func(b []byte) error { return dirErr(b, d.ino["d"]) }, guest.ErrCorrupt, d.ino["d"]},
		{"dir record past block", func(b []byte) {
			blk := le.Uint32(b[d.ioff["d"]+0x28+12+8:])
			le.PutUint16(b[int(blk)*d.bs+4:], 8192)
		}, func(b []byte) error { return dirErr(b, d.ino["d"]) }, guest.ErrCorrupt, d.ino["d"]},
		{"truncated volume", func(b []byte) {}, func(b []byte) error {
			fsys, err := Open(bytes.NewReader(b[:len(b)/16]), int64(len(b)/16))
			if err != nil {
				return err
			}
			return walk(fsys, 1000, 1<<20)
		}, guest.ErrCorrupt, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			img := d.clone()
			c.damage(img)
			var err error
			inTime(t, func() { err = c.check(img) })
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
			if c.inode != 0 && !strings.Contains(err.Error(), "inode "+itoa(int(c.inode))) {
				t.Errorf("error does not name inode %d: %v", c.inode, err)
			}
		})
	}
}

// TestRandomDamage flips random bytes in the metadata area and walks the
// tree: any error is fine, a panic or a hang is not.
func TestRandomDamage(t *testing.T) {
	d := newDamageImage(t)
	r := rand.New(rand.NewPCG(7, 8))
	iters := 300
	if testing.Short() {
		iters = 60
	}
	img := d.clone()
	for range iters {
		type flip struct {
			at  int
			old byte
		}
		var flips []flip
		for range 1 + r.IntN(20) {
			at := r.IntN(300 * d.bs)
			flips = append(flips, flip{at, img[at]})
			img[at] ^= byte(1 + r.IntN(255))
		}
		inTime(t, func() {
			fsys, err := Open(bytes.NewReader(img), int64(len(img)))
			if err == nil {
				_ = walk(fsys, 200, 256<<10)
			}
		})
		for i := len(flips) - 1; i >= 0; i-- {
			img[flips[i].at] = flips[i].old
		}
	}
}

package ntfs

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"slices"
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
			_, err = fsys.Lookup(ino, "no such name")
			if !errors.Is(err, guest.ErrNotFound) {
				note(err)
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

// damageImage is the rich image in memory with the places a damage test
// breaks.
type damageImage struct {
	img  []byte
	fsys *FS
	rs   int
	ino  map[string]uint64
}

func newDamageImage(t *testing.T) *damageImage {
	path := richImage(t)
	img, err := os.ReadFile(path)
	must(t, err)
	fsys, err := Open(bytes.NewReader(img), int64(len(img)), Options{})
	must(t, err)
	d := &damageImage{img: img, fsys: fsys, rs: int(fsys.bt.recordSize), ino: map[string]uint64{}}
	for _, p := range []string{"small", "many", "f100000", "f4097", "streams", "comp/text", "f0", "junc", "frag"} {
		d.ino[p] = lookupPath(t, fsys, p)
	}
	return d
}

// volOff maps byte off of stream s to its byte on the volume.
func (d *damageImage) volOff(t *testing.T, s *stream, off uint64) int {
	cs := d.fsys.bt.clusterSize
	i := findRun(s.runs, off/cs)
	if i < 0 || s.runs[i].lcn == holeLCN {
		t.Fatalf("offset %d of stream %q is not on the volume", off, s.name)
	}
	r := s.runs[i]
	return int(r.lcn*cs + off - r.vcn*cs)
}

// record returns the volume offset of MFT record n.
func (d *damageImage) record(t *testing.T, n uint64) int {
	return d.volOff(t, d.fsys.mft, n*uint64(d.rs))
}

// attr returns the volume offset of the first attribute of type typ in
// MFT record n.
func (d *damageImage) attr(t *testing.T, b []byte, n uint64, typ uint32) int {
	le := binary.LittleEndian
	rec := d.record(t, n)
	for off := rec + int(le.Uint16(b[rec+0x14:])); le.Uint32(b[off:]) != atEnd; off += int(le.Uint32(b[off+4:])) {
		if le.Uint32(b[off:]) == typ {
			return off
		}
	}
	t.Fatalf("record %d has no attribute 0x%x", n, typ)
	return 0
}

// attrList returns the volume offsets of the entries of the attribute
// list of file p (resident, or in its first cluster).
func (d *damageImage) attrList(t *testing.T, b []byte, p string) []int {
	le := binary.LittleEndian
	a := d.attr(t, b, d.ino[p], atAttrList)
	var v, n int
	if b[a+8] == 0 {
		v, n = a+int(le.Uint16(b[a+0x14:])), int(le.Uint32(b[a+0x10:]))
	} else {
		runs, _, ok := decodeRuns(nil, b[a+int(le.Uint16(b[a+0x20:])):a+int(le.Uint32(b[a+4:]))], 0, d.fsys.bt.totalClusters)
		if !ok {
			t.Fatal("attribute list runlist")
		}
		v = int(runs[0].lcn * d.fsys.bt.clusterSize)
		n = min(int(le.Uint64(b[a+0x30:])), int(d.fsys.bt.clusterSize))
	}
	var out []int
	for off := 0; off+0x1A <= n; off += int(le.Uint16(b[v+off+4:])) {
		out = append(out, v+off)
	}
	if len(out) < 2 {
		t.Fatalf("%s: attribute list of %d entries", p, len(out))
	}
	return out
}

// logs collects what a reader logs.
type logs struct {
	mu    sync.Mutex
	lines []string
}

func (l *logs) logf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
}

func (l *logs) has(s string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, x := range l.lines {
		if strings.Contains(x, s) {
			return true
		}
	}
	return false
}

func names(ents []guest.DirEntry) []string {
	var out []string
	for _, e := range ents {
		out = append(out, e.Name)
	}
	return out
}

// TestDamageItems breaks one record, index block, runlist or unit at a
// time and checks that only that item fails, with ErrCorrupt naming it,
// and that a listing leaves a broken entry out and logs it.
func TestDamageItems(t *testing.T) {
	d := newDamageImage(t)
	le := binary.LittleEndian
	rootNames := func(t *testing.T, fsys *FS) []string {
		ents, err := fsys.ReadDir(fsys.Root())
		must(t, err)
		return names(ents)
	}
	full := rootNames(t, d.fsys)
	manyEnts, err := d.fsys.ReadDir(d.ino["many"])
	must(t, err)
	without := func(list []string, name string) []string {
		return slices.DeleteFunc(slices.Clone(list), func(s string) bool { return s == name })
	}
	cases := []struct {
		name   string
		damage func(t *testing.T, b []byte)
		check  func(t *testing.T, fsys *FS, l *logs)
	}{
		{"record fixup", func(t *testing.T, b []byte) {
			b[d.record(t, d.ino["small"])+sectorSize-1] ^= 0xFF // the word the update sequence guards
		}, func(t *testing.T, fsys *FS, l *logs) {
			_, err := fsys.Stat(d.ino["small"])
			wantCorrupt(t, err, fmt.Sprintf("MFT record %d: update sequence mismatch", d.ino["small"]))
			_, err = fsys.ReadAt(d.ino["small"], make([]byte, 10), 0)
			wantCorrupt(t, err, "update sequence")
			if got := rootNames(t, fsys); !slices.Equal(got, without(full, "small")) {
				t.Errorf("root lists %q", got)
			}
			if !l.has(`entry "small"`) {
				t.Errorf("no log line names the entry left out: %q", l.lines)
			}
			_, err = fsys.Lookup(fsys.Root(), "small")
			wantCorrupt(t, err, "update sequence")
			if _, err := fsys.Lookup(fsys.Root(), "nonexistent"); !errors.Is(err, guest.ErrNotFound) {
				t.Errorf("lookup of a name never there: %v", err)
			}
			if err := walk(fsys, 1000, 64<<10); err != nil {
				t.Errorf("walk meets another error: %v", err)
			}
		}},
		{"record magic", func(t *testing.T, b []byte) {
			copy(b[d.record(t, d.ino["f0"]):], "BAAD")
		}, func(t *testing.T, fsys *FS, l *logs) {
			_, err := fsys.Stat(d.ino["f0"])
			wantCorrupt(t, err, "marked bad")
			if got := rootNames(t, fsys); !slices.Equal(got, without(full, "f0")) {
				t.Errorf("root lists %q", got)
			}
		}},
		{"stale entry", func(t *testing.T, b []byte) {
			off := d.record(t, d.ino["f0"]) + 0x10
			le.PutUint16(b[off:], le.Uint16(b[off:])+1) // the record was reused
		}, func(t *testing.T, fsys *FS, l *logs) {
			if got := rootNames(t, fsys); !slices.Equal(got, without(full, "f0")) {
				t.Errorf("root lists %q", got)
			}
			_, err := fsys.Lookup(fsys.Root(), "f0")
			wantCorrupt(t, err, "stale entry")
			if !l.has("stale entry") {
				t.Errorf("not logged: %q", l.lines)
			}
		}},
		{"index block fixup", func(t *testing.T, b []byte) {
			in, err := d.fsys.inode(d.ino["many"])
			must(t, err)
			b[d.volOff(t, in.indexAlloc, 0)+2*sectorSize-2] ^= 0x55
		}, func(t *testing.T, fsys *FS, l *logs) {
			ents, err := fsys.ReadDir(d.ino["many"])
			must(t, err)
			got := names(ents)
			all := names(manyEnts)
			if len(got) == 0 || len(got) >= len(all) {
				t.Fatalf("many lists %d of %d entries", len(got), len(all))
			}
			for _, n := range got {
				if !slices.Contains(all, n) {
					t.Errorf("many lists %q, not in the volume", n)
				}
			}
			if !l.has("index block 0: ") || !l.has("update sequence mismatch") {
				t.Errorf("not logged: %q", l.lines)
			}
			for _, n := range all {
				ino, err := fsys.Lookup(d.ino["many"], n)
				if slices.Contains(got, n) {
					if err != nil || ino == 0 {
						t.Errorf("lookup %q: %v", n, err)
					}
				} else {
					wantCorrupt(t, err, "part of its index that could be read")
				}
			}
			if got := rootNames(t, fsys); !slices.Equal(got, full) {
				t.Errorf("the root changed: %q", got)
			}
		}},
		{"index block vcn", func(t *testing.T, b []byte) {
			in, err := d.fsys.inode(d.ino["many"])
			must(t, err)
			b[d.volOff(t, in.indexAlloc, 0)+0x10] ^= 0x7
		}, func(t *testing.T, fsys *FS, l *logs) {
			ents, err := fsys.ReadDir(d.ino["many"])
			must(t, err)
			if len(ents) >= len(manyEnts) || !l.has("holds VCN") {
				t.Errorf("many lists %d of %d entries; logs %q", len(ents), len(manyEnts), l.lines)
			}
		}},
		{"runlist outside the volume", func(t *testing.T, b []byte) {
			a := d.attr(t, b, d.ino["f100000"], atData)
			mp := a + int(le.Uint16(b[a+0x20:]))
			h := b[mp]
			ls, os := int(h&0xF), int(h>>4)
			b[mp+ls+os] = 0x7F // the top byte of the first cluster number
		}, func(t *testing.T, fsys *FS, l *logs) {
			a, err := fsys.Stat(d.ino["f100000"])
			if err != nil || a.Size != 100000 {
				t.Errorf("stat: %+v, %v", a, err)
			}
			_, err = fsys.ReadAt(d.ino["f100000"], make([]byte, 4096), 0)
			wantCorrupt(t, err, "runlist")
			_, _, err = fsys.NextData(d.ino["f100000"], 0)
			wantCorrupt(t, err, "runlist")
		}},
		{"huge sizes", func(t *testing.T, b []byte) {
			a := d.attr(t, b, d.ino["f100000"], atData)
			for _, o := range []int{0x28, 0x30, 0x38} {
				le.PutUint64(b[a+o:], 1<<62)
			}
		}, func(t *testing.T, fsys *FS, l *logs) {
			_, err := fsys.ReadAt(d.ino["f100000"], make([]byte, 4096), 1<<40)
			wantCorrupt(t, err, "clusters mapped")
		}},
		{"index allocation with a huge hole", func(t *testing.T, b []byte) {
			a := d.attr(t, b, d.ino["many"], atIndexAlloc)
			mp := a + int(le.Uint16(b[a+0x20:]))
			copy(b[mp:], []byte{0x05, 0, 0, 0, 0, 1, 0}) // one hole of 2^32 clusters
			le.PutUint64(b[a+0x18:], 1<<32-1)            // highest VCN
			for _, o := range []int{0x28, 0x30, 0x38} {
				le.PutUint64(b[a+o:], 1<<32*d.fsys.bt.clusterSize)
			}
		}, func(t *testing.T, fsys *FS, l *logs) {
			ents, err := fsys.ReadDir(d.ino["many"])
			must(t, err)
			if len(ents) >= len(manyEnts) || !l.has("has holes") {
				t.Errorf("many lists %d entries; logs %q", len(ents), l.lines)
			}
		}},
		{"attribute list names another file", func(t *testing.T, b []byte) {
			for _, e := range d.attrList(t, b, "frag") {
				if mrefNum(le.Uint64(b[e+0x10:])) != d.ino["frag"] {
					le.PutUint64(b[e+0x10:], d.ino["small"])
					return
				}
			}
			t.Fatal("no extension record in the list")
		}, func(t *testing.T, fsys *FS, l *logs) {
			_, err := fsys.Stat(d.ino["frag"])
			wantCorrupt(t, err, "does not belong")
			if _, err := fsys.Stat(d.ino["small"]); err != nil {
				t.Errorf("small: %v", err)
			}
		}},
		{"attribute list names itself", func(t *testing.T, b []byte) {
			self := d.ino["frag"] | uint64(le.Uint16(b[d.record(t, d.ino["frag"])+0x10:]))<<48
			for _, e := range d.attrList(t, b, "frag") {
				le.PutUint64(b[e+0x10:], self)
			}
		}, func(t *testing.T, fsys *FS, l *logs) {
			// Nothing to follow: the base record alone maps too little.
			_, err := fsys.ReadAt(d.ino["frag"], make([]byte, 100), 3*4096*1100)
			wantCorrupt(t, err, "clusters mapped")
		}},
		{"attribute list entry length", func(t *testing.T, b []byte) {
			e := d.attrList(t, b, "frag")[1]
			le.PutUint16(b[e+4:], 0)
		}, func(t *testing.T, fsys *FS, l *logs) {
			_, err := fsys.Stat(d.ino["frag"])
			wantCorrupt(t, err, "attribute list entry of length 0")
		}},
		{"compression unit", func(t *testing.T, b []byte) {
			in, err := d.fsys.inode(d.ino["comp/text"])
			must(t, err)
			k, pieces, err := d.fsys.unitLayout(in.ino, in.data, 1)
			must(t, err)
			if k != unitCompressed {
				t.Fatalf("unit 1 of comp/text is kind %d", k)
			}
			le.PutUint16(b[pieces[0].Off:], 0xBFFF) // a chunk longer than the unit's data
		}, func(t *testing.T, fsys *FS, l *logs) {
			ub := int64(fsys.bt.clusterSize << stdCUShift)
			_, err := fsys.ReadAt(d.ino["comp/text"], make([]byte, 100), ub+10)
			wantCorrupt(t, err, "compression unit 1: malformed LZNT1")
			for _, off := range []int64{0, 2 * ub, 3*ub + 5} {
				if _, err := fsys.ReadAt(d.ino["comp/text"], make([]byte, 100), off); err != nil {
					t.Errorf("read at %d: %v", off, err)
				}
			}
		}},
		{"encrypted", func(t *testing.T, b []byte) {
			a := d.attr(t, b, d.ino["f4097"], atData)
			le.PutUint16(b[a+0xC:], attrEncrypted)
		}, func(t *testing.T, fsys *FS, l *logs) {
			_, err := fsys.ReadAt(d.ino["f4097"], make([]byte, 100), 0)
			if !errors.Is(err, errEncrypted) {
				t.Errorf("read: %v", err)
			}
		}},
		{"reparse data", func(t *testing.T, b []byte) {
			a := d.attr(t, b, d.ino["junc"], atReparse)
			v := a + int(le.Uint16(b[a+0x14:]))
			le.PutUint16(b[v+4:], 3) // data length disagrees with the value
		}, func(t *testing.T, fsys *FS, l *logs) {
			got, err := fsys.Readlink(d.ino["junc"])
			if err != nil || got != "unsupported reparse tag 0xa0000003" {
				t.Errorf("readlink: %q, %v", got, err)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			img := bytes.Clone(d.img)
			c.damage(t, img)
			l := &logs{}
			var fsys *FS
			inTime(t, func() {
				var err error
				if fsys, err = Open(bytes.NewReader(img), int64(len(img)), Options{Logf: l.logf}); err != nil {
					t.Errorf("Open: %v", err)
					return
				}
				c.check(t, fsys, l)
			})
		})
	}
}

func wantCorrupt(t *testing.T, err error, says string) {
	t.Helper()
	if !errors.Is(err, guest.ErrCorrupt) {
		t.Errorf("got %v, want an error wrapping ErrCorrupt", err)
	} else if !strings.Contains(err.Error(), says) {
		t.Errorf("error %q does not say %q", err, says)
	}
}

// TestDamageOpen breaks what Open needs: the boot sector, the $MFT and
// root records.
func TestDamageOpen(t *testing.T) {
	d := newDamageImage(t)
	le := binary.LittleEndian
	cases := []struct {
		name   string
		damage func(b []byte)
		want   error
	}{
		{"oem id", func(b []byte) { copy(b[3:], "MSDOS5.0") }, guest.ErrUnknown},
		{"bytes per sector", func(b []byte) { le.PutUint16(b[0x0B:], 300) }, guest.ErrCorrupt},
		{"sectors per cluster", func(b []byte) { b[0x0D] = 3 }, guest.ErrCorrupt},
		{"record size", func(b []byte) { b[0x40] = 0x7F }, guest.ErrCorrupt},
		{"mft cluster", func(b []byte) { le.PutUint64(b[0x30:], 1<<40) }, guest.ErrCorrupt},
		{"mft record", func(b []byte) { b[d.record(t, 0)+sectorSize-2] ^= 1 }, guest.ErrCorrupt},
		{"mft runlist", func(b []byte) {
			a := d.attr(t, b, 0, atData)
			b[a+int(le.Uint16(b[a+0x20:]))] = 0x0F
		}, guest.ErrCorrupt},
		{"root record", func(b []byte) { b[d.record(t, RootIno)+sectorSize-1] ^= 1 }, guest.ErrCorrupt},
		{"root not a directory", func(b []byte) {
			off := d.record(t, RootIno) + 0x16
			le.PutUint16(b[off:], recInUse)
		}, guest.ErrCorrupt},
		{"too small", func(b []byte) {}, guest.ErrUnknown},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			img := bytes.Clone(d.img)
			c.damage(img)
			if c.name == "too small" {
				img = img[:100]
			}
			_, err := Open(bytes.NewReader(img), int64(len(img)), Options{})
			if !errors.Is(err, c.want) {
				t.Errorf("got %v, want %v", err, c.want)
			}
		})
	}
	// A truncated volume opens; what lies past its end is ErrCorrupt.
	img := d.img[:len(d.img)/3]
	fsys, err := Open(bytes.NewReader(img), int64(len(img)), Options{})
	must(t, err)
	if err := walk(fsys, 1000, 64<<10); !errors.Is(err, guest.ErrCorrupt) {
		t.Errorf("walk of a truncated volume: %v", err)
	}
}

// TestRandomDamage flips random bytes in the MFT and the index blocks
// and walks the tree: any error is fine, a panic or a hang is not.
func TestRandomDamage(t *testing.T) {
	d := newDamageImage(t)
	var meta []int
	for n := uint64(0); n < 120; n++ {
		meta = append(meta, d.record(t, n))
	}
	for _, p := range []string{"many"} {
		in, err := d.fsys.inode(d.ino[p])
		must(t, err)
		for off := uint64(0); off < in.indexAlloc.size; off += 4096 {
			meta = append(meta, d.volOff(t, in.indexAlloc, off))
		}
	}
	r := rand.New(rand.NewPCG(7, 8))
	iters := 200
	if testing.Short() {
		iters = 50
	}
	img := bytes.Clone(d.img)
	for range iters {
		type flip struct {
			at  int
			old byte
		}
		var flips []flip
		for range 1 + r.IntN(20) {
			at := meta[r.IntN(len(meta))] + r.IntN(d.rs)
			flips = append(flips, flip{at, img[at]})
			img[at] ^= byte(1 + r.IntN(255))
		}
		inTime(t, func() {
			fsys, err := Open(bytes.NewReader(img), int64(len(img)), Options{})
			if err == nil {
				_ = walk(fsys, 200, 128<<10)
			}
		})
		for i := len(flips) - 1; i >= 0; i-- {
			img[flips[i].at] = flips[i].old
		}
	}
}

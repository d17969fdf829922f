package xfs

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cairn-backup/cairn/fs/guest"
)

// packExtent packs a block map record as XFS keeps it.
func packExtent(b []byte, off, fsb, n uint64, unwritten bool) {
	l0 := off<<9 | fsb>>43
	if unwritten {
		l0 |= 1 << 63
	}
	binary.BigEndian.PutUint64(b, l0)
	binary.BigEndian.PutUint64(b[8:], (fsb&(1<<43-1))<<21|n)
}

// TestBtreeFile gives a file a two-level block map btree with holes and
// unwritten extents (mkfs.xfs -p writes every file in one extent, so the
// test builds the tree itself, the way XFS lays it out), checks with
// xfs_db that XFS reads the same map, and reads the file through it.
func TestBtreeFile(t *testing.T) {
	for _, v5 := range []bool{true, false} {
		t.Run(map[bool]string{true: "v5", false: "v4"}[v5], func(t *testing.T) {
			t.Parallel()
			testBtreeFile(t, v5)
		})
	}
}

func testBtreeFile(t *testing.T, v5 bool) {
	const nblk = 600
	src := t.TempDir()
	r := rand.New(rand.NewPCG(9, 9))
	data := randBytes(r, nblk*4096)
	writeFile(t, filepath.Join(src, "frag"), data)
	writeFile(t, filepath.Join(src, "other"), []byte("other"))
	if err := os.Mkdir(filepath.Join(src, "spares"), 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		writeFile(t, filepath.Join(src, "spares", "s"+itoa(i)), randBytes(r, 4096))
	}
	writeFile(t, xattrSpecPath(src), nil)
	opts := []string{"-b", "size=4096"}
	if !v5 {
		opts = append(opts, "-m", "crc=0")
	}
	im := mkfs(t, src, "64m", opts...)
	exts := xfsBmap(t, im.path, "path /frag")
	if len(exts) != 1 || exts[0].n != nblk {
		t.Fatalf("frag has extents %v", exts)
	}
	base := exts[0].fsb
	// Records: runs of 1 to 3 blocks at their original place, holes of 0
	// or 1 block between them, every seventh run unwritten.
	type rec struct {
		off, n    uint64
		unwritten bool
	}
	var recs []rec
	for l, i := uint64(0), 0; l < nblk-8; i++ {
		n := uint64(1 + i%3)
		recs = append(recs, rec{l, n, i%7 == 3})
		l += n + uint64(i%2)
	}
	var spare [3]uint64
	for i := range spare {
		spare[i] = xfsBmap(t, im.path, "path /spares/s"+itoa(i))[0].fsb
	}
	node, leaves := spare[0], spare[1:]
	f, err := os.OpenFile(im.path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sb := make([]byte, 512)
	if _, err := f.ReadAt(sb, 0); err != nil {
		t.Fatal(err)
	}
	be := binary.BigEndian
	bs := int64(4096)
	hdr, magic := 24, uint32(0x424D4150)
	if v5 {
		hdr, magic = 72, 0x424D4133
	}
	ino := xfsIno(t, im.path, "frag")
	crc := crc32.MakeTable(crc32.Castagnoli)
	block := func(fsb uint64, level, n int, left, right uint64) []byte {
		b := make([]byte, bs)
		be.PutUint32(b, magic)
		be.PutUint16(b[4:], uint16(level))
		be.PutUint16(b[6:], uint16(n))
		be.PutUint64(b[8:], left)
		be.PutUint64(b[16:], right)
		if v5 {
			be.PutUint64(b[24:], uint64(byteOf(t, im.path, fsb)/512))
			copy(b[40:56], sb[0x20:0x30])
			be.PutUint64(b[56:], ino)
		}
		return b
	}
	seal := func(fsb uint64, b []byte) {
		if v5 {
			binary.LittleEndian.PutUint32(b[64:], crc32.Checksum(b, crc))
		}
		if _, err := f.WriteAt(b, byteOf(t, im.path, fsb)); err != nil {
			t.Fatal(err)
		}
	}
	const null = ^uint64(0)
	half := len(recs) / 2
	parts := [][]rec{recs[:half], recs[half:]}
	maxRecs := (int(bs) - hdr) / 16
	nb := block(node, 1, 2, null, null)
	for i, part := range parts {
		left, right := null, null
		if i == 0 {
			right = leaves[1]
		} else {
			left = leaves[0]
		}
		lb := block(leaves[i], 0, len(part), left, right)
		for j, r := range part {
			packExtent(lb[hdr+16*j:], r.off, base+r.off, r.n, r.unwritten)
		}
		seal(leaves[i], lb)
		be.PutUint64(nb[hdr+8*i:], part[0].off)
		be.PutUint64(nb[hdr+8*maxRecs+8*i:], leaves[i])
	}
	seal(node, nb)
	// The inode: btree format, a root of level 2 with one pointer.
	m := convertRE.FindStringSubmatch(xfsDB(t, im.path, fmt.Sprintf("convert inode %d byte", ino)))
	var ioff int64
	fmt.Sscan(m[1], &ioff)
	isize := int(be.Uint16(sb[0x68:]))
	in := make([]byte, isize)
	if _, err := f.ReadAt(in, ioff); err != nil {
		t.Fatal(err)
	}
	core := 100
	if v5 {
		core = 176
	}
	if in[0x52] != 0 {
		t.Fatal("frag has an attribute fork")
	}
	in[5] = 3
	be.PutUint32(in[0x4C:], uint32(len(recs)))
	fork := in[core:]
	clear(fork)
	be.PutUint16(fork, 2)
	be.PutUint16(fork[2:], 1)
	be.PutUint64(fork[4:], 0)
	be.PutUint64(fork[4+8*((len(fork)-4)/16):], node)
	if v5 {
		binary.LittleEndian.PutUint32(in[0x64:], 0)
		binary.LittleEndian.PutUint32(in[0x64:], crc32.Checksum(in, crc))
	}
	if _, err := f.WriteAt(in, ioff); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}

	// xfs_db walks the same tree to the same map.
	got := xfsBmap(t, im.path, "path /frag")
	if len(got) != len(recs) {
		t.Fatalf("xfs_db reads %d extents, %d written", len(got), len(recs))
	}
	for i, e := range got {
		if e.off != recs[i].off || e.n != recs[i].n || e.fsb != base+recs[i].off || e.unwritten != recs[i].unwritten {
			t.Fatalf("xfs_db extent %d: %+v, written %+v", i, e, recs[i])
		}
	}
	if v5 {
		for _, c := range []struct {
			fsb uint64
			typ string
		}{{node, "bmapbtd"}, {leaves[0], "bmapbtd"}, {leaves[1], "bmapbtd"}} {
			if out := xfsDB(t, im.path, fmt.Sprintf("fsblock %d", c.fsb), "type "+c.typ, "print crc"); !strings.Contains(out, "(correct)") {
				t.Fatalf("xfs_db: block %d: %s", c.fsb, out)
			}
		}
	}

	// Expected contents: written runs keep their data, the rest is zero.
	want := make([]byte, len(data))
	var ranges [][2]int64
	for _, e := range got {
		s, end := int64(e.off)*bs, int64(e.off+e.n)*bs
		if e.unwritten {
			continue
		}
		copy(want[s:end], data[s:end])
		if k := len(ranges) - 1; k >= 0 && ranges[k][1] == s {
			ranges[k][1] = end
		} else {
			ranges = append(ranges, [2]int64{s, end})
		}
	}
	fsys := openImage(t, im.path)
	fino := lookupPath(t, fsys, "frag")
	buf := make([]byte, len(data)+1)
	if n, err := fsys.ReadAt(fino, buf, 0); n != len(data) || err != io.EOF || !bytes.Equal(buf[:n], want) {
		t.Fatalf("ReadAt: %d, %v, equal %v", n, err, bytes.Equal(buf[:n], want))
	}
	for range 200 {
		off := r.Int64N(int64(len(data)))
		n := min(r.Int64N(20000), int64(len(data))-off)
		if k, _ := fsys.ReadAt(fino, buf[:n], off); int64(k) != n || !bytes.Equal(buf[:n], want[off:off+n]) {
			t.Fatalf("ReadAt(%d, %d) wrong", off, n)
		}
	}
	var gotRanges [][2]int64
	for off := int64(0); off < int64(len(data)); {
		s, e, err := fsys.NextData(fino, off)
		if err != nil {
			t.Fatal(err)
		}
		if s >= int64(len(data)) {
			break
		}
		if e <= off || s < off {
			t.Fatalf("NextData(%d) = [%d, %d)", off, s, e)
		}
		if k := len(gotRanges) - 1; k >= 0 && gotRanges[k][1] == s {
			gotRanges[k][1] = e
		} else {
			gotRanges = append(gotRanges, [2]int64{s, e})
		}
		off = e
	}
	if !slices.Equal(gotRanges, ranges) {
		t.Errorf("NextData ranges %v, want %v", gotRanges, ranges)
	}
	mapped, err := fsys.MapFile(nil, fino, 0, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	first := byteOf(t, im.path, base)
	for _, e := range mapped {
		rel := e.Off - first
		if rel < 0 || rel+e.Len > int64(len(data)) || !bytes.Equal(want[rel:rel+e.Len], data[rel:rel+e.Len]) {
			t.Errorf("MapFile extent %+v outside the written data", e)
		}
	}
	compareFile := func(p string) {
		ino := lookupPath(t, fsys, p)
		b := make([]byte, 10)
		if n, err := fsys.ReadAt(ino, b, 0); n != 5 || err != io.EOF || string(b[:5]) != "other" {
			t.Errorf("%s: %q, %v", p, b[:n], err)
		}
	}
	compareFile("other")

	// A pointer from the node back to itself is caught by the levels: the
	// second half fails, the first half and other files still read.
	img, err := os.ReadFile(im.path)
	if err != nil {
		t.Fatal(err)
	}
	nodeAt := byteOf(t, im.path, node)
	be.PutUint64(img[nodeAt+int64(hdr+8*maxRecs+8):], node)
	if v5 {
		binary.LittleEndian.PutUint32(img[nodeAt+64:], 0)
		binary.LittleEndian.PutUint32(img[nodeAt+64:], crc32.Checksum(img[nodeAt:nodeAt+bs], crc))
	}
	bad, err := Open(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bad.ReadAt(fino, buf[:4096], 0); err != nil {
		t.Errorf("first half: %v", err)
	}
	_, err = bad.ReadAt(fino, buf, 0)
	if !errors.Is(err, guest.ErrCorrupt) || !strings.Contains(err.Error(), "level") {
		t.Errorf("looping btree: %v", err)
	}
}

// TestReflink: two files of a reflink filesystem share their blocks.
// mkfs.xfs -p cannot share extents, so xfs_db points the clone's extent
// at the original's blocks and marks both inodes reflinked (the refcount
// btree is left as it is: a reader never consults it). Reading a shared
// extent is an extent read like any other; the test checks that nothing
// in the reflink filesystem's layout stops it.
func TestReflink(t *testing.T) {
	src := t.TempDir()
	r := rand.New(rand.NewPCG(4, 4))
	orig := randBytes(r, 5*4096)
	writeFile(t, filepath.Join(src, "orig"), orig)
	writeFile(t, filepath.Join(src, "clone"), randBytes(r, 5*4096))
	writeFile(t, xattrSpecPath(src), nil)
	im := mkfs(t, src, "64m", "-m", "reflink=1")
	o := xfsBmap(t, im.path, "path /orig")
	if len(o) != 1 {
		t.Fatalf("orig extents %v", o)
	}
	xfsDBWrite(t, im.path, "path /clone", fmt.Sprintf("write u3.bmx[0].startblock %d", o[0].fsb), "write v3.reflink 1",
		"path /orig", "write v3.reflink 1")
	if c := xfsBmap(t, im.path, "path /clone"); len(c) != 1 || c[0].fsb != o[0].fsb {
		t.Fatalf("clone extents %v, orig %v", c, o)
	}
	fsys := openImage(t, im.path)
	for _, p := range []string{"orig", "clone"} {
		ino := lookupPath(t, fsys, p)
		b := make([]byte, len(orig)+1)
		if n, err := fsys.ReadAt(ino, b, 0); n != len(orig) || err != io.EOF || !bytes.Equal(b[:n], orig) {
			t.Errorf("%s: %d, %v, equal %v", p, n, err, bytes.Equal(b[:n], orig))
		}
		m, err := fsys.MapFile(nil, ino, 0, int64(len(orig)))
		if want := byteOf(t, im.path, o[0].fsb); err != nil || len(m) != 1 || m[0].Off != want {
			t.Errorf("%s: MapFile %v, %v; want one extent at %d", p, m, err, want)
		}
	}
}

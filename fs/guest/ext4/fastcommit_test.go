package ext4

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// No tool writes fast commits without mounting, so these tests write
// them: fcWriter lays out tags as the kernel's ext4_fc_perform_commit
// does (never across a block, the last byte of a block unused, a PAD to
// fill, a TAIL with the transaction ID and the crc32c of the tags since
// the previous tail), from the documented format. e2fsck's replay is the
// reference for what they mean; it checks the checksums too, so a
// mistake in the writer shows as a test failure, not as agreement.
type fcWriter struct {
	bs     int
	blocks [][]byte
	off    int // in the last block
	crc    uint32
	tailAt []byte // the crc of the last tail written
}

func newFCWriter(bs int) *fcWriter { return &fcWriter{bs: bs} }

func (w *fcWriter) room(n int) {
	if len(w.blocks) == 0 || w.off+fcTagLen+n > w.bs-1 {
		if len(w.blocks) > 0 && w.bs-1-w.off >= fcTagLen {
			pad := w.bs - 1 - w.off - fcTagLen
			w.put(fcPad, make([]byte, pad))
		}
		w.blocks = append(w.blocks, make([]byte, w.bs))
		w.off = 0
	}
}

func (w *fcWriter) put(tag uint16, val []byte) {
	b := w.blocks[len(w.blocks)-1][w.off:]
	binary.LittleEndian.PutUint16(b, tag)
	binary.LittleEndian.PutUint16(b[2:], uint16(len(val)))
	copy(b[fcTagLen:], val)
	w.crc = crc32c(w.crc, b[:fcTagLen+len(val)])
	w.off += fcTagLen + len(val)
}

func (w *fcWriter) add(tag uint16, val []byte) {
	w.room(len(val))
	w.put(tag, val)
}

func le32s(vs ...uint32) []byte {
	var b []byte
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint32(b, v)
	}
	return b
}

func (w *fcWriter) head(tid uint32) { w.add(fcHead, le32s(0, tid)) }

// fcExtent is one extent of a file, as ADD_RANGE logs it.
type fcExtent struct {
	lblk, pblk, n uint64
	unwritten     bool
}

// extentList reads every extent of in's tree, in logical order.
func extentList(t *testing.T, fs *FS, in *inode) []fcExtent {
	t.Helper()
	var out []fcExtent
	for lblk := uint64(0); lblk < 1<<32; {
		r, err := fs.mapExtent(in, lblk)
		if err != nil {
			t.Fatal(err)
		}
		if r.n >= noMoreBlocks {
			break
		}
		if !r.zero || r.phys != 0 {
			out = append(out, fcExtent{lblk, r.phys, r.n, r.zero})
		}
		lblk += r.n
	}
	return out
}

func (w *fcWriter) addRange(ino uint32, x fcExtent) {
	n := uint16(x.n)
	if x.unwritten {
		n += initMaxLen
	}
	v := le32s(ino, uint32(x.lblk))
	v = binary.LittleEndian.AppendUint16(v, n)
	v = binary.LittleEndian.AppendUint16(v, uint16(x.pblk>>32))
	v = binary.LittleEndian.AppendUint32(v, uint32(x.pblk))
	w.add(fcAddRange, v)
}

func (w *fcWriter) delRange(ino, lblk, n uint32) { w.add(fcDelRange, le32s(ino, lblk, n)) }

func (w *fcWriter) dentry(tag uint16, parent, ino uint32, name string) {
	w.add(tag, append(le32s(parent, ino), name...))
}

func (w *fcWriter) inode(ino uint32, raw []byte) {
	n := goodOldInodeSize + int(binary.LittleEndian.Uint16(raw[0x80:]))
	w.add(fcInode, append(le32s(ino), raw[:n]...))
}

// tail ends a fast commit of transaction tid: its value runs to the
// end of the block, the next commit starts a block.
func (w *fcWriter) tail(tid uint32) {
	w.room(8)
	b := w.blocks[len(w.blocks)-1][w.off:]
	n := w.bs - 1 - w.off - fcTagLen
	binary.LittleEndian.PutUint16(b, fcTail)
	binary.LittleEndian.PutUint16(b[2:], uint16(n))
	binary.LittleEndian.PutUint32(b[4:], tid)
	w.crc = crc32c(w.crc, b[:8])
	binary.LittleEndian.PutUint32(b[8:], w.crc)
	w.tailAt = b[8:12]
	w.crc = 0
	w.off = w.bs // the next tag takes a new block
}

// fcImage is a fast_commit filesystem and, made from it with debugfs, the
// state its fast commits are to bring.
type fcImage struct {
	base, changed string
	bfs, cfs      *FS
}

func newFCImage(t *testing.T) *fcImage {
	t.Helper()
	needTool(t, "debugfs")
	src := t.TempDir()
	os.Mkdir(filepath.Join(src, "d"), 0o755)
	writeFile(t, filepath.Join(src, "keep.txt"), []byte("unchanged\n"))
	writeFile(t, filepath.Join(src, "gone.txt"), []byte("to be removed\n"))
	writeFile(t, filepath.Join(src, "old.txt"), []byte("linked twice\n"))
	writeFile(t, filepath.Join(src, "grow.txt"), bytes.Repeat([]byte("G"), 4096))
	writeFile(t, filepath.Join(src, "holey.txt"), bytes.Repeat([]byte("H"), 3*4096))
	base := mkfs(t, "mkfs.ext4", src, "32M", "-b", "4096", "-O", "fast_commit")
	changed := filepath.Join(t.TempDir(), "changed.img")
	copyFile(t, base, changed)
	data := filepath.Join(t.TempDir(), "new")
	writeFile(t, data, bytes.Repeat([]byte("new data "), 1500))
	debugfsScript(t, changed,
		"write "+data+" /d/new.txt",
		"rm /gone.txt",
		"ln /old.txt /d/linked.txt", "sif /old.txt links_count 2",
		"fallocate /grow.txt 1 2", "sif /grow.txt size 12288",
		"punch /holey.txt 1 1")
	return &fcImage{base: base, changed: changed, bfs: openImage(t, base), cfs: openImage(t, changed)}
}

func (c *fcImage) ino(t *testing.T, p string) uint32 { return uint32(lookupPath(t, c.cfs, p)) }

func (c *fcImage) raw(t *testing.T, p string) []byte {
	t.Helper()
	b, err := c.cfs.rawInode(uint64(c.ino(t, p)))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (c *fcImage) extents(t *testing.T, p string) []fcExtent {
	t.Helper()
	in, err := c.cfs.inode(uint64(c.ino(t, p)))
	if err != nil {
		t.Fatal(err)
	}
	return extentList(t, c.cfs, in)
}

// commit writes, as the kernel orders them, the tags bringing the base
// image to the changed one: a created file's ranges, inode and name;
// then unlinks and links; then each changed file's ranges and inode.
func (c *fcImage) commit(t *testing.T, w *fcWriter) {
	t.Helper()
	root, d := uint32(rootIno), c.ino(t, "d")
	nw := c.ino(t, "d/new.txt")
	for _, x := range c.extents(t, "d/new.txt") {
		w.addRange(nw, x)
	}
	w.inode(nw, c.raw(t, "d/new.txt"))
	w.dentry(fcCreat, d, nw, "new.txt")
	w.dentry(fcUnlink, root, uint32(lookupPath(t, c.bfs, "gone.txt")), "gone.txt")
	w.dentry(fcLink, d, c.ino(t, "old.txt"), "linked.txt")
	w.inode(c.ino(t, "old.txt"), c.raw(t, "old.txt"))
	for _, x := range c.extents(t, "grow.txt") {
		w.addRange(c.ino(t, "grow.txt"), x)
	}
	w.inode(c.ino(t, "grow.txt"), c.raw(t, "grow.txt"))
	w.delRange(c.ino(t, "holey.txt"), 1, 1)
	w.inode(c.ino(t, "holey.txt"), c.raw(t, "holey.txt"))
}

// craft returns the base image with the fast-commit blocks of w in its
// journal and the journal marked to recover, as a mounted kernel leaves
// it (checksums v3, 64bit, revoke, fast_commit), after transactions
// full ones committed through debugfs. Data blocks of the changed image
// that the ranges map are copied in place: the kernel writes data before
// it commits.
func (c *fcImage) craft(t *testing.T, full int, build func(tid uint32) *fcWriter) []byte {
	t.Helper()
	img := filepath.Join(t.TempDir(), "fc.img")
	copyFile(t, c.base, img)
	fsys := openImage(t, img)
	// jat returns the volume offset of journal block i.
	jat := func(i int) int {
		ext, err := fsys.MapFile(nil, uint64(fsys.sb.journalIno), int64(i)*4096, 4096)
		if err != nil || len(ext) != 1 {
			t.Fatalf("journal block %d: %v %v", i, ext, err)
		}
		return int(ext[0].Off)
	}
	at := jat(0)
	b := readFile(t, img)
	be := binary.BigEndian
	jsb := b[at:]
	be.PutUint32(jsb[0x28:], jbdFeatRevoke|jbdFeat64bit|jbdFeatCsumV3|jbdFeatFastComm)
	jsb[0x50] = jbdCRC32C
	be.PutUint32(jsb[0xFC:], crc32cSkip(^uint32(0), jsb[:1024], 0xFC, 4))
	writeFile(t, img, b)
	seq := be.Uint32(jsb[0x18:])
	if full > 0 {
		cmds := []string{"jo"}
		for i := range full {
			blk := strings.TrimSpace(debugfsOut(t, img, "bmap /keep.txt 0"))
			data := filepath.Join(t.TempDir(), "full"+strconv.Itoa(i))
			writeFile(t, data, append([]byte("from a full commit "+strconv.Itoa(i)+"\n"), make([]byte, 4096-20-len(strconv.Itoa(i)))...))
			cmds = append(cmds, "jw -b "+blk+" "+data)
		}
		debugfsScript(t, img, append(cmds, "jc")...)
	} else {
		debugfsScript(t, img, "feature needs_recovery")
	}
	b = readFile(t, img)
	jsb = b[at:]
	if full == 0 {
		be.PutUint32(jsb[0x1C:], be.Uint32(jsb[0x14:])) // s_start = s_first
		be.PutUint32(jsb[0xFC:], crc32cSkip(^uint32(0), jsb[:1024], 0xFC, 4))
	}
	w := build(seq + uint32(full))
	maxLen := int(be.Uint32(jsb[0x10:]))
	nfc := int(be.Uint32(jsb[0x54:]))
	if len(w.blocks) > nfc-1 {
		t.Fatalf("%d fast-commit blocks, room for %d", len(w.blocks), nfc-1)
	}
	for i, blk := range w.blocks {
		copy(b[jat(maxLen-nfc+1+i):], blk)
	}
	// The data the new ranges map, as written before the commit.
	cimg := readFile(t, c.changed)
	for _, p := range []string{"d/new.txt", "grow.txt"} {
		for _, x := range c.extents(t, p) {
			off := int(x.pblk) * 4096
			copy(b[off:off+int(x.n)*4096], cimg[off:])
		}
	}
	if dump := runTool(t, "dumpe2fs", "-h", writeTemp(t, b)); !strings.Contains(dump, "needs_recovery") || !strings.Contains(dump, "fast_commit") {
		t.Fatalf("crafted image needs no recovery:\n%s", dump)
	}
	return b
}

func writeTemp(t *testing.T, b []byte) string {
	p := filepath.Join(t.TempDir(), "img")
	writeFile(t, p, b)
	return p
}

// TestFastCommitReplay: a filesystem backed up with fast commits in its
// journal reads as e2fsck's replay leaves it: a file created with its
// data, a name unlinked, a hard link added, a file grown by unwritten
// blocks, a range punched; over a full transaction or none.
func TestFastCommitReplay(t *testing.T) {
	c := newFCImage(t)
	for _, full := range []int{0, 1} {
		t.Run("after "+itoa(full)+" full transactions", func(t *testing.T) {
			img := c.craft(t, full, func(tid uint32) *fcWriter {
				w := newFCWriter(4096)
				w.head(tid)
				c.commit(t, w)
				w.tail(tid)
				return w
			})
			ref, out := e2fsckReplay(t, img)
			rfs := openBytes(t, ref, nil)
			want := treeView(t, rfs)
			// The replay did what the tags say, so agreeing means something.
			if got := treeView(t, c.cfs); dropLines(got, "/keep.txt") != dropLines(want, "/keep.txt") {
				t.Fatalf("e2fsck's replay differs from the changed image:\n%s\n%s", diffLines(want, got), out)
			}
			log := &logRecorder{}
			fsys := openBytes(t, img, log)
			if err := fsys.JournalErr(); err != nil {
				t.Fatalf("JournalErr: %v (%q)", err, log.lines)
			}
			if got := treeView(t, fsys); got != want {
				t.Errorf("reads differently from e2fsck's replay:\n%s", diffLines(got, want))
			}
			// And as debugfs reads e2fsck's replay, byte for byte.
			for _, p := range []string{"d/new.txt", "d/linked.txt", "grow.txt", "holey.txt"} {
				if got, want := readAll(t, fsys, p), strings.TrimRight(debugfsOut(t, writeTemp(t, ref), "cat /"+p), "\x00"); got != want {
					t.Errorf("%s: %d bytes, debugfs cat of e2fsck's replay %d", p, len(got), len(want))
				}
			}
			for _, p := range []string{"d/new.txt", "old.txt", "grow.txt", "holey.txt"} {
				a, _ := fsys.Stat(lookupPath(t, fsys, p))
				r, _ := rfs.Stat(lookupPath(t, rfs, p))
				if a.Nlink != r.Nlink || a.Size != r.Size || a.Mode != r.Mode || a.Blocks != r.Blocks {
					t.Errorf("%s: %+v, e2fsck's replay %+v", p, a, r)
				}
			}
		})
	}
}

// dropLines removes the lines starting with prefix.
func dropLines(s, prefix string) string {
	var keep []string
	for _, l := range strings.Split(s, "\n") {
		if !strings.HasPrefix(l, prefix) {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

// TestFastCommitChecksums: fast commits count up to the last tail that
// checks out. A later commit whose tail does not is left out; a first
// one that does not fails the whole recovery (the full transactions
// too), as in the kernel and e2fsck; a head of an older transaction
// (an area left from before the last full commit) is no fast commit.
func TestFastCommitChecksums(t *testing.T) {
	c := newFCImage(t)
	unlinkOld := func(w *fcWriter) {
		w.dentry(fcUnlink, rootIno, c.ino(t, "old.txt"), "old.txt")
	}
	spoil := func(w *fcWriter) { w.tailAt[0] ^= 1 }
	for _, tc := range []struct {
		name   string
		full   int
		build  func(w *fcWriter, tid uint32)
		failed bool
		oracle bool // e2fsck replays it as the kernel does
		check  func(t *testing.T, fsys *FS)
	}{
		{"second commit's tail", 0, func(w *fcWriter, tid uint32) {
			w.head(tid)
			c.commit(t, w)
			w.tail(tid)
			unlinkOld(w)
			w.tail(tid)
			spoil(w)
		}, false, true, func(t *testing.T, fsys *FS) {
			lookupPath(t, fsys, "d/new.txt") // the first commit replayed
			lookupPath(t, fsys, "old.txt")   // the second not
		}},
		{"both commits", 0, func(w *fcWriter, tid uint32) {
			w.head(tid)
			c.commit(t, w)
			w.tail(tid)
			unlinkOld(w)
			w.tail(tid)
		}, false, true, func(t *testing.T, fsys *FS) {
			if _, err := fsys.Lookup(rootIno, "old.txt"); err == nil {
				t.Error("old.txt still there after the second commit")
			}
		}},
		{"first commit's tail", 1, func(w *fcWriter, tid uint32) {
			w.head(tid)
			c.commit(t, w)
			w.tail(tid)
			spoil(w)
		}, true, true, func(t *testing.T, fsys *FS) {
			if got := readAll(t, fsys, "keep.txt"); got != "unchanged\n" {
				t.Errorf("keep.txt reads %q: the full transaction was replayed", got)
			}
		}},
		{"head of an older transaction", 1, func(w *fcWriter, tid uint32) {
			w.head(tid - 1)
			c.commit(t, w)
			w.tail(tid - 1)
		}, false, false, func(t *testing.T, fsys *FS) {
			if got := readAll(t, fsys, "keep.txt"); got == "unchanged\n" {
				t.Errorf("keep.txt reads %q: the full transaction was not replayed", got)
			}
			if _, err := fsys.Lookup(fsys.Root(), "gone.txt"); err != nil {
				t.Errorf("a stale fast commit was replayed: %v", err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := c.craft(t, tc.full, func(tid uint32) *fcWriter {
				w := newFCWriter(4096)
				tc.build(w, tid)
				return w
			})
			fsys := openBytes(t, img, nil)
			if err := fsys.JournalErr(); (err != nil) != tc.failed {
				t.Errorf("JournalErr = %v, want an error: %v", err, tc.failed)
			}
			tc.check(t, fsys)
			ref, out := e2fsckReplay(t, img)
			got, want := treeView(t, fsys), treeView(t, openBytes(t, ref, nil))
			switch {
			case tc.oracle && got != want:
				t.Errorf("reads differently from e2fsck's replay:\n%s\n%s", diffLines(got, want), out)
			case !tc.oracle && got == want:
				t.Logf("e2fsck now replays this as the kernel does:\n%s", out)
			}
		})
	}
}

func readAll(t *testing.T, fsys *FS, p string) string {
	t.Helper()
	ino := lookupPath(t, fsys, p)
	a, err := fsys.Stat(ino)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, a.Size)
	if n, err := fsys.ReadAt(ino, b, 0); n != len(b) {
		t.Fatalf("read %s: %v", p, err)
	}
	return string(bytes.TrimRight(b, "\x00"))
}

// TestRandomJournalDamage flips random bytes of the journal seed's log
// and fast-commit blocks and walks the result: any error is fine, a
// panic or a hang is not.
func TestRandomJournalDamage(t *testing.T) {
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "small"), []byte("hello, ext4\n"))
	img := journalSeed(t, src)
	fsys := openBytes(t, img, nil)
	jino := uint64(fsys.sb.journalIno)
	var spots []int64 // volume offsets of the log's first blocks and the fast-commit area
	for _, i := range []int64{0, 1, 2, 3, 4, 5, 6, 1025, 1026} {
		if e, err := fsys.MapFile(nil, jino, i*1024, 1024); err == nil && len(e) == 1 {
			spots = append(spots, e[0].Off)
		}
	}
	r := rand.New(rand.NewPCG(11, 12))
	iters := 400
	if testing.Short() {
		iters = 100
	}
	for range iters {
		b := bytes.Clone(img)
		for range 1 + r.IntN(8) {
			at := spots[r.IntN(len(spots))] + r.Int64N(1024)
			b[at] ^= byte(1 + r.IntN(255))
		}
		inTime(t, func() {
			if fsys, err := Open(bytes.NewReader(b), int64(len(b))); err == nil {
				_ = walk(fsys, 64, 64<<10)
			}
		})
	}
}

// TestRandomFastCommits replays well-formed fast commits of random
// content (inode numbers in and out of range, ranges anywhere, inodes
// with random bytes, names of any bytes) whose checksums hold, so that
// every apply path sees nonsense: any error is fine, a panic, a hang or
// a walk outside the volume is not.
func TestRandomFastCommits(t *testing.T) {
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "small"), []byte("hello, ext4\n"))
	base := journalSeed(t, src)
	fsys := openBytes(t, base, nil)
	jino := uint64(fsys.sb.journalIno)
	be := binary.BigEndian
	jat := func(i int64) int64 {
		e, err := fsys.MapFile(nil, jino, i*1024, 1024)
		if err != nil || len(e) != 1 {
			t.Fatalf("journal block %d: %v %v", i, e, err)
		}
		return e[0].Off
	}
	jsb := base[jat(0):]
	maxLen, nfc := int64(be.Uint32(jsb[0x10:])), int64(be.Uint32(jsb[0x54:]))
	tid := be.Uint32(jsb[0x18:]) + 2
	raw, err := fsys.rawInode(lookupPath(t, fsys, "small"))
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(13, 14))
	applied := 0
	iters := 300
	if testing.Short() {
		iters = 80
	}
	for range iters {
		w := newFCWriter(1024)
		w.head(tid)
		for range 1 + r.IntN(12) {
			ino := uint32(r.IntN(40))
			switch r.IntN(5) {
			case 0:
				w.addRange(ino, fcExtent{lblk: uint64(r.Uint32()), pblk: uint64(r.IntN(4096)), n: uint64(1 + r.IntN(100)), unwritten: r.IntN(2) == 0})
			case 1:
				w.delRange(ino, r.Uint32(), r.Uint32())
			case 2:
				name := randBytes(r, 1+r.IntN(20))
				w.dentry(uint16(fcCreat+r.IntN(3)), uint32(r.IntN(40)), ino, string(name))
			default:
				b := bytes.Clone(raw)
				for range r.IntN(6) {
					b[r.IntN(len(b))] = byte(r.Uint32())
				}
				binary.LittleEndian.PutUint16(b[0x80:], 32) // keep a sane i_extra_isize most times
				w.inode(ino, b)
			}
		}
		w.tail(tid)
		img := bytes.Clone(base)
		for i, blk := range w.blocks {
			if int64(i) < nfc-1 {
				copy(img[jat(maxLen-nfc+1+int64(i)):], blk)
			}
		}
		inTime(t, func() {
			fsys, err := Open(bytes.NewReader(img), int64(len(img)))
			if err != nil {
				return
			}
			if fsys.fc != nil {
				applied++
			}
			// walk checks that MapFile stays inside the volume.
			if err := walk(fsys, 64, 64<<10); err != nil && strings.Contains(err.Error(), "outside the volume") {
				t.Fatalf("walk: %v", err)
			}
		})
	}
	if applied < iters/2 {
		t.Errorf("fast commits applied in %d of %d images", applied, iters)
	}
}

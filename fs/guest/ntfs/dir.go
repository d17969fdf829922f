package ntfs

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"slices"
	"strings"
	"syscall"

	"github.com/cairn-backup/cairn/fs/guest"
)

const (
	// maxDirEntries bounds the listing a damaged directory can produce.
	maxDirEntries = 1 << 22
	// maxLogPerListing bounds the log lines one listing writes about the
	// entries it leaves out; a summary line counts the rest.
	maxLogPerListing = 20
)

// listing is the parsed, immutable content of one directory.
type listing struct {
	ents []guest.DirEntry // sorted by name, names unique
	// damaged: part of the index could not be read, so a name that is
	// not found may be one that was lost.
	damaged bool
	// left names the entries that were left out because their file
	// cannot be served, with the reason.
	left map[string]error
}

// ReadDir returns the entries of directory ino sorted by name, without
// "." and "..": the Win32 and POSIX names of its index (DOS 8.3 aliases
// and the metadata files are hidden, as ntfs-3g hides them). Entries
// whose file cannot be read are left out and logged.
func (fs *FS) ReadDir(ino uint64) ([]guest.DirEntry, error) {
	l, err := fs.dir(ino)
	if err != nil {
		return nil, err
	}
	return slices.Clone(l.ents), nil
}

// Lookup returns the inode number of name in directory dir. Names match
// exactly (case-sensitively), as they do under ntfs-3g by default.
func (fs *FS) Lookup(dir uint64, name string) (uint64, error) {
	l, err := fs.dir(dir)
	if err != nil {
		return 0, err
	}
	i, ok := slices.BinarySearchFunc(l.ents, name, func(e guest.DirEntry, n string) int {
		return strings.Compare(e.Name, n)
	})
	if ok {
		return l.ents[i].Ino, nil
	}
	if err, ok := l.left[name]; ok {
		return 0, fmt.Errorf("ntfs: directory %d: %q: %w", dir, name, err)
	}
	if l.damaged {
		return 0, fmt.Errorf("ntfs: directory %d: %q not found in the part of its index that could be read: %w", dir, name, guest.ErrCorrupt)
	}
	return 0, fmt.Errorf("ntfs: directory %d: %q: %w", dir, name, guest.ErrNotFound)
}

// dir returns the shared listing of directory ino.
func (fs *FS) dir(ino uint64) (*listing, error) {
	if l, ok := fs.dirs.Get(ino); ok {
		return l, nil
	}
	in, err := fs.userInode(ino)
	if err != nil {
		return nil, err
	}
	k, err := fs.kind(in)
	if err != nil {
		return nil, err
	}
	if k.mode&syscall.S_IFMT != syscall.S_IFDIR {
		return nil, fmt.Errorf("ntfs: MFT record %d: %w", ino, guest.ErrNotDir)
	}
	b := &listBuilder{fs: fs, dir: ino, l: &listing{}}
	if err := b.read(in); err != nil {
		return nil, err
	}
	l := b.finish()
	fs.dirs.Add(ino, l, b.cost)
	return l, nil
}

// listBuilder collects the entries of one directory's index.
type listBuilder struct {
	fs     *FS
	dir    uint64
	l      *listing
	cost   int
	logged int
	unsaid int
}

func (b *listBuilder) log(format string, args ...any) {
	if b.logged >= maxLogPerListing {
		b.unsaid++
		return
	}
	b.logged++
	b.fs.logf("ntfs: directory %d: "+format, append([]any{b.dir}, args...)...)
}

// read walks the index root and every index block the $I30 bitmap marks
// in use, as ntfs-3g's readdir does. A block that fails its checks is
// logged and left out, and the listing marked damaged; a damaged index
// root fails the directory.
func (b *listBuilder) read(in *inode) error {
	le := binary.LittleEndian
	ir := in.indexRoot
	if ir == nil {
		return corruptRecord(in.ino, "directory without $INDEX_ROOT")
	}
	if len(ir) < 0x20 {
		return corruptRecord(in.ino, "$INDEX_ROOT of %d bytes", len(ir))
	}
	if t := le.Uint32(ir); t != atFileName {
		return corruptRecord(in.ino, "$I30 indexes attribute 0x%x", t)
	}
	bsize := uint64(le.Uint32(ir[0x08:]))
	if bsize < sectorSize || bsize > maxRecordSize || bits.OnesCount64(bsize) != 1 {
		return corruptRecord(in.ino, "index blocks of %d bytes", bsize)
	}
	if err := b.node(ir[0x10:], func() string { return "index root" }); err != nil {
		return corruptRecord(in.ino, "index root: %v", err)
	}
	alloc := in.indexAlloc
	if alloc == nil {
		return nil
	}
	if alloc.err != nil {
		b.l.damaged = true
		b.log("index allocation: %v; the entries it holds are left out", alloc.err)
		return nil
	}
	if alloc.flags&attrSparse != 0 || slices.ContainsFunc(alloc.runs, func(r run) bool { return r.lcn == holeLCN }) {
		// An index is never sparse; holes would let a few bytes of
		// runlist claim an index far larger than the volume.
		b.l.damaged = true
		b.log("index allocation has holes; the entries it holds are left out")
		return nil
	}
	nblocks := alloc.size / bsize
	bmp, err := b.fs.indexBitmap(in, nblocks)
	if err != nil {
		b.l.damaged = true
		b.log("%v; the entries of the index blocks are left out", err)
		return nil
	}
	vcnSize := b.fs.bt.clusterSize
	if bsize < vcnSize {
		vcnSize = sectorSize
	}
	buf := make([]byte, bsize)
	for i := uint64(0); i < nblocks; i++ {
		if bmp[i/8]&(1<<(i%8)) == 0 {
			continue
		}
		what := func() string { return fmt.Sprintf("index block %d", i) }
		err := b.fs.readStream(in.ino, alloc, buf, i*bsize)
		if err == nil {
			err = checkIndexBlock(buf, i*bsize/vcnSize, what)
		}
		if err == nil {
			err = b.node(buf[0x18:], what)
		}
		if err != nil {
			b.l.damaged = true
			b.log("%s: %v; its entries are left out", what(), err)
		}
		if len(b.l.ents) >= maxDirEntries {
			return corruptRecord(in.ino, "more than %d directory entries", maxDirEntries)
		}
	}
	return nil
}

// indexBitmap reads the $BITMAP:$I30 of in, which must cover nblocks.
func (fs *FS) indexBitmap(in *inode, nblocks uint64) ([]byte, error) {
	s := in.indexBmp
	if s == nil {
		return nil, corruptRecord(in.ino, "index allocation without a bitmap")
	}
	need := (nblocks + 7) / 8
	if s.size < need {
		return nil, corruptRecord(in.ino, "index bitmap of %d bytes for %d blocks", s.size, nblocks)
	}
	bmp := make([]byte, need)
	if err := fs.readStream(in.ino, s, bmp, 0); err != nil {
		return nil, fmt.Errorf("ntfs: MFT record %d: index bitmap: %w", in.ino, err)
	}
	return bmp, nil
}

// checkIndexBlock verifies an index block's magic, update sequence and
// VCN in place.
func checkIndexBlock(b []byte, vcn uint64, what func() string) error {
	if string(b[:4]) != "INDX" {
		return fmt.Errorf("bad magic %q: %w", b[:4], guest.ErrCorrupt)
	}
	if err := unfixup(b, what); err != nil {
		return err
	}
	if got := binary.LittleEndian.Uint64(b[0x10:]); got != vcn {
		return fmt.Errorf("holds VCN %d, expected %d: %w", got, vcn, guest.ErrCorrupt)
	}
	return nil
}

// node reads the entries of one index node; h starts at its index
// header, whose offsets count from there.
func (b *listBuilder) node(h []byte, what func() string) error {
	le := binary.LittleEndian
	if len(h) < 0x10 {
		return fmt.Errorf("index header cut: %w", guest.ErrCorrupt)
	}
	first := uint64(le.Uint32(h))
	end := uint64(le.Uint32(h[4:]))
	if first < 0x10 || end > uint64(len(h)) || first > end {
		return fmt.Errorf("index entries [%d, %d) in %d bytes: %w", first, end, len(h), guest.ErrCorrupt)
	}
	for off := first; ; {
		if end-off < 0x10 {
			return fmt.Errorf("index entry cut at offset %d: %w", off, guest.ErrCorrupt)
		}
		e := h[off:end]
		n := uint64(le.Uint16(e[8:]))
		keyLen := uint64(le.Uint16(e[0xA:]))
		flags := le.Uint16(e[0xC:])
		if n < 0x10 || n > uint64(len(e)) || keyLen > n-0x10 {
			return fmt.Errorf("index entry of length %d at offset %d: %w", n, off, guest.ErrCorrupt)
		}
		if flags&0x2 != 0 { // the last entry holds no key
			return nil
		}
		if err := b.entry(le.Uint64(e), e[0x10:0x10+keyLen]); err != nil {
			return err
		}
		off += n
	}
}

// entry takes one index entry: the file reference and its $FILE_NAME key.
func (b *listBuilder) entry(ref uint64, key []byte) error {
	if len(key) < 0x42 || 0x42+2*uint64(key[0x40]) > uint64(len(key)) {
		return fmt.Errorf("index key of %d bytes: %w", len(key), guest.ErrCorrupt)
	}
	if key[0x41] == nsDOS {
		return nil // an 8.3 alias of a name listed on its own
	}
	num := mrefNum(ref)
	if num < firstUser {
		return nil // "." of the root, and the metadata files
	}
	name := decodeName(key[0x42 : 0x42+2*uint64(key[0x40])])
	if name == "" || strings.ContainsAny(name, "/\x00") {
		b.log("entry %q (record %d): not a usable name; left out", name, num)
		return nil
	}
	if len(b.l.ents) >= maxDirEntries {
		return fmt.Errorf("more than %d entries: %w", maxDirEntries, guest.ErrCorrupt)
	}
	leave := func(err error) {
		if b.l.left == nil {
			b.l.left = map[string]error{}
		}
		b.l.left[name] = err
		b.cost += len(name) + 64
		b.log("entry %q: %v; left out", name, err)
	}
	in, err := b.fs.inode(num)
	if err != nil {
		leave(err)
		return nil
	}
	if s := mrefSeq(ref); s != 0 && s != in.seq {
		leave(corruptRecord(num, "entry has sequence number %d, the record %d (a stale entry)", s, in.seq))
		return nil
	}
	k, err := b.fs.kind(in)
	if err != nil {
		leave(err)
		return nil
	}
	b.l.ents = append(b.l.ents, guest.DirEntry{Name: name, Ino: num, Mode: k.mode & syscall.S_IFMT})
	b.cost += len(name) + 64
	return nil
}

// finish sorts the entries and drops repeated names, which only a
// damaged index holds.
func (b *listBuilder) finish() *listing {
	ents := b.l.ents
	slices.SortFunc(ents, func(x, y guest.DirEntry) int { return strings.Compare(x.Name, y.Name) })
	out := ents[:0]
	for _, e := range ents {
		if k := len(out) - 1; k >= 0 && e.Name == out[k].Name {
			if e.Ino != out[k].Ino {
				b.l.damaged = true
				b.log("entry %q appears twice (records %d and %d); the second is left out", e.Name, out[k].Ino, e.Ino)
			}
			continue
		}
		out = append(out, e)
	}
	b.l.ents = out
	if b.unsaid > 0 {
		b.fs.logf("ntfs: directory %d: %d more damaged items left out", b.dir, b.unsaid)
	}
	return b.l
}

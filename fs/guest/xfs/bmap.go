package xfs

import (
	"encoding/binary"
	"sort"
)

const (
	extentSize = 16 // one packed extent record (xfs_bmbt_rec)
	bmdrHeader = 4  // level and record count of a btree root in the inode

	bmapMagicV4 = 0x424D4150 // "BMAP"
	bmapMagicV5 = 0x424D4133 // "BMA3"
	bmbtHdrV4   = 24
	bmbtHdrV5   = 72

	// maxBtreeLevels bounds a block map btree. XFS needs at most 9 levels
	// for 2^64 extents; each level must sit exactly one below its parent,
	// so a damaged tree can neither loop nor recurse without end.
	maxBtreeLevels = 9

	// noMore stands for "to the end of the file" in a hole's length.
	noMore = 1 << 62
)

// extent maps n file blocks from off to n linear volume blocks from blk.
type extent struct {
	off, blk, n uint64
	unwritten   bool
}

// run is a stretch of file blocks that maps to one contiguous stretch of
// the volume, or reads as zeros (a hole or an unwritten extent).
type run struct {
	blk  uint64 // linear block of the run's first file block
	n    uint64 // at least 1
	zero bool
}

// decodeExtent unpacks a 128-bit extent record: one flag bit
// (unwritten), a 54-bit file offset, a 52-bit filesystem block number and
// a 21-bit length.
func decodeExtent(b []byte) (off, fsb, n uint64, unwritten bool) {
	l0 := binary.BigEndian.Uint64(b)
	l1 := binary.BigEndian.Uint64(b[8:])
	unwritten = l0>>63 != 0
	off = (l0 & (1<<63 - 1)) >> 9
	fsb = (l0&0x1ff)<<43 | l1>>21
	n = l1 & (1<<21 - 1)
	return
}

// extentAt decodes and checks one record: not empty, inside one AG.
func (fs *FS) extentAt(ino uint64, b []byte) (extent, error) {
	off, fsb, n, unwritten := decodeExtent(b)
	if n == 0 {
		return extent{}, corruptInode(ino, "empty extent at file block %d", off)
	}
	blk, ok := fs.sb.linear(fsb, n)
	if !ok {
		return extent{}, corruptInode(ino, "extent of %d blocks at %#x outside the filesystem", n, fsb)
	}
	return extent{off: off, blk: blk, n: n, unwritten: unwritten}, nil
}

// parseExtents reads an extent list kept in the inode; the extents must
// be in file order and must not overlap.
func (fs *FS) parseExtents(ino uint64, raw []byte) ([]extent, error) {
	exts := make([]extent, 0, len(raw)/extentSize)
	next := uint64(0)
	for i := 0; i+extentSize <= len(raw); i += extentSize {
		e, err := fs.extentAt(ino, raw[i:])
		if err != nil {
			return nil, err
		}
		if e.off < next {
			return nil, corruptInode(ino, "extents out of order at file block %d", e.off)
		}
		next = e.off + e.n
		exts = append(exts, e)
	}
	return exts, nil
}

// mapBlock maps file block lblk of fork f of in to the run that starts
// there.
func (fs *FS) mapBlock(in *inode, f *fork, lblk uint64) (run, error) {
	switch f.format {
	case fmtExtents:
		exts := f.extents
		i := sort.Search(len(exts), func(i int) bool { return exts[i].off > lblk }) - 1
		if i >= 0 && lblk < exts[i].off+exts[i].n {
			e := exts[i]
			return run{blk: e.blk + lblk - e.off, n: e.off + e.n - lblk, zero: e.unwritten}, nil
		}
		next := uint64(noMore)
		if i+1 < len(exts) {
			next = exts[i+1].off
		}
		return holeTo(in.ino, lblk, next)
	case fmtBtree:
		return fs.mapBtree(in, f, lblk)
	case fmtRealtime:
		return run{}, corruptInode(in.ino, "data on a realtime device, which is not part of this volume")
	}
	return run{}, corruptInode(in.ino, "fork of format %d has no block map", f.format)
}

func holeTo(ino, lblk, next uint64) (run, error) {
	if next <= lblk {
		return run{}, corruptInode(ino, "extents out of order at file block %d", lblk)
	}
	return run{zero: true, n: min(next, noMore) - lblk}, nil
}

// btreeNode is one node of a block map btree: the root in the inode or a
// block.
type btreeNode struct {
	b     []byte
	level int
	n     int // records
	keys  int // offset of the keys (node) or records (leaf)
	ptrs  int // offset of the child pointers (node)
}

func (nd *btreeNode) key(i int) uint64 {
	if nd.level == 0 {
		off, _, _, _ := decodeExtent(nd.b[nd.keys+i*extentSize:])
		return off
	}
	return binary.BigEndian.Uint64(nd.b[nd.keys+i*8:])
}

// rootNode reads the btree root kept in a fork: level, record count,
// then as many keys as fit, then as many pointers.
func rootNode(ino uint64, raw []byte) (btreeNode, error) {
	be := binary.BigEndian
	maxRecs := (len(raw) - bmdrHeader) / 16
	nd := btreeNode{b: raw, level: int(be.Uint16(raw)), n: int(be.Uint16(raw[2:])), keys: bmdrHeader, ptrs: bmdrHeader + maxRecs*8}
	if nd.level < 1 || nd.level > maxBtreeLevels {
		return nd, corruptInode(ino, "block map btree of %d levels", nd.level)
	}
	if nd.n < 1 || nd.n > maxRecs {
		return nd, corruptInode(ino, "block map root with %d records", nd.n)
	}
	return nd, nil
}

// btreeBlock reads and checks a btree block at linear block blk that must
// sit at level.
func (fs *FS) btreeBlock(in *inode, blk uint64, level int) (btreeNode, error) {
	b, err := fs.blocksAt(blk, 1)
	if err != nil {
		return btreeNode{}, inodeErr(in.ino, "block map btree", err)
	}
	be := binary.BigEndian
	hdr := bmbtHdrV4
	if fs.sb.crc() {
		hdr = bmbtHdrV5
		if be.Uint32(b) != bmapMagicV5 {
			return btreeNode{}, corruptInode(in.ino, "block map btree block %d: bad magic", blk)
		}
		if err := fs.checkHeader(b, 64, 24, 56, 40, blk, in.ino); err != nil {
			return btreeNode{}, corruptInode(in.ino, "block map btree block %d: %v", blk, err)
		}
	} else if be.Uint32(b) != bmapMagicV4 {
		return btreeNode{}, corruptInode(in.ino, "block map btree block %d: bad magic", blk)
	}
	maxRecs := (len(b) - hdr) / 16
	nd := btreeNode{b: b, level: int(be.Uint16(b[4:])), n: int(be.Uint16(b[6:])), keys: hdr, ptrs: hdr + maxRecs*8}
	if nd.level != level {
		return nd, corruptInode(in.ino, "block map btree block %d at level %d, expected %d", blk, nd.level, level)
	}
	if nd.n < 1 || nd.n > maxRecs {
		return nd, corruptInode(in.ino, "block map btree block %d with %d records", blk, nd.n)
	}
	return nd, nil
}

// mapBtree walks the block map btree of fork f down to the leaf that
// holds lblk.
func (fs *FS) mapBtree(in *inode, f *fork, lblk uint64) (run, error) {
	nd, err := rootNode(in.ino, f.raw)
	if err != nil {
		return run{}, err
	}
	upper := uint64(noMore) // first file block past this subtree
	for {
		i := sort.Search(nd.n, func(i int) bool { return nd.key(i) > lblk }) - 1
		next := upper
		if i+1 < nd.n {
			next = min(next, nd.key(i+1))
		}
		if nd.level == 0 {
			if i >= 0 {
				e, err := fs.extentAt(in.ino, nd.b[nd.keys+i*extentSize:])
				if err != nil {
					return run{}, err
				}
				if lblk < e.off+e.n {
					return run{blk: e.blk + lblk - e.off, n: e.off + e.n - lblk, zero: e.unwritten}, nil
				}
			}
			return holeTo(in.ino, lblk, next)
		}
		if i < 0 {
			return holeTo(in.ino, lblk, next)
		}
		fsb := binary.BigEndian.Uint64(nd.b[nd.ptrs+i*8:])
		blk, ok := fs.sb.linear(fsb, 1)
		if !ok {
			return run{}, corruptInode(in.ino, "block map btree pointer %#x outside the filesystem", fsb)
		}
		child, err := fs.btreeBlock(in, blk, nd.level-1)
		if err != nil {
			return run{}, err
		}
		nd, upper = child, next
	}
}

package ext4

import (
	"encoding/binary"
	"sort"
)

const (
	extentMagic    = 0xF30A
	maxExtentDepth = 5
	initMaxLen     = 32768
	// noMoreBlocks stands for "to the end of the file" in a hole's length.
	noMoreBlocks = 1 << 62
)

// run is a stretch of logical blocks that maps to one contiguous physical
// stretch, or reads as zeros (a hole or an unwritten extent).
type run struct {
	phys uint64
	n    uint64 // at least 1
	zero bool
}

// mapBlock maps logical block lblk of in to the run that starts there.
func (fs *FS) mapBlock(in *inode, lblk uint64) (run, error) {
	if r := fs.fc.rangesOf(in.ino); r != nil {
		return fs.mapFC(in, r, lblk)
	}
	if in.flags&flagExtents != 0 {
		return fs.mapExtent(in, lblk)
	}
	return fs.mapIndirect(in, lblk)
}

// mapExtent walks the extent tree from the root in i_block. Each level
// must sit exactly one below its parent and the root at most five deep,
// so a damaged tree can neither loop nor recurse without end.
func (fs *FS) mapExtent(in *inode, lblk uint64) (run, error) {
	le := binary.LittleEndian
	if lblk > 0xFFFFFFFF {
		return run{zero: true, n: noMoreBlocks}, nil
	}
	node := in.iblock[:]
	upper := uint64(1) << 32 // first logical block not covered by this subtree
	depth := -1
	for level := 0; ; level++ {
		if le.Uint16(node[0:]) != extentMagic {
			return run{}, corruptInode(in.ino, "bad extent header at depth %d", level)
		}
		entries := int(le.Uint16(node[2:]))
		maxEntries := int(le.Uint16(node[4:]))
		d := int(le.Uint16(node[6:]))
		switch {
		case level == 0 && d > maxExtentDepth:
			return run{}, corruptInode(in.ino, "extent tree %d deep", d)
		case level > 0 && d != depth-1:
			return run{}, corruptInode(in.ino, "extent node at depth %d below depth %d", d, depth)
		case entries > maxEntries || 12+12*entries > len(node):
			return run{}, corruptInode(in.ino, "extent node with %d entries", entries)
		}
		depth = d
		ent := func(i int) []byte { return node[12+12*i : 24+12*i] }
		// Index of the last entry whose first block is <= lblk.
		i := sort.Search(entries, func(i int) bool { return uint64(le.Uint32(ent(i))) > lblk }) - 1
		next := upper
		if i+1 < entries {
			next = min(next, uint64(le.Uint32(ent(i+1))))
		}
		if d == 0 {
			if i >= 0 {
				e := ent(i)
				start := uint64(le.Uint32(e[0:]))
				n := uint64(le.Uint16(e[4:]))
				unwritten := n > initMaxLen
				if unwritten {
					n -= initMaxLen
				}
				if n == 0 {
					return run{}, corruptInode(in.ino, "empty extent at block %d", start)
				}
				if lblk < start+n {
					phys := uint64(le.Uint16(e[6:]))<<32 | uint64(le.Uint32(e[8:]))
					if !fs.checkRange(phys, n) {
						return run{}, corruptInode(in.ino, "extent at block %d (%d blocks) outside the filesystem", phys, n)
					}
					off := lblk - start
					return run{phys: phys + off, n: n - off, zero: unwritten}, nil
				}
			}
			return holeTo(in, lblk, next)
		}
		if i < 0 {
			return holeTo(in, lblk, next)
		}
		e := ent(i)
		child := uint64(le.Uint16(e[8:]))<<32 | uint64(le.Uint32(e[4:]))
		b, err := fs.block(child)
		if err != nil {
			return run{}, corruptInodeErr(in.ino, "extent node", err)
		}
		if err := fs.checkExtentBlock(in, child, b); err != nil {
			return run{}, err
		}
		node, upper = b, next
	}
}

func holeTo(in *inode, lblk, next uint64) (run, error) {
	if next <= lblk {
		return run{}, corruptInode(in.ino, "extents out of order at block %d", lblk)
	}
	if next >= 1<<32 {
		return run{zero: true, n: noMoreBlocks}, nil
	}
	return run{zero: true, n: next - lblk}, nil
}

// checkExtentBlock verifies the crc32c tail that follows the eh_max
// entries of an extent tree block, with metadata_csum.
func (fs *FS) checkExtentBlock(in *inode, blk uint64, b []byte) error {
	if !fs.sb.metadataCsum() {
		return nil
	}
	le := binary.LittleEndian
	tail := 12 + 12*int(le.Uint16(b[4:]))
	if tail+4 > len(b) {
		return corruptInode(in.ino, "extent block %d with room for %d entries", blk, le.Uint16(b[4:]))
	}
	if crc32c(in.csumSeed, b[:tail]) != le.Uint32(b[tail:]) {
		return corruptInode(in.ino, "extent block %d checksum does not match", blk)
	}
	return nil
}

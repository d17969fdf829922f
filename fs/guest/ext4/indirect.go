package ext4

import "encoding/binary"

const directBlocks = 12

// mapIndirect maps lblk through the ext2/ext3 block map: twelve direct
// pointers, then single, double and triple indirect blocks. A zero pointer
// at any level is a hole covering everything below it.
func (fs *FS) mapIndirect(in *inode, lblk uint64) (run, error) {
	le := binary.LittleEndian
	if lblk < directBlocks {
		return fs.scanPtrs(in, in.iblock[:4*directBlocks], int(lblk))
	}
	per := uint64(fs.sb.blockSize / 4)
	rel := lblk - directBlocks
	span := per // blocks covered by the top pointer at this level
	levels := 1
	for rel >= span {
		rel -= span
		if levels == 3 {
			return run{zero: true, n: noMoreBlocks}, nil
		}
		levels++
		span *= per
	}
	ptr := uint64(le.Uint32(in.iblock[4*(directBlocks+levels-1):]))
	for {
		if ptr == 0 {
			return run{zero: true, n: span - rel}, nil
		}
		b, err := fs.block(ptr)
		if err != nil {
			return run{}, corruptInodeErr(in.ino, "indirect block", err)
		}
		span /= per
		idx := rel / span
		if span == 1 {
			return fs.scanPtrs(in, b, int(idx))
		}
		ptr = uint64(le.Uint32(b[4*idx:]))
		rel %= span
	}
}

// scanPtrs builds the run starting at pointer i of a pointer array,
// extending it while the following pointers stay contiguous (or zero).
func (fs *FS) scanPtrs(in *inode, ptrs []byte, i int) (run, error) {
	le := binary.LittleEndian
	count := len(ptrs) / 4
	first := uint64(le.Uint32(ptrs[4*i:]))
	n := uint64(1)
	for j := i + 1; j < count; j++ {
		p := uint64(le.Uint32(ptrs[4*j:]))
		if first == 0 && p != 0 || first != 0 && p != first+n {
			break
		}
		n++
	}
	if first == 0 {
		return run{zero: true, n: n}, nil
	}
	if !fs.checkRange(first, n) {
		return run{}, corruptInode(in.ino, "block %d outside the filesystem", first)
	}
	return run{phys: first, n: n}, nil
}

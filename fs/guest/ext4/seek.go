package ext4

import (
	"fmt"
	"math"

	"github.com/cairn-backup/cairn/fs/guest"
)

var _ guest.DataSeeker = (*FS)(nil)

// maxSeekRuns bounds the runs one NextData call maps, so that a badly
// fragmented or damaged file costs a bounded amount of work per call.
// Past it the answer errs towards data, which reads back correctly.
const maxSeekRuns = 1 << 16

// NextData returns the first range [start, end) at or after off that
// holds written data of file ino, clipped to the file size; start and end
// are the size when none follows. Holes and unwritten extents are not
// data; a file kept inline in its inode is data throughout. end may fall
// short of the next hole when the data is split in very many runs.
func (fs *FS) NextData(ino uint64, off int64) (int64, int64, error) {
	in, err := fs.inode(ino)
	if err != nil {
		return 0, 0, err
	}
	if in.isDir() {
		return 0, 0, fmt.Errorf("ext4: inode %d: %w", ino, guest.ErrIsDir)
	}
	if off < 0 {
		return 0, 0, fmt.Errorf("ext4: inode %d: negative offset %d", ino, off)
	}
	size := min(in.size, math.MaxInt64)
	if !in.isReg() && !in.isLink() {
		size = 0 // device, fifo, socket: i_block holds no data map
	}
	if uint64(off) >= size {
		return int64(size), int64(size), nil
	}
	if in.inline() {
		return off, int64(size), nil
	}
	return guest.NextDataRuns(fs.blockMap(in), off, size, uint64(fs.sb.blockSize), maxSeekRuns)
}

var _ guest.Mapper = (*FS)(nil)

// maxMapRuns bounds the runs one MapFile call maps.
const maxMapRuns = 256

// MapFile appends the volume extents holding bytes [off, off+n) of file
// ino; see guest.Mapper.
func (fs *FS) MapFile(dst []guest.Extent, ino uint64, off, n int64) ([]guest.Extent, error) {
	in, err := fs.inode(ino)
	if err != nil {
		return dst, err
	}
	if in.isDir() {
		return dst, fmt.Errorf("ext4: inode %d: %w", ino, guest.ErrIsDir)
	}
	if off < 0 || n < 0 {
		return dst, fmt.Errorf("ext4: inode %d: negative range %d+%d", ino, off, n)
	}
	size := min(in.size, math.MaxInt64)
	if !in.isReg() && !in.isLink() || in.inline() {
		return dst, nil
	}
	return guest.AppendRunExtents(dst, fs.blockMap(in), off, n, size, uint64(fs.sb.blockSize), maxMapRuns)
}

// blockMap is in's data map as guest's run walkers take it.
func (fs *FS) blockMap(in *inode) guest.BlockMap {
	return func(lblk uint64) (guest.Run, error) {
		r, err := fs.mapBlock(in, lblk)
		return guest.Run{Phys: r.phys, N: r.n, Zero: r.zero}, err
	}
}

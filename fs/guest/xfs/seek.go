package xfs

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
// data; a symlink is data throughout. end may fall short of the next hole
// when the data is split in very many runs.
func (fs *FS) NextData(ino uint64, off int64) (int64, int64, error) {
	in, err := fs.inode(ino)
	if err != nil {
		return 0, 0, err
	}
	if in.isDir() {
		return 0, 0, fmt.Errorf("xfs: inode %d: %w", ino, guest.ErrIsDir)
	}
	if off < 0 {
		return 0, 0, fmt.Errorf("xfs: inode %d: negative offset %d", ino, off)
	}
	size := min(fileSize(in), math.MaxInt64)
	if uint64(off) >= size {
		return int64(size), int64(size), nil
	}
	if in.isLink() {
		return off, int64(size), nil
	}
	bs := uint64(fs.sb.blockSize)
	last := (size - 1) / bs // last file block inside the file
	lblk := uint64(off) / bs
	runs := 0
	var r run
	// Skip holes up to the first data run.
	for {
		if lblk > last {
			return int64(size), int64(size), nil
		}
		if runs++; runs > maxSeekRuns {
			// Too many holes: call one block data and let the caller
			// read it and ask again from there.
			return int64(max(lblk*bs, uint64(off))), int64(min((lblk+1)*bs, size)), nil
		}
		if r, err = fs.mapBlock(in, &in.data, lblk); err != nil {
			return 0, 0, err
		}
		if !r.zero {
			break
		}
		lblk += r.n
	}
	start := max(lblk*bs, uint64(off))
	// Extend over the data runs that follow directly.
	end := lblk + r.n
	for end <= last && runs < maxSeekRuns {
		runs++
		r, err := fs.mapBlock(in, &in.data, end)
		if err != nil {
			return 0, 0, err
		}
		if r.zero {
			break
		}
		end += r.n
	}
	return int64(start), int64(min(end*bs, size)), nil
}

var _ guest.Mapper = (*FS)(nil)

// maxMapRuns bounds the runs one MapFile call maps.
const maxMapRuns = 256

// MapFile appends the volume extents holding bytes [off, off+n) of file
// ino; see guest.Mapper. Symlinks have none: their target is metadata.
func (fs *FS) MapFile(dst []guest.Extent, ino uint64, off, n int64) ([]guest.Extent, error) {
	in, err := fs.inode(ino)
	if err != nil {
		return dst, err
	}
	if in.isDir() {
		return dst, fmt.Errorf("xfs: inode %d: %w", ino, guest.ErrIsDir)
	}
	if off < 0 || n < 0 {
		return dst, fmt.Errorf("xfs: inode %d: negative range %d+%d", ino, off, n)
	}
	if !in.isReg() {
		return dst, nil
	}
	size := min(in.size, math.MaxInt64)
	pos := uint64(off)
	end := min(uint64(off)+uint64(n), size)
	bs := uint64(fs.sb.blockSize)
	for runs := 0; pos < end && runs < maxMapRuns; runs++ {
		r, err := fs.mapBlock(in, &in.data, pos/bs)
		if err != nil {
			return dst, err
		}
		within := pos % bs
		chunk := end - pos
		if r.n <= (chunk+within)/bs { // the run ends first; r.n is small here
			chunk = r.n*bs - within
		}
		if !r.zero {
			e := guest.Extent{Off: int64(r.blk*bs + within), Len: int64(chunk)}
			if k := len(dst) - 1; k >= 0 && dst[k].Off+dst[k].Len == e.Off {
				dst[k].Len += e.Len
			} else {
				dst = append(dst, e)
			}
		}
		pos += chunk
	}
	return dst, nil
}

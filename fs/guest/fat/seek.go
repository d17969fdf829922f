package fat

import (
	"fmt"
	"syscall"

	"github.com/cairn-backup/cairn/fs/guest"
)

var _ guest.DataSeeker = (*FS)(nil)

// NextData reports a file's bytes from off to its end as data: FAT has
// no holes. At or past the end, start and end are the size.
func (fs *FS) NextData(ino uint64, off int64) (int64, int64, error) {
	if ino == RootIno {
		return 0, 0, fmt.Errorf("fat: inode %d: %w", ino, guest.ErrIsDir)
	}
	e, err := fs.entry(ino)
	if err != nil {
		return 0, 0, err
	}
	if e.attr&attrDir != 0 {
		return 0, 0, fmt.Errorf("fat: inode %d: %w", ino, guest.ErrIsDir)
	}
	if off < 0 {
		return 0, 0, fmt.Errorf("fat: negative offset %d: %w", off, syscall.EINVAL)
	}
	size := int64(e.size)
	if off >= size {
		return size, size, nil
	}
	return off, size, nil
}

var _ guest.Mapper = (*FS)(nil)

// MapFile appends the volume extents holding bytes [off, off+n) of file
// ino, from its cluster chain; see guest.Mapper.
func (fs *FS) MapFile(dst []guest.Extent, ino uint64, off, n int64) ([]guest.Extent, error) {
	if ino == RootIno {
		return dst, fmt.Errorf("fat: inode %d: %w", ino, guest.ErrIsDir)
	}
	e, err := fs.entry(ino)
	if err != nil {
		return dst, err
	}
	if e.attr&attrDir != 0 {
		return dst, fmt.Errorf("fat: inode %d: %w", ino, guest.ErrIsDir)
	}
	if off < 0 || n < 0 {
		return dst, fmt.Errorf("fat: negative range %d+%d: %w", off, n, syscall.EINVAL)
	}
	size := int64(e.size)
	if off >= size || n == 0 {
		return dst, nil
	}
	if e.cluster == 0 {
		return dst, fmt.Errorf("fat: inode %d: %d bytes but no clusters: %w", ino, size, guest.ErrCorrupt)
	}
	ch, err := fs.chainOf(e.cluster, fs.l.clusters)
	if err != nil {
		return dst, err
	}
	cs := fs.l.clusterSize
	end := min(size, off+min(n, size))
	for off < end {
		disk, contig, ok := ch.locate(uint32(off / cs))
		if !ok {
			return dst, fmt.Errorf("fat: inode %d: offset %d past the end of a chain of %d clusters: %w", ino, off, ch.clusters, guest.ErrCorrupt)
		}
		within := off % cs
		l := min(end-off, int64(contig)*cs-within)
		dst = append(dst, guest.Extent{Off: fs.l.clusterOffset(disk) + within, Len: l})
		off += l
	}
	return dst, nil
}

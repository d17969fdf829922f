package fs

import (
	"context"
	"errors"
	"io"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/cairn-backup/cairn/snapshot"
)

// diskFile is a read-only window [start, start+size) of a point's disk:
// the whole disk (DISK.raw) or one partition (DISK/partN.raw). Reads go
// straight to the point's disk reader, whose read-ahead follows the
// sequential readers; there is no per-open state.
type diskFile struct {
	gofs.Inode
	readOnly
	fsys        *FS
	r           *snapshot.DiskReader
	start, size int64
	allocated   int64 // bytes reported as st_blocks
}

// newDiskFile serves the whole disk of r.
func newDiskFile(fsys *FS, r *snapshot.DiskReader) *diskFile {
	return &diskFile{fsys: fsys, r: r, size: r.Size(), allocated: r.Disk().Allocated}
}

// newPartFile serves the partition at [start, start+size) of r. Its
// holes are not counted in st_blocks: that would take a map walk.
func newPartFile(fsys *FS, r *snapshot.DiskReader, start, size int64) *diskFile {
	return &diskFile{fsys: fsys, r: r, start: start, size: size, allocated: size}
}

var (
	_ gofs.NodeGetattrer = (*diskFile)(nil)
	_ gofs.NodeOpener    = (*diskFile)(nil)
	_ gofs.NodeReader    = (*diskFile)(nil)
	_ gofs.NodeLseeker   = (*diskFile)(nil)
)

func (f *diskFile) fill(a *fuse.Attr) {
	a.Mode = syscall.S_IFREG | f.fsys.diskMode
	a.Uid, a.Gid = f.fsys.diskUid, f.fsys.diskGid
	a.Nlink = 1
	a.Size = uint64(f.size)
	a.Blocks = uint64(f.allocated+511) / 512
	a.Blksize = uint32(min(f.r.BlockSize(), 1<<20))
	setTimes(a, f.r.Point().Time)
}

func (f *diskFile) Getattr(_ context.Context, _ gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	f.fill(&out.Attr)
	out.SetTimeout(immutableTimeout)
	return 0
}

func (f *diskFile) Open(_ context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if flags&(syscall.O_WRONLY|syscall.O_RDWR|syscall.O_TRUNC|syscall.O_APPEND) != 0 {
		return nil, 0, syscall.EROFS
	}
	return openImmutable()
}

// openImmutable answers a read-only open of a file that never changes.
// ENOSYS tells the kernel (FUSE_NO_OPEN_SUPPORT) that no file of this
// mount needs OPEN or RELEASE requests at all; it then keeps page cache
// across opens, as FOPEN_KEEP_CACHE would, and a copy of many small
// files saves two round trips per file. Write opens never get here: the
// mount is read-only.
func openImmutable() (gofs.FileHandle, uint32, syscall.Errno) {
	return nil, 0, syscall.ENOSYS
}

func (f *diskFile) Read(_ context.Context, _ gofs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if off >= f.size {
		return fuse.ReadResultData(nil), 0
	}
	dest = dest[:min(int64(len(dest)), f.size-off)]
	n, err := f.r.ReadAt(dest, f.start+off)
	if err != nil && !errors.Is(err, io.EOF) {
		f.fsys.logf("read error: %v", err)
		return nil, syscall.EIO
	}
	return fuse.ReadResultData(dest[:n]), 0
}

// Lseek answers SEEK_DATA and SEEK_HOLE from the block map, so cp
// --sparse and qemu-img skip holes without reading them.
func (f *diskFile) Lseek(_ context.Context, _ gofs.FileHandle, off uint64, whence uint32) (uint64, syscall.Errno) {
	const seekData, seekHole = 3, 4
	if off >= uint64(f.size) {
		return 0, syscall.ENXIO
	}
	start, end, err := f.r.NextData(f.start + int64(off))
	if err != nil {
		f.fsys.logf("seek: %v", err)
		return 0, syscall.EIO
	}
	start = min(max(start-f.start, 0), f.size)
	end = min(max(end-f.start, 0), f.size)
	switch whence {
	case seekData:
		if start >= f.size {
			return 0, syscall.ENXIO
		}
		return uint64(start), 0
	case seekHole:
		if uint64(start) > off {
			return off, 0 // off is in a hole
		}
		return uint64(end), 0
	}
	return 0, syscall.EINVAL
}

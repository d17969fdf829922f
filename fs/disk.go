package fs

import (
	"context"
	"errors"
	"io"
	"sync/atomic"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/cairn-backup/cairn/snapshot"
)

// diskFile is a whole disk of a point, read-only. Reads go straight to
// the point's block map; there is no per-open state.
type diskFile struct {
	gofs.Inode
	readOnly
	fsys *FS
	r    *snapshot.DiskReader
	next atomic.Int64 // where a sequential reader will read next
}

// seqSlack is how far from the previous read's end a read may start and
// still count as sequential.
const seqSlack = 4 << 20

var (
	_ gofs.NodeGetattrer = (*diskFile)(nil)
	_ gofs.NodeOpener    = (*diskFile)(nil)
	_ gofs.NodeReader    = (*diskFile)(nil)
	_ gofs.NodeLseeker   = (*diskFile)(nil)
)

func (f *diskFile) fill(a *fuse.Attr) {
	d := f.r.Disk()
	a.Mode = syscall.S_IFREG | 0o444
	a.Nlink = 1
	a.Size = uint64(d.Size)
	a.Blocks = uint64(d.Allocated+511) / 512
	a.Blksize = uint32(min(d.BlockSize, 1<<20))
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
	// A point never changes: the kernel may keep its pages across opens.
	return nil, fuse.FOPEN_KEEP_CACHE, 0
}

func (f *diskFile) Read(_ context.Context, _ gofs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	// The kernel sends a sequential reader's requests a few at a time and
	// not always in order: anything near the last end counts as
	// sequential.
	end := off + int64(len(dest))
	if last := f.next.Swap(end); off >= last-seqSlack && off <= last+seqSlack {
		f.fsys.ra.after(f.r, end)
	}
	n, err := f.r.ReadAt(dest, off)
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
	size := uint64(f.r.Size())
	if off >= size {
		return 0, syscall.ENXIO
	}
	start, end, err := f.r.NextData(int64(off))
	if err != nil {
		f.fsys.logf("seek: %v", err)
		return 0, syscall.EIO
	}
	switch whence {
	case seekData:
		if uint64(start) >= size {
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

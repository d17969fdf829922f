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

// partFile is one partition of a disk, raw and read-only: a window
// [start, start+size) of the disk, read like diskFile.
type partFile struct {
	gofs.Inode
	readOnly
	fsys        *FS
	r           *snapshot.DiskReader
	start, size int64
	next        atomic.Int64 // where a sequential reader will read next
}

var (
	_ gofs.NodeGetattrer = (*partFile)(nil)
	_ gofs.NodeOpener    = (*partFile)(nil)
	_ gofs.NodeReader    = (*partFile)(nil)
	_ gofs.NodeLseeker   = (*partFile)(nil)
)

func (f *partFile) fill(a *fuse.Attr) {
	a.Mode = syscall.S_IFREG | 0o444
	a.Nlink = 1
	a.Size = uint64(f.size)
	a.Blocks = uint64(f.size+511) / 512 // holes of the window are not counted
	a.Blksize = uint32(min(f.r.BlockSize(), 1<<20))
	setTimes(a, f.r.Point().Time)
}

func (f *partFile) Getattr(_ context.Context, _ gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	f.fill(&out.Attr)
	out.SetTimeout(immutableTimeout)
	return 0
}

func (f *partFile) Open(_ context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if flags&(syscall.O_WRONLY|syscall.O_RDWR|syscall.O_TRUNC|syscall.O_APPEND) != 0 {
		return nil, 0, syscall.EROFS
	}
	return nil, fuse.FOPEN_KEEP_CACHE, 0
}

func (f *partFile) Read(_ context.Context, _ gofs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if off >= f.size {
		return fuse.ReadResultData(nil), 0
	}
	dest = dest[:min(int64(len(dest)), f.size-off)]
	if f.next.Swap(off+int64(len(dest))) == off {
		f.fsys.ra.after(f.r, f.start+off+int64(len(dest)))
	}
	n, err := f.r.ReadAt(dest, f.start+off)
	if err != nil && !errors.Is(err, io.EOF) {
		f.fsys.logf("read error: %v", err)
		return nil, syscall.EIO
	}
	return fuse.ReadResultData(dest[:n]), 0
}

// Lseek answers SEEK_DATA and SEEK_HOLE from the disk's block map,
// shifted into the partition's window.
func (f *partFile) Lseek(_ context.Context, _ gofs.FileHandle, off uint64, whence uint32) (uint64, syscall.Errno) {
	const seekData, seekHole = 3, 4
	if off >= uint64(f.size) {
		return 0, syscall.ENXIO
	}
	start, end, err := f.r.NextData(f.start + int64(off))
	if err != nil {
		f.fsys.logf("seek: %v", err)
		return 0, syscall.EIO
	}
	start, end = min(max(start-f.start, 0), f.size), min(max(end-f.start, 0), f.size)
	switch whence {
	case seekData:
		if start >= f.size {
			return 0, syscall.ENXIO
		}
		return uint64(start), 0
	case seekHole:
		if uint64(start) > off {
			return off, 0
		}
		return uint64(end), 0
	}
	return 0, syscall.EINVAL
}

package fs

import (
	"context"
	"errors"
	"io"
	"sync/atomic"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/cairn-backup/cairn/fs/guest"
)

// guestFile is a regular file of a guest filesystem. Reads are stateless
// ReadAt calls on the guest reader; a sequential reader gets the disk
// blocks under the next window of the file loaded ahead.
type guestFile struct {
	gofs.Inode
	guestNode
	next atomic.Int64 // where a sequential reader will read next
}

var (
	_ gofs.NodeOpener    = (*guestFile)(nil)
	_ gofs.NodeReader    = (*guestFile)(nil)
	_ gofs.NodeGetattrer = (*guestFile)(nil)
	_ gofs.NodeLseeker   = (*guestFile)(nil)
)

func (f *guestFile) Open(_ context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if flags&(syscall.O_WRONLY|syscall.O_RDWR|syscall.O_TRUNC|syscall.O_APPEND) != 0 {
		return nil, 0, syscall.EROFS
	}
	return openImmutable()
}

func (f *guestFile) Read(_ context.Context, _ gofs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	end := off + int64(len(dest))
	if last := f.next.Swap(end); off >= last-seqSlack && off <= last+seqSlack {
		f.readAhead(end)
	}
	n, err := f.vol.gfs.ReadAt(f.gi, dest, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, f.vol.errno("read", f.gi, err)
	}
	return fuse.ReadResultData(dest[:n]), 0
}

// readAhead queues the disk blocks that hold the read-ahead window of
// the file after off, as the guest reader maps them. Mapping errors are
// left to the reads themselves to report.
func (f *guestFile) readAhead(off int64) {
	v := f.vol
	ra := v.fsys.ra
	m, ok := v.gfs.(guest.Mapper)
	if !ok || v.disk == nil || v.vol == nil || ra == nil || ra.window <= 0 {
		return
	}
	exts, err := m.MapFile(nil, f.gi, off, ra.window)
	if err != nil {
		return
	}
	for _, e := range exts {
		if !v.spanDisk(ra, e.Off, e.Len) {
			return
		}
	}
}

// spanDisk queues for read-ahead the disk blocks under n bytes from off
// of the volume (a partition is one stretch of the disk, a logical
// volume a run per extent or stripe); false when it cannot go on.
func (v *guestVol) spanDisk(ra *readAhead, off, n int64) bool {
	for runs := 0; n > 0; runs++ {
		at, k, hole, err := v.vol.DiskExtent(off)
		if err != nil || k <= 0 || runs > 64 {
			return false
		}
		k = min(k, n)
		if !hole && !ra.span(v.disk, at, k) {
			return false
		}
		off, n = off+k, n-k
	}
	return true
}

// Lseek answers SEEK_DATA and SEEK_HOLE from the guest's block map, so
// cp --sparse and tar skip holes without reading them. A reader that
// cannot tell reports the whole file as data, as Linux does.
func (f *guestFile) Lseek(_ context.Context, _ gofs.FileHandle, off uint64, whence uint32) (uint64, syscall.Errno) {
	const seekData, seekHole = 3, 4
	if whence != seekData && whence != seekHole {
		return 0, syscall.EINVAL
	}
	a, err := f.vol.gfs.Stat(f.gi)
	if err != nil {
		return 0, f.vol.errno("seek", f.gi, err)
	}
	size := a.Size
	if off >= size {
		return 0, syscall.ENXIO
	}
	start, end := off, size
	if ds, ok := f.vol.gfs.(guest.DataSeeker); ok {
		s, e, err := ds.NextData(f.gi, int64(off))
		if err != nil {
			return 0, f.vol.errno("seek", f.gi, err)
		}
		start, end = uint64(s), uint64(e)
	}
	if whence == seekData {
		if start >= size {
			return 0, syscall.ENXIO
		}
		return start, 0
	}
	if start > off {
		return off, 0 // off is in a hole
	}
	return end, 0
}

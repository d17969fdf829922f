package fs

import (
	"context"
	"errors"
	"io"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/cairn-backup/cairn/fs/guest"
	"github.com/cairn-backup/cairn/snapshot"
)

// guestFile is a regular file of a guest filesystem. Reads are stateless
// ReadAt calls on the guest reader; a sequential reader gets the disk
// blocks under the next window of the file loaded ahead, wherever the
// guest put them.
type guestFile struct {
	gofs.Inode
	guestNode
	ahead snapshot.ReadAhead
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
	f.ahead.Note(off, int64(len(dest)), f.loadAhead)
	n, err := f.vol.gfs.ReadAt(f.gi, dest, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, f.vol.errno("read", f.gi, err)
	}
	return fuse.ReadResultData(dest[:n]), 0
}

// loadAhead queues the disk blocks that hold bytes [start, end) of the
// file, as the guest reader maps them, and says how far it got (start
// when the loaders are full, so a later read asks again). Mapping errors
// are left to the reads themselves to report.
func (f *guestFile) loadAhead(start, end int64) int64 {
	v := f.vol
	m, ok := v.gfs.(guest.Mapper)
	if !ok || v.disk == nil || v.vol == nil {
		return end
	}
	exts, err := m.MapFile(nil, f.gi, start, end-start)
	if err != nil {
		return end
	}
	for _, e := range exts {
		if got := v.spanDisk(e.Off, e.Len); got < e.Off+e.Len {
			return start
		}
	}
	return end
}

// spanDisk queues for read-ahead the disk blocks under n bytes from off
// of the volume (a partition is one stretch of the disk, a logical
// volume a run per extent or stripe) and returns how far it got: off+n
// unless the loaders are full or the volume's map cannot say.
func (v *guestVol) spanDisk(off, n int64) (reached int64) {
	for runs := 0; n > 0; runs++ {
		at, k, hole, err := v.vol.DiskExtent(off)
		if err != nil || k <= 0 || runs > maxSeekRuns {
			return off
		}
		k = min(k, n)
		if !hole {
			if got := v.disk.LoadAhead(at, at+k); got < at+k {
				return off + max(got-at, 0)
			}
		}
		off, n = off+k, n-k
	}
	return off
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

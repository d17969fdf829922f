package fs

import (
	"context"
	"errors"
	"io"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/cairn-backup/cairn/fs/guest/volume"
	"github.com/cairn-backup/cairn/snapshot"
)

// volFile is DISK/VG-LV.raw: the bytes of an LVM logical volume, read
// through the LV's map of extents (linear, striped, thin) onto the
// point's disk. Stateless reads, as diskFile; an LV that cannot be read
// (a PV on another disk) answers EIO and the log says why.
type volFile struct {
	gofs.Inode
	readOnly
	fsys *FS
	r    *snapshot.DiskReader
	vol  *volume.Volume
	// ahead follows the LV's sequential readers: the disk blocks under
	// a thin LV's next chunks lie anywhere on the disk, where the disk
	// reader's own read-ahead cannot guess them.
	ahead snapshot.ReadAhead
}

var (
	_ gofs.NodeGetattrer = (*volFile)(nil)
	_ gofs.NodeOpener    = (*volFile)(nil)
	_ gofs.NodeReader    = (*volFile)(nil)
	_ gofs.NodeLseeker   = (*volFile)(nil)
)

// maxSeekRuns bounds the runs (extents, stripes, thin chunks) one lseek
// looks at; past it, the rest is reported as data, as a filesystem that
// cannot tell does.
const maxSeekRuns = 64

func (f *volFile) fill(a *fuse.Attr) {
	a.Mode = syscall.S_IFREG | f.fsys.diskMode
	a.Uid, a.Gid = f.fsys.diskUid, f.fsys.diskGid
	a.Nlink = 1
	a.Size = uint64(f.vol.Size)
	a.Blocks = uint64(f.vol.Size+511) / 512
	a.Blksize = uint32(min(f.r.BlockSize(), 1<<20))
	setTimes(a, f.r.Point().Time)
}

func (f *volFile) Getattr(_ context.Context, _ gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	f.fill(&out.Attr)
	out.SetTimeout(immutableTimeout)
	return 0
}

func (f *volFile) Open(_ context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if flags&(syscall.O_WRONLY|syscall.O_RDWR|syscall.O_TRUNC|syscall.O_APPEND) != 0 {
		return nil, 0, syscall.EROFS
	}
	return openImmutable()
}

func (f *volFile) where() string {
	return f.r.Point().Name() + " disk " + f.r.Disk().Name + " " + f.vol.Name + diskSuffix
}

func (f *volFile) Read(_ context.Context, _ gofs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	size := f.vol.Size
	if off >= size {
		return fuse.ReadResultData(nil), 0
	}
	dest = dest[:min(int64(len(dest)), size-off)]
	f.ahead.Note(off, int64(len(dest)), func(start, end int64) int64 {
		gv := &guestVol{disk: f.r, vol: f.vol}
		return gv.spanDisk(start, min(end, size)-start)
	})
	n, err := f.vol.Reader().ReadAt(dest, off)
	if err != nil && !errors.Is(err, io.EOF) {
		f.fsys.logf("%s: read at %d: %v", f.where(), off, err)
		return nil, syscall.EIO
	}
	return fuse.ReadResultData(dest[:n]), 0
}

// Lseek answers SEEK_DATA and SEEK_HOLE from the LV's map and the
// point's block map: unwritten thin chunks and holes of the disk under
// the LV are holes. It never reports a hole where there is data.
func (f *volFile) Lseek(_ context.Context, _ gofs.FileHandle, off uint64, whence uint32) (uint64, syscall.Errno) {
	const seekData, seekHole = 3, 4
	if whence != seekData && whence != seekHole {
		return 0, syscall.EINVAL
	}
	size := f.vol.Size
	if off >= uint64(size) {
		return 0, syscall.ENXIO
	}
	pos := int64(off)
	for runs := 0; pos < size; runs++ {
		if runs == maxSeekRuns {
			if whence == seekData {
				return uint64(pos), 0
			}
			return uint64(size), 0
		}
		at, n, hole, err := f.vol.DiskExtent(pos)
		if err != nil {
			f.fsys.logf("%s: seek: %v", f.where(), err)
			return 0, syscall.EIO
		}
		n = min(n, size-pos)
		if hole {
			if whence == seekHole {
				return uint64(pos), 0
			}
			pos += n
			continue
		}
		s, e, err := f.r.NextData(at)
		if err != nil {
			f.fsys.logf("%s: seek: %v", f.where(), err)
			return 0, syscall.EIO
		}
		switch {
		case s >= at+n: // the whole run is a hole of the disk
			if whence == seekHole {
				return uint64(pos), 0
			}
		case whence == seekData:
			return uint64(pos + s - at), 0
		case s > at: // pos is in a hole
			return uint64(pos), 0
		case e < at+n: // data, then a hole inside this run
			return uint64(pos + e - at), 0
		}
		pos += n
	}
	if whence == seekData {
		return 0, syscall.ENXIO
	}
	return uint64(size), 0
}

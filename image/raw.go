package image

import (
	"errors"
	"fmt"
	"io"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Raw is a raw disk image file or a block device, read as a Source.
// Holes of a sparse file are found with SEEK_DATA/SEEK_HOLE and never
// read.
type Raw struct {
	f      *os.File
	size   int64
	device bool
}

// OpenRaw opens a raw image file or block device for reading.
func OpenRaw(path string) (*Raw, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	r := &Raw{f: f}
	switch m := st.Mode(); {
	case m.IsRegular():
		r.size = st.Size()
	case m&os.ModeDevice != 0 && m&os.ModeCharDevice == 0:
		r.device = true
		if r.size, err = f.Seek(0, io.SeekEnd); err != nil {
			f.Close()
			return nil, fmt.Errorf("%s: size of block device: %w", path, err)
		}
	case m.IsDir():
		f.Close()
		return nil, fmt.Errorf("%s: is a directory, not a disk", path)
	default:
		f.Close()
		return nil, fmt.Errorf("%s: not a disk image file or block device", path)
	}
	return r, nil
}

// File returns the underlying file, for format detection.
func (r *Raw) File() *os.File { return r.f }

// IsDevice reports whether the source is a block device.
func (r *Raw) IsDevice() bool { return r.device }

func (r *Raw) Size() int64 { return r.size }

// CurrentSize returns the size now, where Size is the size at open: a
// backup compares them after reading, to notice a source that shrank or
// grew meanwhile.
func (r *Raw) CurrentSize() (int64, error) {
	if r.device {
		var n uint64
		if err := ioctlBlkGetSize64(int(r.f.Fd()), &n); err != nil {
			return 0, fmt.Errorf("size of block device: %w", err)
		}
		return int64(n), nil
	}
	st, err := r.f.Stat()
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}

// ioctlBlkGetSize64 asks a block device its size without moving the
// file offset (which a concurrent Seek-based caller might rely on).
func ioctlBlkGetSize64(fd int, n *uint64) error {
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.BLKGETSIZE64, uintptr(unsafe.Pointer(n)))
	if errno != 0 {
		return errno
	}
	return nil
}

func (r *Raw) ReadAt(p []byte, off int64) (int, error) { return r.f.ReadAt(p, off) }

func (r *Raw) Close() error { return r.f.Close() }

// NextData implements Source. Block devices, and filesystems without
// SEEK_DATA, report everything from off on as data.
func (r *Raw) NextData(off int64) (int64, int64, error) {
	if off >= r.size {
		return r.size, r.size, nil
	}
	if r.device {
		return off, r.size, nil
	}
	fd := int(r.f.Fd())
	start, err := unix.Seek(fd, off, unix.SEEK_DATA)
	if errors.Is(err, unix.ENXIO) {
		return r.size, r.size, nil // only a hole remains
	}
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP) {
		return off, r.size, nil
	}
	if err != nil {
		return 0, 0, fmt.Errorf("seek data: %w", err)
	}
	if start >= r.size {
		return r.size, r.size, nil
	}
	end, err := unix.Seek(fd, start, unix.SEEK_HOLE)
	if err != nil || end > r.size {
		end = r.size
	}
	return start, end, nil
}

var _ Source = (*Raw)(nil)

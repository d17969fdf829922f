package fs

import (
	"context"
	"errors"
	"io"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// guestFile is a regular file of a guest filesystem. Reads are stateless
// ReadAt calls on the guest reader.
type guestFile struct {
	gofs.Inode
	guestNode
}

var (
	_ gofs.NodeOpener    = (*guestFile)(nil)
	_ gofs.NodeReader    = (*guestFile)(nil)
	_ gofs.NodeGetattrer = (*guestFile)(nil)
)

func (f *guestFile) Open(_ context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if flags&(syscall.O_WRONLY|syscall.O_RDWR|syscall.O_TRUNC|syscall.O_APPEND) != 0 {
		return nil, 0, syscall.EROFS
	}
	return nil, fuse.FOPEN_KEEP_CACHE, 0
}

func (f *guestFile) Read(_ context.Context, _ gofs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	n, err := f.vol.gfs.ReadAt(f.gi, dest, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, f.vol.errno("read", f.gi, err)
	}
	return fuse.ReadResultData(dest[:n]), 0
}

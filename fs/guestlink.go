package fs

import (
	"context"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
)

// guestLink is a symbolic link of a guest filesystem. Its target is shown
// as stored; it is resolved by the kernel, so an absolute target points
// into the host, as with any mounted filesystem.
type guestLink struct {
	gofs.Inode
	guestNode
}

var (
	_ gofs.NodeReadlinker = (*guestLink)(nil)
	_ gofs.NodeGetattrer  = (*guestLink)(nil)
)

func (l *guestLink) Readlink(context.Context) ([]byte, syscall.Errno) {
	t, err := l.vol.gfs.Readlink(l.gi)
	if err != nil {
		return nil, l.vol.errno("readlink", l.gi, err)
	}
	return []byte(t), 0
}

package fs

import (
	"context"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// guestDir is a directory of a guest filesystem.
type guestDir struct {
	gofs.Inode
	guestNode
}

var (
	_ gofs.NodeLookuper  = (*guestDir)(nil)
	_ gofs.NodeReaddirer = (*guestDir)(nil)
	_ gofs.NodeGetattrer = (*guestDir)(nil)
)

func (d *guestDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return guestLookup(ctx, &d.Inode, d.vol, d.gi, name, out)
}

func (d *guestDir) Readdir(context.Context) (gofs.DirStream, syscall.Errno) {
	return guestReaddir(d.vol, d.gi)
}

// guestLookup looks name up in guest directory gi and makes its node
// under parent; shared by guestDir and a bare disk's directory.
func guestLookup(ctx context.Context, parent *gofs.Inode, v *guestVol, gi uint64, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	ino, err := v.gfs.Lookup(gi, name)
	if err != nil {
		return nil, v.errno("lookup "+name, gi, err)
	}
	a, err := v.gfs.Stat(ino)
	if err != nil {
		return nil, v.errno("stat", ino, err)
	}
	return v.newChild(ctx, parent, &a, out), 0
}

// guestReaddir lists guest directory gi, sorted as the reader returns it.
func guestReaddir(v *guestVol, gi uint64) (gofs.DirStream, syscall.Errno) {
	ents, err := v.gfs.ReadDir(gi)
	if err != nil {
		return nil, v.errno("readdir", gi, err)
	}
	out := make([]fuse.DirEntry, len(ents))
	for i, e := range ents {
		out[i] = fuse.DirEntry{Name: e.Name, Mode: e.Mode & syscall.S_IFMT, Ino: v.ino(e.Ino)}
	}
	return gofs.NewListDirStream(out), 0
}

package fs

import (
	"context"
	"strings"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/cairn-backup/cairn/snapshot"
)

// pointDir holds the disks of one point, each as DISK.raw and as DISK/
// (the files inside it). Its content never changes.
type pointDir struct {
	gofs.Inode
	readOnly
	fsys  *FS
	point *snapshot.Point
	ino   uint64
}

var (
	_ gofs.NodeOnForgetter = (*pointDir)(nil)
	_ gofs.NodeLookuper    = (*pointDir)(nil)
	_ gofs.NodeReaddirer   = (*pointDir)(nil)
	_ gofs.NodeGetattrer   = (*pointDir)(nil)
)

const diskSuffix = ".raw"

// OnForget lets gc free the point's blocks, should it be deleted: the
// kernel no longer knows the folder, so no file of it is open. (A lookup
// cannot bring a deleted point's folder back.)
func (n *pointDir) OnForget() { n.fsys.release(n.ino) }

func (n *pointDir) Getattr(_ context.Context, _ gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	dirAttr(&out.Attr, n.point.Time)
	out.SetTimeout(immutableTimeout)
	return 0
}

func (n *pointDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	diskName, raw := strings.CutSuffix(name, diskSuffix)
	if n.point.Disk(diskName) == nil {
		return nil, syscall.ENOENT
	}
	r, err := n.fsys.vault.OpenDisk(n.point, diskName)
	if err != nil {
		return nil, n.fsys.errno("open disk", err)
	}
	if !raw {
		// The files inside the disk: nothing is read until looked into.
		dirAttr(&out.Attr, n.point.Time)
		out.SetEntryTimeout(immutableTimeout)
		out.SetAttrTimeout(immutableTimeout)
		r.SetReadAhead(-1) // see diskDir.r
		d := &diskDir{fsys: n.fsys, r: r}
		return n.NewInode(ctx, d, gofs.StableAttr{Mode: syscall.S_IFDIR, Ino: inoOf("diskdir", n.point.Resource, n.point.ID, diskName)}), 0
	}
	r.SetReadAhead(n.fsys.readAhead)
	f := newDiskFile(n.fsys, r)
	f.fill(&out.Attr)
	out.SetEntryTimeout(immutableTimeout)
	out.SetAttrTimeout(immutableTimeout)
	return n.NewInode(ctx, f, gofs.StableAttr{Mode: syscall.S_IFREG, Ino: inoOf("disk", n.point.Resource, n.point.ID, diskName)}), 0
}

func (n *pointDir) Readdir(context.Context) (gofs.DirStream, syscall.Errno) {
	p := n.point
	entries := make([]fuse.DirEntry, 0, 2*len(p.Disks))
	for _, d := range p.Disks {
		entries = append(entries,
			fuse.DirEntry{Name: d.Name, Mode: syscall.S_IFDIR, Ino: inoOf("diskdir", p.Resource, p.ID, d.Name)},
			fuse.DirEntry{Name: d.Name + diskSuffix, Mode: syscall.S_IFREG, Ino: inoOf("disk", p.Resource, p.ID, d.Name)})
	}
	return gofs.NewListDirStream(entries), 0
}

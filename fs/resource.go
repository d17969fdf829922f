package fs

import (
	"context"
	"errors"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/cairn-backup/cairn/snapshot"
)

// resourceDir lists the points of one resource, and "latest".
type resourceDir struct {
	gofs.Inode
	readOnly
	fsys *FS
	name string
}

var (
	_ gofs.NodeLookuper  = (*resourceDir)(nil)
	_ gofs.NodeReaddirer = (*resourceDir)(nil)
	_ gofs.NodeGetattrer = (*resourceDir)(nil)
)

const latestName = "latest"

func (n *resourceDir) Getattr(_ context.Context, _ gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	dirAttr(&out.Attr, n.fsys.mounted)
	out.SetTimeout(dynamicTimeout)
	return 0
}

func (n *resourceDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	out.SetEntryTimeout(dynamicTimeout)
	if name == latestName {
		ids, err := n.fsys.vault.PointIDs(n.name)
		if err != nil {
			return nil, n.fsys.errno("list points of "+n.name, err)
		}
		if len(ids) == 0 {
			return nil, syscall.ENOENT
		}
		target := ids[len(ids)-1]
		link := &latestLink{fsys: n.fsys, resource: n.name}
		link.fill(&out.Attr, target)
		out.SetAttrTimeout(dynamicTimeout)
		return n.NewInode(ctx, link, gofs.StableAttr{Mode: syscall.S_IFLNK, Ino: inoOf("latest", n.name)}), 0
	}
	p, err := n.fsys.vault.Point(n.name, name)
	if errors.Is(err, snapshot.ErrNoPoint) {
		return nil, syscall.ENOENT
	}
	if err != nil {
		return nil, n.fsys.errno("point "+n.name+"@"+name, err)
	}
	dirAttr(&out.Attr, p.Time)
	out.SetAttrTimeout(immutableTimeout)
	child := &pointDir{fsys: n.fsys, point: p}
	return n.NewInode(ctx, child, gofs.StableAttr{Mode: syscall.S_IFDIR, Ino: inoOf("point", n.name, p.ID)}), 0
}

func (n *resourceDir) Readdir(context.Context) (gofs.DirStream, syscall.Errno) {
	ids, err := n.fsys.vault.PointIDs(n.name)
	if err != nil {
		return nil, n.fsys.errno("list points of "+n.name, err)
	}
	entries := make([]fuse.DirEntry, 0, len(ids)+1)
	if len(ids) > 0 {
		entries = append(entries, fuse.DirEntry{Name: latestName, Mode: syscall.S_IFLNK, Ino: inoOf("latest", n.name)})
	}
	for _, id := range ids {
		entries = append(entries, fuse.DirEntry{Name: id, Mode: syscall.S_IFDIR, Ino: inoOf("point", n.name, id)})
	}
	return gofs.NewListDirStream(entries), 0
}

// latestLink points at the newest point of a resource; it moves when a
// new point is committed.
type latestLink struct {
	gofs.Inode
	readOnly
	fsys     *FS
	resource string
}

var (
	_ gofs.NodeReadlinker = (*latestLink)(nil)
	_ gofs.NodeGetattrer  = (*latestLink)(nil)
)

func (l *latestLink) target() (string, syscall.Errno) {
	ids, err := l.fsys.vault.PointIDs(l.resource)
	if err != nil {
		return "", l.fsys.errno("list points of "+l.resource, err)
	}
	if len(ids) == 0 {
		return "", syscall.ENOENT
	}
	return ids[len(ids)-1], 0
}

func (l *latestLink) fill(a *fuse.Attr, target string) {
	a.Mode = syscall.S_IFLNK | 0o777
	a.Size = uint64(len(target))
	a.Nlink = 1
	setTimes(a, l.fsys.mounted)
}

func (l *latestLink) Readlink(context.Context) ([]byte, syscall.Errno) {
	t, errno := l.target()
	return []byte(t), errno
}

func (l *latestLink) Getattr(_ context.Context, _ gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	t, errno := l.target()
	if errno != 0 {
		return errno
	}
	l.fill(&out.Attr, t)
	out.SetTimeout(dynamicTimeout)
	return 0
}

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
		target, errno := n.latest()
		if errno != 0 {
			return nil, errno
		}
		link := &latestLink{fsys: n.fsys, target: target}
		link.fill(&out.Attr)
		out.SetAttrTimeout(immutableTimeout)
		return n.NewInode(ctx, link, gofs.StableAttr{Mode: syscall.S_IFLNK, Ino: inoOf("latest", n.name, target)}), 0
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
	ino := inoOf("point", n.name, p.ID)
	child := &pointDir{fsys: n.fsys, point: p, ino: ino}
	in := n.NewInode(ctx, child, gofs.StableAttr{Mode: syscall.S_IFDIR, Ino: ino})
	n.fsys.hold(ino, p)
	return in, 0
}

func (n *resourceDir) Readdir(context.Context) (gofs.DirStream, syscall.Errno) {
	ids, err := n.fsys.vault.PointIDs(n.name)
	if err != nil {
		return nil, n.fsys.errno("list points of "+n.name, err)
	}
	entries := make([]fuse.DirEntry, 0, len(ids)+1)
	if len(ids) > 0 {
		latest := ids[len(ids)-1]
		entries = append(entries, fuse.DirEntry{Name: latestName, Mode: syscall.S_IFLNK, Ino: inoOf("latest", n.name, latest)})
	}
	for _, id := range ids {
		entries = append(entries, fuse.DirEntry{Name: id, Mode: syscall.S_IFDIR, Ino: inoOf("point", n.name, id)})
	}
	return gofs.NewListDirStream(entries), 0
}

// latest returns the ID of the resource's newest point.
func (n *resourceDir) latest() (string, syscall.Errno) {
	ids, err := n.fsys.vault.PointIDs(n.name)
	if err != nil {
		return "", n.fsys.errno("list points of "+n.name, err)
	}
	if len(ids) == 0 {
		return "", syscall.ENOENT
	}
	return ids[len(ids)-1], 0
}

// latestLink is the "latest" symlink as it was looked up: one inode per
// target, so the kernel may cache its text for good (symlink caching is
// on). When a newer point is committed, the next lookup of "latest",
// at most dynamicTimeout later, returns a new inode with the new target.
type latestLink struct {
	gofs.Inode
	readOnly
	fsys   *FS
	target string
}

var (
	_ gofs.NodeReadlinker = (*latestLink)(nil)
	_ gofs.NodeGetattrer  = (*latestLink)(nil)
)

func (l *latestLink) fill(a *fuse.Attr) {
	a.Mode = syscall.S_IFLNK | 0o777
	a.Size = uint64(len(l.target))
	a.Nlink = 1
	setTimes(a, l.fsys.mounted)
}

func (l *latestLink) Readlink(context.Context) ([]byte, syscall.Errno) {
	return []byte(l.target), 0
}

func (l *latestLink) Getattr(_ context.Context, _ gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	l.fill(&out.Attr)
	out.SetTimeout(immutableTimeout)
	return 0
}

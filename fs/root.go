package fs

import (
	"context"
	"slices"
	"sync"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/cairn-backup/cairn/snapshot"
)

// Kernel cache lifetimes: short where points come and go, long inside a
// point, which never changes.
const (
	dynamicTimeout   = time.Second
	immutableTimeout = time.Hour
)

// FS is the state shared by all nodes of one mount.
type FS struct {
	vault   Vault
	logf    func(string, ...any)
	mounted time.Time
	// readAhead is the most each sequential stream of a file gets loaded
	// ahead (snapshot.ReadAhead): 0 for the default, negative for none.
	readAhead int64
	// diskMode (permission bits), diskUid and diskGid are the disk
	// files' attributes.
	diskMode, diskUid, diskGid uint32

	mu    sync.Mutex
	holds map[uint64]func() // point folders the kernel knows, by inode
}

// hold keeps the point of folder ino readable while the kernel knows the
// folder: a file open in it reads on though the point is deleted, and gc
// frees its blocks only once the kernel forgets the folder.
func (f *FS) hold(ino uint64, p *snapshot.Point) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.holds[ino] == nil {
		f.holds[ino] = f.vault.Hold(p)
	}
}

func (f *FS) release(ino uint64) {
	f.mu.Lock()
	release := f.holds[ino]
	delete(f.holds, ino)
	f.mu.Unlock()
	if release != nil {
		release()
	}
}

// rootNode lists the resources of the vault.
type rootNode struct {
	gofs.Inode
	readOnly
	fsys *FS
}

var (
	_ gofs.NodeLookuper  = (*rootNode)(nil)
	_ gofs.NodeReaddirer = (*rootNode)(nil)
	_ gofs.NodeGetattrer = (*rootNode)(nil)
)

func (n *rootNode) Getattr(_ context.Context, _ gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	dirAttr(&out.Attr, n.fsys.mounted)
	out.SetTimeout(dynamicTimeout)
	return 0
}

func (n *rootNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	ids, err := n.fsys.vault.PointIDs(name)
	if err != nil {
		return nil, n.fsys.errno("list points of "+name, err)
	}
	if len(ids) == 0 {
		return nil, syscall.ENOENT
	}
	dirAttr(&out.Attr, n.fsys.mounted)
	out.SetEntryTimeout(dynamicTimeout)
	out.SetAttrTimeout(dynamicTimeout)
	child := &resourceDir{fsys: n.fsys, name: name}
	return n.NewInode(ctx, child, gofs.StableAttr{Mode: syscall.S_IFDIR, Ino: inoOf("resource", name)}), 0
}

func (n *rootNode) Readdir(context.Context) (gofs.DirStream, syscall.Errno) {
	names, err := n.fsys.vault.Resources()
	if err != nil {
		return nil, n.fsys.errno("list resources", err)
	}
	slices.Sort(names)
	entries := make([]fuse.DirEntry, len(names))
	for i, name := range names {
		entries[i] = fuse.DirEntry{Name: name, Mode: syscall.S_IFDIR, Ino: inoOf("resource", name)}
	}
	return gofs.NewListDirStream(entries), 0
}

// dirAttr fills the attributes of a synthetic, read-only directory.
func dirAttr(a *fuse.Attr, t time.Time) {
	a.Mode = syscall.S_IFDIR | 0o555
	a.Nlink = 2
	setTimes(a, t)
}

func setTimes(a *fuse.Attr, t time.Time) {
	s, ns := uint64(t.Unix()), uint32(t.Nanosecond())
	a.Atime, a.Mtime, a.Ctime = s, s, s
	a.Atimensec, a.Mtimensec, a.Ctimensec = ns, ns, ns
}

// errno logs an unexpected vault error and turns it into EIO.
func (f *FS) errno(what string, err error) syscall.Errno {
	f.logf("%s: %v", what, err)
	return syscall.EIO
}

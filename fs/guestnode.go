package fs

import (
	"context"
	"errors"
	"strconv"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/cairn-backup/cairn/fs/guest"
	"github.com/cairn-backup/cairn/fs/guest/volume"
	"github.com/cairn-backup/cairn/snapshot"
)

// guestVol is one opened guest filesystem of a point's disk: what every
// node inside it shares.
type guestVol struct {
	fsys  *FS
	gfs   guest.FS
	ident [4]string // resource, point ID, disk, volume name ("" when bare)
	// disk and vol place the volume on the point's disk, for
	// read-ahead of guest files.
	disk *snapshot.DiskReader
	vol  *volume.Volume
}

// ino is the mount's inode number of guest inode gi: stable for a given
// point, disk, partition and guest inode, so hard links share it.
func (v *guestVol) ino(gi uint64) uint64 {
	return inoOf("guest", v.ident[0], v.ident[1], v.ident[2], v.ident[3], strconv.FormatUint(gi, 10))
}

// where names a guest inode for log lines.
func (v *guestVol) where(gi uint64) string {
	s := v.ident[0] + "@" + v.ident[1] + " disk " + v.ident[2]
	if v.ident[3] != "" {
		s += " " + v.ident[3]
	}
	return s + " inode " + strconv.FormatUint(gi, 10)
}

// errno maps a guest reader's error; unexpected ones are logged and EIO.
func (v *guestVol) errno(op string, gi uint64, err error) syscall.Errno {
	switch {
	case errors.Is(err, guest.ErrNotFound):
		return syscall.ENOENT
	case errors.Is(err, guest.ErrNotDir):
		return syscall.ENOTDIR
	case errors.Is(err, guest.ErrIsDir):
		return syscall.EISDIR
	case errors.Is(err, guest.ErrNotSymlink):
		return syscall.EINVAL
	case errors.Is(err, guest.ErrNoXattr):
		return syscall.ENODATA
	}
	v.fsys.logf("%s: %s: %v", v.where(gi), op, err)
	return syscall.EIO
}

// fillAttr copies the guest's metadata unchanged into a.
func (v *guestVol) fillAttr(out *fuse.Attr, a *guest.Attr) {
	out.Ino = v.ino(a.Ino)
	out.Mode = a.Mode
	out.Nlink = a.Nlink
	out.Uid, out.Gid = a.Uid, a.Gid
	out.Size = a.Size
	out.Blocks = a.Blocks
	// fuse_attr.rdev is the kernel's new_encode_dev, which equals the low
	// 32 bits of glibc's makedev for majors below 4096.
	out.Rdev = uint32(a.Rdev)
	out.Blksize = 4096
	out.Atime, out.Atimensec = unixTime(a.Atime.Unix(), a.Atime.Nanosecond())
	out.Mtime, out.Mtimensec = unixTime(a.Mtime.Unix(), a.Mtime.Nanosecond())
	out.Ctime, out.Ctimensec = unixTime(a.Ctime.Unix(), a.Ctime.Nanosecond())
}

// unixTime clamps times before 1970, which fuse_attr cannot carry.
func unixTime(s int64, ns int) (uint64, uint32) {
	if s < 0 {
		return 0, 0
	}
	return uint64(s), uint32(ns)
}

// newChild makes the node for guest inode gi with attributes a and fills
// the entry the kernel caches.
func (v *guestVol) newChild(ctx context.Context, parent *gofs.Inode, a *guest.Attr, out *fuse.EntryOut) *gofs.Inode {
	v.fillAttr(&out.Attr, a)
	out.SetEntryTimeout(immutableTimeout)
	out.SetAttrTimeout(immutableTimeout)
	base := guestNode{vol: v, gi: a.Ino}
	var node gofs.InodeEmbedder
	switch a.Mode & syscall.S_IFMT {
	case syscall.S_IFDIR:
		node = &guestDir{guestNode: base}
	case syscall.S_IFREG:
		f := &guestFile{guestNode: base}
		f.ahead.SetMax(v.fsys.readAhead)
		node = f
	case syscall.S_IFLNK:
		node = &guestLink{guestNode: base}
	default: // devices, fifos, sockets: attributes only
		node = &guestSpecial{guestNode: base}
	}
	return parent.NewInode(ctx, node, gofs.StableAttr{Mode: a.Mode & syscall.S_IFMT, Ino: v.ino(a.Ino)})
}

// guestNode is what every node inside a guest filesystem has: its
// attributes and extended attributes. It depends on no parent, so one
// node serves every hard link to its inode.
type guestNode struct {
	readOnly
	vol *guestVol
	gi  uint64 // the guest's inode number
}

var (
	_ gofs.NodeGetattrer   = (*guestNode)(nil)
	_ gofs.NodeGetxattrer  = (*guestNode)(nil)
	_ gofs.NodeListxattrer = (*guestNode)(nil)
)

func (n *guestNode) Getattr(_ context.Context, _ gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	a, err := n.vol.gfs.Stat(n.gi)
	if err != nil {
		return n.vol.errno("stat", n.gi, err)
	}
	n.vol.fillAttr(&out.Attr, &a)
	out.SetTimeout(immutableTimeout)
	return 0
}

// Getxattr follows the size-probe protocol: a buffer too small (empty,
// when the caller asks for the size) gets the size and ERANGE.
func (n *guestNode) Getxattr(_ context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	val, err := n.vol.gfs.GetXattr(n.gi, attr)
	if err != nil {
		return 0, n.vol.errno("getxattr "+attr, n.gi, err)
	}
	if len(dest) < len(val) {
		return uint32(len(val)), syscall.ERANGE
	}
	return uint32(copy(dest, val)), 0
}

func (n *guestNode) Listxattr(_ context.Context, dest []byte) (uint32, syscall.Errno) {
	names, err := n.vol.gfs.ListXattr(n.gi)
	if err != nil {
		return 0, n.vol.errno("listxattr", n.gi, err)
	}
	size := 0
	for _, s := range names {
		size += len(s) + 1
	}
	if len(dest) < size {
		return uint32(size), syscall.ERANGE
	}
	off := 0
	for _, s := range names {
		off += copy(dest[off:], s)
		dest[off] = 0
		off++
	}
	return uint32(size), 0
}

// guestSpecial is a device node, fifo or socket of the guest: shown with
// its type and device number, never opened through to the host.
type guestSpecial struct {
	gofs.Inode
	guestNode
}

var _ gofs.NodeGetattrer = (*guestSpecial)(nil)

package ntfs

import (
	"encoding/binary"
	"syscall"

	"github.com/cairn-backup/cairn/fs/guest"
)

// Interix special files as ntfs-3g writes them by default: a file with
// the system attribute whose data starts with one of these magics.
const (
	intxSymlink = 0x014B4E4C78746E49 // "IntxLNK\1", then the UTF-16 target
	intxChr     = 0x0052484378746E49 // "IntxCHR\0", then major, minor (64 bits each)
	intxBlk     = 0x004B4C4278746E49 // "IntxBLK\0"
	intxHdr     = 8
	intxDevSize = 24
	pathMax     = 4096
)

// kind is what a file shows as: its st_mode, device number, and for
// symlinks where the target comes from.
type kind struct {
	mode uint32
	rdev uint64
	// For symlinks: intx says the target is the Interix data; tag is
	// the reparse tag otherwise. bad marks a reparse point shown as a
	// symlink to a text naming its tag, as ntfs-3g shows the ones it
	// cannot follow.
	intx bool
	tag  uint32
	bad  bool
	// intxSize is the data size of an Interix special file, which
	// ntfs-3g reports as its size.
	intxSize uint64
}

// userInode returns the file ino if it is one a user may see: the root
// or a file past the metadata records.
func (fs *FS) userInode(ino uint64) (*inode, error) {
	if ino < firstUser && ino != RootIno {
		return nil, notFound(ino)
	}
	return fs.inode(ino)
}

// kind decides the file type the way ntfs-3g's getattr does with its
// default options (no user mapping): directories and files 0777,
// symlinks 0777, Interix fifos, sockets and devices 0777, WSL fifos,
// sockets and devices without permission bits.
func (fs *FS) kind(in *inode) (kind, error) {
	in.kindOnce.Do(func() { in.kindVal, in.kindErr = fs.findKind(in) })
	return in.kindVal, in.kindErr
}

func (fs *FS) findKind(in *inode) (kind, error) {
	reparse := in.fileAttrs&faReparse != 0
	if in.isDirRecord() || reparse {
		if !reparse {
			return kind{mode: syscall.S_IFDIR | 0o777}, nil
		}
		rp, err := fs.reparsePoint(in)
		if err != nil {
			return kind{}, err
		}
		bad := kind{mode: syscall.S_IFLNK | 0o777, tag: rp.tag, bad: true}
		if !rp.valid {
			return bad, nil
		}
		switch rp.tag {
		case tagMountPoint, tagSymlink, tagLXSymlink:
			return kind{mode: syscall.S_IFLNK | 0o777, tag: rp.tag}, nil
		case tagAFUnix:
			return kind{mode: syscall.S_IFSOCK, tag: rp.tag}, nil
		case tagLXFifo:
			return kind{mode: syscall.S_IFIFO, tag: rp.tag}, nil
		case tagLXChr, tagLXBlk:
			rdev, ok, err := fs.wslDevice(in)
			if err != nil {
				return kind{}, err
			}
			if !ok {
				return bad, nil
			}
			mode := uint32(syscall.S_IFCHR)
			if rp.tag == tagLXBlk {
				mode = syscall.S_IFBLK
			}
			return kind{mode: mode, rdev: rdev, tag: rp.tag}, nil
		}
		return bad, nil
	}
	k := kind{mode: syscall.S_IFREG}
	if d := in.data; in.fileAttrs&faSystem != 0 {
		if d == nil {
			return k, nil // ntfs-3g gives such a file no permission bits
		}
		if in.fileAttrs&faHidden == 0 {
			switch d.size {
			case 0:
				k.mode = syscall.S_IFIFO
			case 1:
				k.mode = syscall.S_IFSOCK
			}
		}
		if d.size > intxHdr && d.size <= intxHdr+2*pathMax {
			hdr := make([]byte, min(d.size, intxDevSize))
			if err := fs.readStream(in.ino, d, hdr, 0); err != nil {
				return kind{}, err
			}
			le := binary.LittleEndian
			switch le.Uint64(hdr) {
			case intxBlk, intxChr:
				if d.size == intxDevSize {
					k.mode = syscall.S_IFCHR
					if le.Uint64(hdr) == intxBlk {
						k.mode = syscall.S_IFBLK
					}
					k.rdev = mkdev(le.Uint64(hdr[8:]), le.Uint64(hdr[16:]))
				}
			case intxSymlink:
				k.mode = syscall.S_IFLNK
				k.intx = true
			}
		}
		if k.mode&syscall.S_IFMT != syscall.S_IFREG {
			k.intxSize = d.size
		}
	}
	k.mode |= 0o777
	return k, nil
}

// nlink counts the names of in that directories list: its $FILE_NAME
// attributes less the DOS 8.3 aliases, as the kernel's ntfs3 driver
// counts them. The record's own link count also counts an alias
// written as a separate name, which would make every file with a short
// name look hard-linked.
func (in *inode) nlink() uint32 {
	n := uint32(0)
	for _, fn := range in.names {
		if fn.ns != nsDOS {
			n++
		}
	}
	return max(n, 1)
}

// mkdev encodes a device number as glibc's makedev does (st_rdev).
func mkdev(major, minor uint64) uint64 {
	return (major&0xfffff000)<<32 | (major&0xfff)<<8 | (minor&0xffffff00)<<12 | minor&0xff
}

// Stat returns the metadata of file ino, mapped as ntfs-3g maps it with
// its default options: owner and group 0, the modes kind gives, times
// from $STANDARD_INFORMATION (atime: last access, mtime: last data
// change, ctime: last MFT record change), one link per listed name (1
// for directories), sizes from the data or, for directories, from the
// index allocation.
func (fs *FS) Stat(ino uint64) (guest.Attr, error) {
	in, err := fs.userInode(ino)
	if err != nil {
		return guest.Attr{}, err
	}
	k, err := fs.kind(in)
	if err != nil {
		return guest.Attr{}, err
	}
	a := guest.Attr{
		Ino:   ino,
		Mode:  k.mode,
		Nlink: in.nlink(),
		Rdev:  k.rdev,
		Atime: in.atime,
		Mtime: in.mtime,
		Ctime: in.ctime,
	}
	if d := in.data; d != nil {
		a.Blocks = (d.compSize + 511) / 512
	}
	switch k.mode & syscall.S_IFMT {
	case syscall.S_IFDIR:
		a.Nlink = 1 // ntfs-3g's default, which makes find(1) work
		if ia := in.indexAlloc; ia != nil {
			a.Size, a.Blocks = ia.size, ia.allocSize/512
		}
	case syscall.S_IFREG:
		if d := in.data; d != nil {
			a.Size = d.size
		}
	case syscall.S_IFLNK:
		t, err := fs.Readlink(ino)
		if err != nil {
			return guest.Attr{}, err
		}
		a.Size = uint64(len(t))
	default:
		a.Size = k.intxSize
	}
	return a, nil
}

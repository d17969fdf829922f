package xfs

import (
	"encoding/binary"
	"fmt"
	"syscall"
	"time"

	"github.com/cairn-backup/cairn/fs/guest"
)

const (
	inodeMagic   = 0x494E // "IN"
	coreSizeV2   = 100    // inode core of versions 1 and 2
	coreSizeV3   = 176    // inode core of version 3 (v5 filesystems)
	inodeCRCOff  = 0x64
	inodeInoOff  = 0x98
	inodeUUIDOff = 0xA0
)

// Fork formats (di_format, di_aformat).
const (
	fmtDev     = 0
	fmtLocal   = 1
	fmtExtents = 2
	fmtBtree   = 3
)

// di_flags and di_flags2 bits this reader looks at.
const (
	diflagRealtime = 0x1
	diflag2Bigtime = 0x8
	diflag2Nrext64 = 0x10
)

// fork is one of an inode's two forks: the data fork (file contents,
// directory blocks, symlink target) or the attribute fork.
type fork struct {
	format   uint8
	raw      []byte   // the fork's bytes in the inode's literal area
	extents  []extent // parsed when format is fmtExtents
	nextents uint64
	attr     bool // the attribute fork
}

// inode is the parsed, immutable form of one on-disk inode.
type inode struct {
	ino     uint64
	mode    uint16
	nlink   uint32
	uid     uint32
	gid     uint32
	size    uint64
	nblocks uint64 // filesystem blocks, both forks and their btrees
	flags   uint16
	atime   time.Time
	mtime   time.Time
	ctime   time.Time
	data    fork
	attr    *fork // nil without an attribute fork
}

func (in *inode) fileType() uint32 { return uint32(in.mode) & syscall.S_IFMT }
func (in *inode) isDir() bool      { return in.fileType() == syscall.S_IFDIR }
func (in *inode) isReg() bool      { return in.fileType() == syscall.S_IFREG }
func (in *inode) isLink() bool     { return in.fileType() == syscall.S_IFLNK }

func corruptInode(ino uint64, format string, args ...any) error {
	return fmt.Errorf("xfs: inode %d: %s: %w", ino, fmt.Sprintf(format, args...), guest.ErrCorrupt)
}

// inodeErr adds the inode to an error from below that already wraps a
// sentinel.
func inodeErr(ino uint64, what string, err error) error {
	return fmt.Errorf("xfs: inode %d: %s: %w", ino, what, err)
}

// inode returns the parsed inode ino, from the cache when possible.
func (fs *FS) inode(ino uint64) (*inode, error) {
	if in, ok := fs.inodes.Get(ino); ok {
		return in, nil
	}
	blk, off, ok := fs.sb.inodeBlock(ino)
	if !ok || ino == 0 {
		return nil, fmt.Errorf("xfs: inode %d out of range: %w", ino, guest.ErrNotFound)
	}
	b, err := fs.blocksAt(blk, 1)
	if err != nil {
		return nil, inodeErr(ino, "read", err)
	}
	in, err := fs.parseInode(ino, b[off:off+uint64(fs.sb.inodeSize)])
	if err != nil {
		return nil, err
	}
	fs.inodes.Add(ino, in, 1)
	return in, nil
}

func (fs *FS) parseInode(ino uint64, b []byte) (*inode, error) {
	be := binary.BigEndian
	if be.Uint16(b) != inodeMagic {
		return nil, corruptInode(ino, "bad magic")
	}
	version := b[4]
	core := coreSizeV2
	switch {
	case fs.sb.crc() && version == 3:
		core = coreSizeV3
		if !crcOK(b, inodeCRCOff) {
			return nil, corruptInode(ino, "bad CRC")
		}
		if got := be.Uint64(b[inodeInoOff:]); got != ino {
			return nil, corruptInode(ino, "inode says it is number %d", got)
		}
		if [16]byte(b[inodeUUIDOff:inodeUUIDOff+16]) != fs.metaUUID() {
			return nil, corruptInode(ino, "inode of another filesystem")
		}
	case !fs.sb.crc() && (version == 1 || version == 2):
	default:
		return nil, corruptInode(ino, "version %d on a v%d filesystem", version, fs.sb.version)
	}
	in := &inode{ino: ino}
	in.mode = be.Uint16(b[2:])
	switch in.fileType() {
	case syscall.S_IFREG, syscall.S_IFDIR, syscall.S_IFLNK, syscall.S_IFCHR, syscall.S_IFBLK, syscall.S_IFIFO, syscall.S_IFSOCK:
	case 0:
		return nil, corruptInode(ino, "not in use")
	default:
		return nil, corruptInode(ino, "mode %#o", in.mode)
	}
	in.uid = be.Uint32(b[0x8:])
	in.gid = be.Uint32(b[0xC:])
	if version == 1 {
		in.nlink = uint32(be.Uint16(b[0x6:]))
	} else {
		in.nlink = be.Uint32(b[0x10:])
	}
	var flags2 uint64
	if version == 3 {
		flags2 = be.Uint64(b[0x78:])
	}
	bigtime := flags2&diflag2Bigtime != 0
	in.atime = decodeTime(be.Uint64(b[0x20:]), bigtime)
	in.mtime = decodeTime(be.Uint64(b[0x28:]), bigtime)
	in.ctime = decodeTime(be.Uint64(b[0x30:]), bigtime)
	in.size = be.Uint64(b[0x38:])
	in.nblocks = be.Uint64(b[0x40:])
	var nextents, anextents uint64
	if flags2&diflag2Nrext64 != 0 {
		nextents = be.Uint64(b[0x18:])
		anextents = uint64(be.Uint32(b[0x4C:]))
	} else {
		nextents = uint64(be.Uint32(b[0x4C:]))
		anextents = uint64(be.Uint16(b[0x50:]))
	}
	forkOff := int(b[0x52]) * 8
	aformat := b[0x53]
	in.flags = be.Uint16(b[0x5A:])
	if in.size > 1<<63-1 {
		return nil, corruptInode(ino, "size %d", in.size)
	}

	lit := b[core:]
	dsize := len(lit)
	if forkOff != 0 {
		if forkOff >= len(lit) {
			return nil, corruptInode(ino, "attribute fork at offset %d of a %d-byte literal area", forkOff, len(lit))
		}
		dsize = forkOff
	}
	in.data = fork{format: b[5], raw: append([]byte(nil), lit[:dsize]...), nextents: nextents}
	if err := fs.checkFork(in, &in.data); err != nil {
		return nil, err
	}
	if forkOff != 0 {
		in.attr = &fork{format: aformat, raw: append([]byte(nil), lit[forkOff:]...), nextents: anextents, attr: true}
		if err := fs.checkFork(in, in.attr); err != nil {
			return nil, err
		}
	}
	return in, nil
}

// checkFork checks that a fork's format suits the inode and parses an
// extent list kept in the inode.
func (fs *FS) checkFork(in *inode, f *fork) error {
	what := "data"
	if f.attr {
		what = "attribute"
	}
	ok := false
	switch f.format {
	case fmtDev:
		t := in.fileType()
		ok = !f.attr && (t == syscall.S_IFCHR || t == syscall.S_IFBLK || t == syscall.S_IFIFO || t == syscall.S_IFSOCK)
	case fmtLocal:
		ok = f.attr || in.isDir() || in.isLink()
	case fmtExtents:
		if f.nextents > uint64(len(f.raw)/extentSize) {
			return corruptInode(in.ino, "%d %s extents in a %d-byte fork", f.nextents, what, len(f.raw))
		}
		exts, err := fs.parseExtents(in.ino, f.raw[:f.nextents*extentSize])
		if err != nil {
			return err
		}
		f.extents, ok = exts, true
	case fmtBtree:
		ok = len(f.raw) >= bmdrHeader+16
	}
	if !ok {
		return corruptInode(in.ino, "%s fork format %d for mode %#o", what, f.format, in.mode)
	}
	if !f.attr && in.flags&diflagRealtime != 0 && (f.format == fmtExtents || f.format == fmtBtree) && in.isReg() {
		// Its blocks live on the realtime device, which is not part of
		// this volume; reads fail rather than show the wrong blocks.
		f.format = fmtRealtime
	}
	return nil
}

// fmtRealtime marks a data fork whose blocks lie on a realtime device.
const fmtRealtime = 0xFF

// decodeTime reads a timestamp: seconds and nanoseconds since 1970 as
// two signed 32-bit words, or with bigtime nanoseconds since the end of
// 1901 (the smallest 32-bit time) in one unsigned 64-bit word.
func decodeTime(v uint64, bigtime bool) time.Time {
	if bigtime {
		const epochOffset = 1 << 31
		return time.Unix(int64(v/1e9)-epochOffset, int64(v%1e9))
	}
	sec, ns := int64(int32(v>>32)), int64(int32(v))
	if ns < 0 || ns > 999_999_999 {
		ns = 0
	}
	return time.Unix(sec, ns)
}

// rdev decodes the device number of a device inode: XFS keeps major in
// the high 14 bits and minor in the low 18 of one 32-bit word. The result
// uses the Linux dev_t encoding of st_rdev.
func (in *inode) rdev() uint64 {
	if len(in.data.raw) < 4 {
		return 0
	}
	d := binary.BigEndian.Uint32(in.data.raw)
	major, minor := uint64(d>>18)&0x1ff, uint64(d&0x3ffff)
	return (major&0xfffff000)<<32 | (major&0xfff)<<8 | (minor&0xffffff00)<<12 | minor&0xff
}

// Stat returns the metadata of inode ino.
func (fs *FS) Stat(ino uint64) (guest.Attr, error) {
	in, err := fs.inode(ino)
	if err != nil {
		return guest.Attr{}, err
	}
	a := guest.Attr{
		Ino:    ino,
		Mode:   uint32(in.mode),
		Nlink:  in.nlink,
		Uid:    in.uid,
		Gid:    in.gid,
		Size:   in.size,
		Blocks: in.nblocks << (fs.sb.blockLog - 9),
		Atime:  in.atime,
		Mtime:  in.mtime,
		Ctime:  in.ctime,
	}
	switch in.fileType() {
	case syscall.S_IFCHR, syscall.S_IFBLK:
		a.Rdev = in.rdev()
		a.Size = 0
	case syscall.S_IFIFO, syscall.S_IFSOCK:
		a.Size = 0
	}
	return a, nil
}

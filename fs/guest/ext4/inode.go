package ext4

import (
	"encoding/binary"
	"fmt"
	"syscall"
	"time"

	"github.com/cairn-backup/cairn/fs/guest"
)

// Inode flags this reader looks at.
const (
	flagIndex      = 0x1000
	flagHugeFile   = 0x40000
	flagExtents    = 0x80000
	flagEAInode    = 0x200000
	flagInlineData = 0x10000000
	flagCasefold   = 0x40000000
)

const goodOldInodeSize = 128

// inode is the parsed, immutable form of one on-disk inode.
type inode struct {
	ino     uint64
	mode    uint16
	nlink   uint16
	uid     uint32
	gid     uint32
	size    uint64
	blocks  uint64 // 512-byte units
	flags   uint32
	fileACL uint64
	iblock  [60]byte
	atime   time.Time
	mtime   time.Time
	ctime   time.Time
	// ibody is the in-inode extended attribute area (after i_extra_isize),
	// empty when the inode has none.
	ibody []byte
	// csumSeed starts the checksums of the inode's own metadata blocks
	// (extent tree, directory blocks): crc32c of the filesystem seed, the
	// inode number and the generation.
	csumSeed uint32
}

func (in *inode) fileType() uint32 { return uint32(in.mode) & syscall.S_IFMT }
func (in *inode) isDir() bool      { return in.fileType() == syscall.S_IFDIR }
func (in *inode) isReg() bool      { return in.fileType() == syscall.S_IFREG }
func (in *inode) isLink() bool     { return in.fileType() == syscall.S_IFLNK }
func (in *inode) inline() bool     { return in.flags&flagInlineData != 0 }

// unused reports an inode no file owns: mode 0 is never a file's, and
// a directory entry naming it is damage (e2fsck's "deleted/unused
// inode").
func (in *inode) unused() bool { return in.mode == 0 }

func corruptInode(ino uint64, format string, args ...any) error {
	return fmt.Errorf("ext4: inode %d: %s: %w", ino, fmt.Sprintf(format, args...), guest.ErrCorrupt)
}

// inode returns the parsed inode ino, from the cache when possible.
func (fs *FS) inode(ino uint64) (*inode, error) {
	if ino == 0 || ino > uint64(fs.sb.inodesCount) {
		return nil, fmt.Errorf("ext4: inode %d out of range: %w", ino, guest.ErrNotFound)
	}
	if in, ok := fs.inodes.Get(ino); ok {
		return in, nil
	}
	var in *inode
	if raw, ok := fs.fc.replayed(ino); ok {
		// Replayed from a fast commit: its checksum is the replay's.
		var err error
		if in, err = fs.parseInodeCsum(ino, raw, false); err != nil {
			return nil, err
		}
	} else {
		blk, off, err := fs.inodeLoc(ino)
		if err != nil {
			return nil, err
		}
		b, err := fs.block(blk)
		if err != nil {
			return nil, fmt.Errorf("ext4: inode %d: %w", ino, err)
		}
		if in, err = fs.parseInode(ino, b[off:off+uint64(fs.sb.inodeSize)]); err != nil {
			return nil, err
		}
	}
	fs.inodes.Add(ino, in, 1)
	return in, nil
}

// inodeLoc returns the block holding inode ino and its offset there.
func (fs *FS) inodeLoc(ino uint64) (blk, off uint64, err error) {
	group := (ino - 1) / uint64(fs.sb.inodesPerGroup)
	index := (ino - 1) % uint64(fs.sb.inodesPerGroup)
	table, err := fs.inodeTable(group)
	if err != nil {
		return 0, 0, corruptInodeErr(ino, "inode table", err)
	}
	isz := uint64(fs.sb.inodeSize)
	bs := uint64(fs.sb.blockSize)
	pos := index * isz
	blk = table + pos/bs
	if table == 0 || blk < table {
		return 0, 0, corruptInode(ino, "group %d has inode table at block %d", group, table)
	}
	return blk, pos % bs, nil
}

func (fs *FS) parseInode(ino uint64, b []byte) (*inode, error) {
	return fs.parseInodeCsum(ino, b, true)
}

// parseInodeCsum parses the on-disk inode b, checking its checksum when
// verify is set and the filesystem has them.
func (fs *FS) parseInodeCsum(ino uint64, b []byte, verify bool) (*inode, error) {
	le := binary.LittleEndian
	in := &inode{ino: ino}
	in.mode = le.Uint16(b[0x0:])
	in.uid = uint32(le.Uint16(b[0x2:])) | uint32(le.Uint16(b[0x78:]))<<16
	in.gid = uint32(le.Uint16(b[0x18:])) | uint32(le.Uint16(b[0x7A:]))<<16
	in.size = uint64(le.Uint32(b[0x4:]))
	// i_size_high was i_dir_acl in old ext2, so a directory counts it
	// only with large_dir; every other inode does (as e2fsprogs reads it).
	if !in.isDir() || fs.sb.has(incompatLargeDir) {
		in.size |= uint64(le.Uint32(b[0x6C:])) << 32
	}
	in.nlink = le.Uint16(b[0x1A:])
	in.flags = le.Uint32(b[0x20:])
	in.blocks = uint64(le.Uint32(b[0x1C:]))
	if fs.sb.roCompat&roCompatHugeFile != 0 {
		in.blocks |= uint64(le.Uint16(b[0x74:])) << 32
		if in.flags&flagHugeFile != 0 {
			in.blocks *= uint64(fs.sb.blockSize / 512)
		}
	}
	in.fileACL = uint64(le.Uint32(b[0x68:])) | uint64(le.Uint16(b[0x76:]))<<32
	copy(in.iblock[:], b[0x28:0x28+60])

	// The extra fields exist only as far as i_extra_isize says.
	extra := 0
	if len(b) > goodOldInodeSize {
		extra = int(le.Uint16(b[0x80:]))
		if extra%4 != 0 || goodOldInodeSize+extra > len(b) {
			return nil, corruptInode(ino, "i_extra_isize %d", extra)
		}
	}
	if fs.sb.metadataCsum() {
		seed := crc32cLE(crc32cLE(fs.sb.csumSeed, uint32(ino)), le.Uint32(b[0x64:]))
		in.csumSeed = seed
		if verify && fs.sb.linuxOS && !inodeCsumOK(seed, b, extra) && !allZero(b) {
			// An all-zero inode is one never written (lazy inode
			// tables); it reads as unused rather than damaged.
			return nil, corruptInode(ino, "inode checksum does not match")
		}
	}
	field := func(off int) (uint32, bool) {
		if off+4 <= goodOldInodeSize+extra {
			return le.Uint32(b[off:]), true
		}
		return 0, false
	}
	ts := func(secOff, extraOff int) time.Time {
		x, ok := field(extraOff)
		return decodeTime(le.Uint32(b[secOff:]), x, ok)
	}
	in.atime = ts(0x8, 0x8C)
	in.ctime = ts(0xC, 0x84)
	in.mtime = ts(0x10, 0x88)
	if body := b[goodOldInodeSize+extra:]; len(body) >= 4 && le.Uint32(body) == xattrMagic {
		in.ibody = append([]byte(nil), body...)
	}
	return in, nil
}

// inodeCsumOK checks the crc32c of the on-disk inode b: the low 16 bits
// at 0x7C, the high ones at 0x82 when i_extra_isize reaches them; both
// fields count as zeros.
func inodeCsumOK(seed uint32, b []byte, extra int) bool {
	le := binary.LittleEndian
	crc := crc32c(seed, b[:0x7C])
	crc = crc32c(crc, zeros[:2])
	if len(b) <= goodOldInodeSize || extra < 4 {
		crc = crc32c(crc, b[0x7E:])
		return uint16(crc) == le.Uint16(b[0x7C:])
	}
	crc = crc32c(crc, b[0x7E:0x82])
	crc = crc32c(crc, zeros[:2])
	crc = crc32c(crc, b[0x84:])
	return crc == uint32(le.Uint16(b[0x7C:]))|uint32(le.Uint16(b[0x82:]))<<16
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// decodeTime joins a signed 32-bit seconds field with the optional extra
// word: two epoch bits extending the seconds, thirty bits of nanoseconds.
func decodeTime(sec, extra uint32, hasExtra bool) time.Time {
	s := int64(int32(sec))
	var ns int64
	if hasExtra {
		s += int64(extra&3) << 32
		ns = int64(extra >> 2)
		if ns > 999_999_999 {
			ns = 0
		}
	}
	return time.Unix(s, ns)
}

// rdev decodes the device number kept in i_block: the old 16-bit form in
// word 0, or the new 32-bit form in word 1. The result uses the Linux
// dev_t encoding of st_rdev.
func (in *inode) rdev() uint64 {
	le := binary.LittleEndian
	var major, minor uint64
	if old := le.Uint32(in.iblock[0:]); old != 0 {
		major, minor = uint64(old>>8)&0xff, uint64(old)&0xff
	} else {
		n := uint64(le.Uint32(in.iblock[4:]))
		major = (n & 0xfff00) >> 8
		minor = (n & 0xff) | ((n >> 12) & 0xfff00)
	}
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
		Nlink:  uint32(in.nlink),
		Uid:    in.uid,
		Gid:    in.gid,
		Size:   in.size,
		Blocks: in.blocks,
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

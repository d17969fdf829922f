package xfs

import (
	"encoding/binary"
	"fmt"
	"math/bits"

	"github.com/cairn-backup/cairn/fs/guest"
)

const (
	sbMagic    = 0x58465342 // "XFSB"
	sbReadSize = 512        // the fields this reader uses fit in the first sector
	sbCRCOff   = 0xE0
)

// sb_versionnum bits.
const (
	versionNumBits = 0x000f
	versionDirV2   = 0x2000
	versionMore    = 0x8000
)

// sb_features2 bits (v4; mirrored on v5).
const features2Ftype = 0x200

// v5 incompat features. The reader follows every one of these; an
// unknown bit may change the on-disk format, so such a volume is refused.
const (
	incompatFtype      = 0x1
	incompatSpinodes   = 0x2
	incompatMetaUUID   = 0x4
	incompatBigtime    = 0x8
	incompatNeedRepair = 0x10
	incompatNrext64    = 0x20
	incompatExchange   = 0x40
	incompatParent     = 0x80
	incompatMetadir    = 0x100
	incompatKnown      = incompatFtype | incompatSpinodes | incompatMetaUUID | incompatBigtime |
		incompatNeedRepair | incompatNrext64 | incompatExchange | incompatParent | incompatMetadir
)

type superblock struct {
	version    int // 4 or 5
	blockSize  uint32
	blockLog   uint8
	sectSize   uint32
	dblocks    uint64
	agBlocks   uint32
	agCount    uint32
	agBlkLog   uint8
	inodeSize  uint32
	inodeLog   uint8
	inoPBLog   uint8 // log2 of inodes per block
	dirBlkLog  uint8
	rootIno    uint64
	logStart   uint64 // fs block of an internal log; 0 for an external one
	logBlocks  uint32
	ftype      bool // directory entries carry the file type
	incompat   uint32
	metaUUID   [16]byte // the UUID v5 metadata blocks carry
	inoBits    uint     // bits of an inode number below the AG number
	needRepair bool
}

func (sb *superblock) crc() bool { return sb.version == 5 }

func corruptSuper(format string, args ...any) error {
	return fmt.Errorf("xfs: superblock: %s: %w", fmt.Sprintf(format, args...), guest.ErrCorrupt)
}

// parseSuper checks every field later code divides by, shifts by or
// multiplies with, so the rest of the reader can trust them. b is the
// first sector of the volume.
func parseSuper(b []byte) (superblock, error) {
	be := binary.BigEndian
	var sb superblock
	if be.Uint32(b) != sbMagic {
		return sb, fmt.Errorf("xfs: no superblock magic: %w", guest.ErrUnknown)
	}
	vnum := be.Uint16(b[0x64:])
	sb.version = int(vnum & versionNumBits)
	switch sb.version {
	case 4:
		if vnum&versionDirV2 == 0 {
			return sb, fmt.Errorf("xfs: version 1 directories are not supported: %w", guest.ErrUnknown)
		}
	case 5:
	default:
		return sb, fmt.Errorf("xfs: superblock version %d is not supported: %w", sb.version, guest.ErrUnknown)
	}
	sb.blockSize = be.Uint32(b[0x4:])
	sb.dblocks = be.Uint64(b[0x8:])
	copy(sb.metaUUID[:], b[0x20:0x30])
	sb.logStart = be.Uint64(b[0x30:])
	sb.rootIno = be.Uint64(b[0x38:])
	sb.agBlocks = be.Uint32(b[0x54:])
	sb.agCount = be.Uint32(b[0x58:])
	sb.logBlocks = be.Uint32(b[0x60:])
	sb.sectSize = uint32(be.Uint16(b[0x66:]))
	sb.inodeSize = uint32(be.Uint16(b[0x68:]))
	inoPerBlock := uint32(be.Uint16(b[0x6A:]))
	sb.blockLog = b[0x78]
	sectLog := b[0x79]
	sb.inodeLog = b[0x7A]
	sb.inoPBLog = b[0x7B]
	sb.agBlkLog = b[0x7C]
	sb.dirBlkLog = b[0xC0]
	features2 := be.Uint32(b[0xC8:]) | be.Uint32(b[0xCC:]) // bad_features2 may hold the bits
	if sb.version == 5 {
		sb.incompat = be.Uint32(b[0xD8:])
		if u := sb.incompat &^ incompatKnown; u != 0 {
			return sb, fmt.Errorf("xfs: unknown incompatible features %#x: %w", u, guest.ErrUnknown)
		}
		sb.ftype = sb.incompat&incompatFtype != 0
		sb.needRepair = sb.incompat&incompatNeedRepair != 0
		if sb.incompat&incompatMetaUUID != 0 {
			copy(sb.metaUUID[:], b[0xF8:0x108])
		}
	} else {
		sb.ftype = vnum&versionMore != 0 && features2&features2Ftype != 0
	}

	pow2 := func(v uint32, log uint8) bool { return log < 32 && v == 1<<log }
	switch {
	case sb.blockLog < 9 || sb.blockLog > 16 || !pow2(sb.blockSize, sb.blockLog):
		return sb, corruptSuper("block size %d (log %d)", sb.blockSize, sb.blockLog)
	case sectLog < 9 || sectLog > 15 || !pow2(sb.sectSize, sectLog) || sb.sectSize > sb.blockSize && sb.sectSize > 4096:
		return sb, corruptSuper("sector size %d", sb.sectSize)
	case sb.inodeLog < 8 || sb.inodeLog > 11 || !pow2(sb.inodeSize, sb.inodeLog) || sb.inodeSize > sb.blockSize:
		return sb, corruptSuper("inode size %d", sb.inodeSize)
	case sb.version == 5 && sb.inodeSize < 512:
		return sb, corruptSuper("inode size %d on a v5 filesystem", sb.inodeSize)
	case sb.inoPBLog != sb.blockLog-sb.inodeLog || inoPerBlock != 1<<sb.inoPBLog:
		return sb, corruptSuper("%d inodes per block", inoPerBlock)
	case sb.agBlocks < 16 || sb.agBlkLog > 31 || uint32(1)<<sb.agBlkLog < sb.agBlocks || sb.agBlkLog != uint8(bits.Len32(sb.agBlocks-1)):
		return sb, corruptSuper("%d blocks per AG (log %d)", sb.agBlocks, sb.agBlkLog)
	case sb.agCount == 0 || sb.dblocks == 0 ||
		sb.dblocks > uint64(sb.agCount)*uint64(sb.agBlocks) || sb.dblocks <= uint64(sb.agCount-1)*uint64(sb.agBlocks):
		return sb, corruptSuper("%d blocks in %d AGs of %d", sb.dblocks, sb.agCount, sb.agBlocks)
	case uint32(sb.blockLog)+uint32(sb.dirBlkLog) > 16:
		return sb, corruptSuper("directory block size 2^%d", uint32(sb.blockLog)+uint32(sb.dirBlkLog))
	}
	sb.inoBits = uint(sb.agBlkLog) + uint(sb.inoPBLog) // at most 31+8
	if _, _, ok := sb.inodeBlock(sb.rootIno); !ok || sb.rootIno == 0 {
		return sb, corruptSuper("root inode %d", sb.rootIno)
	}
	if sb.logStart != 0 {
		if _, ok := sb.linear(sb.logStart, uint64(sb.logBlocks)); !ok || sb.logBlocks == 0 {
			return sb, corruptSuper("log of %d blocks at %d", sb.logBlocks, sb.logStart)
		}
	}
	return sb, nil
}

// agSize returns the number of blocks of AG agno; the last may be short.
func (sb *superblock) agSize(agno uint64) uint64 {
	if agno == uint64(sb.agCount)-1 {
		return sb.dblocks - agno*uint64(sb.agBlocks)
	}
	return uint64(sb.agBlocks)
}

// linear turns the filesystem block number fsb (AG number in the high
// bits, block in the AG below agblklog) into a block number counted from
// the start of the volume, checking that n blocks from there stay inside
// one AG.
func (sb *superblock) linear(fsb, n uint64) (uint64, bool) {
	agno := fsb >> sb.agBlkLog
	agbno := fsb & (1<<sb.agBlkLog - 1)
	if agno >= uint64(sb.agCount) {
		return 0, false
	}
	size := sb.agSize(agno)
	if agbno >= size || n > size-agbno {
		return 0, false
	}
	return agno*uint64(sb.agBlocks) + agbno, true
}

// inodeBlock returns the linear block holding inode ino and the inode's
// byte offset within it.
func (sb *superblock) inodeBlock(ino uint64) (uint64, uint64, bool) {
	agno := ino >> sb.inoBits
	agbno := (ino >> sb.inoPBLog) & (1<<sb.agBlkLog - 1)
	if agno >= uint64(sb.agCount) {
		return 0, 0, false
	}
	lin, ok := sb.linear(agno<<sb.agBlkLog|agbno, 1)
	if !ok {
		return 0, 0, false
	}
	return lin, (ino & (1<<sb.inoPBLog - 1)) << sb.inodeLog, true
}

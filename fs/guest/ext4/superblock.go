package ext4

import (
	"encoding/binary"
	"fmt"

	"github.com/cairn-backup/cairn/fs/guest"
)

const (
	superOffset = 1024
	superSize   = 1024
	superMagic  = 0xEF53
	rootIno     = 2
)

// Feature bits this reader looks at.
const (
	compatSparseSuper2 = 0x200
	compatFastCommit   = 0x400

	incompatCompression = 0x1
	incompatFiletype    = 0x2
	incompatRecover     = 0x4 // the journal holds transactions to replay
	incompatJournalDev  = 0x8
	incompatMetaBG      = 0x10
	incompatExtents     = 0x40
	incompat64bit       = 0x80
	incompatCsumSeed    = 0x2000
	incompatLargeDir    = 0x4000
	incompatInlineData  = 0x8000
	incompatCasefold    = 0x20000

	roCompatSparseSuper  = 0x1
	roCompatHugeFile     = 0x8
	roCompatGdtCsum      = 0x10
	roCompatBigalloc     = 0x200
	roCompatMetadataCsum = 0x400
)

type superblock struct {
	inodesCount    uint32
	blocksCount    uint64
	firstDataBlock uint32
	blockSize      uint32
	blocksPerGroup uint32
	inodesPerGroup uint32
	inodeSize      uint32
	compat         uint32
	incompat       uint32
	roCompat       uint32
	descSize       uint32
	firstMetaBG    uint32
	backupBGs      [2]uint32
	groups         uint64
	journalIno     uint32 // 0 without an internal journal
	clusterBits    uint32 // log2 of blocks per cluster; 0 without bigalloc
	uuid           [16]byte
	// csumSeed starts every metadata_csum checksum: crc32c of the UUID,
	// or the stored seed with the csum_seed feature.
	csumSeed uint32
	linuxOS  bool   // created by Linux: only then are inode checksums checked
	encoding uint16 // casefold encoding (1: UTF-8)
	encFlags uint16 // casefold encoding flags (1: strict)
}

func (sb *superblock) has(incompat uint32) bool { return sb.incompat&incompat != 0 }

// metadataCsum reports whether metadata blocks and inodes carry crc32c
// checksums.
func (sb *superblock) metadataCsum() bool { return sb.roCompat&roCompatMetadataCsum != 0 }

// clusterSize returns the allocation unit in bytes: the block size
// unless bigalloc groups blocks into clusters.
func (sb *superblock) clusterSize() uint64 { return uint64(sb.blockSize) << sb.clusterBits }

func corruptSuper(format string, args ...any) error {
	return fmt.Errorf("ext4: superblock: %s: %w", fmt.Sprintf(format, args...), guest.ErrCorrupt)
}

// parseSuper checks every field later code divides by, shifts by or
// multiplies with, so the rest of the reader can trust them.
func parseSuper(b []byte) (superblock, error) {
	le := binary.LittleEndian
	var sb superblock
	if le.Uint16(b[0x38:]) != superMagic {
		return sb, fmt.Errorf("ext4: no superblock magic: %w", guest.ErrUnknown)
	}
	sb.inodesCount = le.Uint32(b[0x0:])
	sb.blocksCount = uint64(le.Uint32(b[0x4:]))
	sb.firstDataBlock = le.Uint32(b[0x14:])
	logBS := le.Uint32(b[0x18:])
	sb.blocksPerGroup = le.Uint32(b[0x20:])
	sb.inodesPerGroup = le.Uint32(b[0x28:])
	rev := le.Uint32(b[0x4C:])
	sb.inodeSize = 128
	if rev >= 1 {
		sb.inodeSize = uint32(le.Uint16(b[0x58:]))
		sb.compat = le.Uint32(b[0x5C:])
		sb.incompat = le.Uint32(b[0x60:])
		sb.roCompat = le.Uint32(b[0x64:])
	}
	sb.firstMetaBG = le.Uint32(b[0x104:])
	sb.journalIno = le.Uint32(b[0xE0:])
	sb.backupBGs = [2]uint32{le.Uint32(b[0x24C:]), le.Uint32(b[0x250:])}
	copy(sb.uuid[:], b[0x68:0x78])
	sb.linuxOS = le.Uint32(b[0x48:]) == 0
	logCS := le.Uint32(b[0x1C:])
	clustersPerGroup := le.Uint32(b[0x24:])
	sb.encoding = le.Uint16(b[0x27C:])
	sb.encFlags = le.Uint16(b[0x27E:])

	if sb.incompat&incompatJournalDev != 0 {
		return sb, fmt.Errorf("ext4: external journal device, not a filesystem: %w", guest.ErrUnknown)
	}
	if sb.incompat&incompatCompression != 0 {
		return sb, fmt.Errorf("ext4: compressed ext2 is not supported: %w", guest.ErrUnknown)
	}
	if logBS > 6 {
		return sb, corruptSuper("block size 2^%d KiB", logBS)
	}
	sb.blockSize = 1024 << logBS
	bs := sb.blockSize
	if sb.has(incompat64bit) {
		sb.blocksCount |= uint64(le.Uint32(b[0x150:])) << 32
		sb.descSize = uint32(le.Uint16(b[0xFE:]))
		if sb.descSize < 64 || sb.descSize > 1024 || sb.descSize&(sb.descSize-1) != 0 {
			return sb, corruptSuper("group descriptor size %d", sb.descSize)
		}
	} else {
		sb.descSize = 32
	}
	if sb.roCompat&roCompatBigalloc != 0 {
		// Bitmaps count clusters: a group holds up to 8*bs clusters of
		// 2^(log_cluster_size - log_block_size) blocks each.
		if logCS < logBS || logCS-logBS > 16 {
			return sb, corruptSuper("cluster size 2^%d KiB with blocks of 2^%d KiB", logCS, logBS)
		}
		sb.clusterBits = logCS - logBS
		if clustersPerGroup == 0 || clustersPerGroup > 8*bs || uint64(clustersPerGroup)<<sb.clusterBits != uint64(sb.blocksPerGroup) {
			return sb, corruptSuper("%d blocks per group in %d clusters of %d", sb.blocksPerGroup, clustersPerGroup, 1<<sb.clusterBits)
		}
	} else if sb.blocksPerGroup == 0 || sb.blocksPerGroup > 8*bs {
		return sb, corruptSuper("%d blocks per group", sb.blocksPerGroup)
	}
	if sb.inodesPerGroup == 0 || sb.inodesPerGroup > 8*bs {
		return sb, corruptSuper("%d inodes per group", sb.inodesPerGroup)
	}
	if sb.inodeSize < 128 || sb.inodeSize > bs || sb.inodeSize&(sb.inodeSize-1) != 0 {
		return sb, corruptSuper("inode size %d", sb.inodeSize)
	}
	if bs == 1024 && sb.firstDataBlock != 1 || bs > 1024 && sb.firstDataBlock != 0 {
		// mke2fs with 1 KiB blocks and a cluster ratio may use 0; allow it.
		if sb.firstDataBlock > 1 {
			return sb, corruptSuper("first data block %d", sb.firstDataBlock)
		}
	}
	if sb.blocksCount <= uint64(sb.firstDataBlock) || sb.blocksCount > 1<<48 {
		return sb, corruptSuper("%d blocks", sb.blocksCount)
	}
	sb.groups = (sb.blocksCount - uint64(sb.firstDataBlock) + uint64(sb.blocksPerGroup) - 1) / uint64(sb.blocksPerGroup)
	if sb.inodesCount < rootIno || uint64(sb.inodesCount) > sb.groups*uint64(sb.inodesPerGroup) {
		return sb, corruptSuper("%d inodes in %d groups of %d", sb.inodesCount, sb.groups, sb.inodesPerGroup)
	}
	if sb.metadataCsum() {
		if b[0x175] != 1 {
			return sb, corruptSuper("checksum type %d", b[0x175])
		}
		if sb.has(incompatCsumSeed) {
			sb.csumSeed = le.Uint32(b[0x270:])
		} else {
			sb.csumSeed = crc32c(^uint32(0), sb.uuid[:])
		}
	}
	return sb, nil
}

// hasSuper reports whether group g carries a superblock backup, which
// shifts where a meta_bg group keeps its descriptor block.
func (sb *superblock) hasSuper(g uint64) bool {
	if g == 0 {
		return true
	}
	if sb.compat&compatSparseSuper2 != 0 {
		return g == uint64(sb.backupBGs[0]) || g == uint64(sb.backupBGs[1])
	}
	if g <= 1 || sb.roCompat&roCompatSparseSuper == 0 {
		return true
	}
	if g&1 == 0 {
		return false
	}
	for _, base := range []uint64{3, 5, 7} {
		n := base
		for n < g {
			n *= base
		}
		if n == g {
			return true
		}
	}
	return false
}

// descBlock returns the block holding the descriptor of group g. The
// table follows the block holding the superblock (block 1 with 1 KiB
// blocks, else 0), whatever the first data block (0 with bigalloc).
func (sb *superblock) descBlock(g uint64) uint64 {
	perBlock := uint64(sb.blockSize / sb.descSize)
	idx := g / perBlock
	sbBlock := uint64(0)
	if sb.blockSize == 1024 {
		sbBlock = 1
	}
	if !sb.has(incompatMetaBG) || idx < uint64(sb.firstMetaBG) {
		return sbBlock + 1 + idx
	}
	first := idx * perBlock
	blk := uint64(sb.firstDataBlock) + first*uint64(sb.blocksPerGroup)
	if sb.hasSuper(first) {
		blk++
	}
	if sb.blockSize == 1024 && idx == 0 && sb.firstDataBlock == 0 {
		blk++ // group 0 starts at block 0 but its superblock is in block 1
	}
	return blk
}

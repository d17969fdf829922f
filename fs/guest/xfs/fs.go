package xfs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/cairn-backup/cairn/fs/guest"
	"github.com/cairn-backup/cairn/fs/guest/lru"
)

var _ guest.FS = (*FS)(nil)

// Cache budgets. They bound memory whatever the volume size.
const (
	blockCacheBytes = 4 << 20  // metadata blocks: inode clusters, btree nodes, directory and attribute blocks
	inodeCacheCount = 4096     // parsed inodes
	dirCacheBytes   = 32 << 20 // parsed directory listings
)

// Options tune Open; the zero value is the default.
type Options struct {
	// Logf receives one line for each piece of damage the reader works
	// around rather than fails on: a directory block left out of a
	// listing, an entry whose inode cannot be read. Discarded when nil.
	Logf func(format string, args ...any)
}

// FS is a read-only XFS filesystem. All methods are safe for concurrent
// use; no lock is held while reading the underlying volume.
type FS struct {
	r    io.ReaderAt
	size int64
	sb   superblock
	logf func(string, ...any)

	blocks *lru.Cache[blockKey, []byte]
	inodes *lru.Cache[uint64, *inode]
	dirs   *lru.Cache[uint64, []guest.DirEntry]

	logErr error // why the log is not known to be clean
}

// blockKey names n linear blocks from blk.
type blockKey struct {
	blk uint64
	n   uint32
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// crcOK checks the CRC32c that v5 metadata keeps little-endian at off,
// computed over b with that field taken as zero.
func crcOK(b []byte, off int) bool {
	var zero [4]byte
	c := crc32.Update(0, castagnoli, b[:off])
	c = crc32.Update(c, castagnoli, zero[:])
	c = crc32.Update(c, castagnoli, b[off+4:])
	return c == binary.LittleEndian.Uint32(b[off:])
}

// Probe reports whether r starts with an XFS superblock magic.
func Probe(r io.ReaderAt, size int64) bool {
	if size < sbReadSize {
		return false
	}
	var b [4]byte
	if _, err := r.ReadAt(b[:], 0); err != nil {
		return false
	}
	return binary.BigEndian.Uint32(b[:]) == sbMagic
}

// Open reads the superblock of the volume r of size bytes, checks the
// log and that the root directory is readable. Everything else is read
// on demand.
func Open(r io.ReaderAt, size int64) (*FS, error) {
	return OpenOptions(r, size, Options{})
}

// OpenOptions is Open with options.
func OpenOptions(r io.ReaderAt, size int64, o Options) (*FS, error) {
	if size < sbReadSize {
		return nil, fmt.Errorf("xfs: volume of %d bytes too small: %w", size, guest.ErrUnknown)
	}
	b := make([]byte, sbReadSize)
	if n, err := r.ReadAt(b, 0); n != len(b) {
		return nil, fmt.Errorf("xfs: read superblock: %w", err)
	}
	sb, err := parseSuper(b)
	if err != nil {
		return nil, err
	}
	if sb.crc() {
		// The CRC covers the whole sector.
		sect := make([]byte, sb.sectSize)
		if n, err := r.ReadAt(sect, 0); n != len(sect) {
			return nil, fmt.Errorf("xfs: read superblock: %w", err)
		}
		if !crcOK(sect, sbCRCOff) {
			return nil, corruptSuper("bad CRC")
		}
	}
	fs := &FS{
		r:      r,
		size:   size,
		sb:     sb,
		logf:   o.Logf,
		blocks: lru.New[blockKey, []byte](max(blockCacheBytes, 16*int(sb.blockSize)<<sb.dirBlkLog)),
		inodes: lru.New[uint64, *inode](inodeCacheCount),
		dirs:   lru.New[uint64, []guest.DirEntry](dirCacheBytes),
	}
	if fs.logf == nil {
		fs.logf = func(string, ...any) {}
	}
	fs.logErr = fs.checkLog()
	root, err := fs.inode(sb.rootIno)
	if err != nil {
		return nil, fmt.Errorf("xfs: root directory: %w", err)
	}
	if !root.isDir() {
		return nil, fmt.Errorf("xfs: root inode %d is not a directory: %w", sb.rootIno, guest.ErrCorrupt)
	}
	return fs, nil
}

// LogErr reports why the filesystem may not be shown as its kernel would
// mount it: its log holds changes to replay (it was backed up while
// mounted), which this reader does not replay, or the log could not be
// read. The filesystem then reads as last checkpointed. It is nil when
// the log is clean.
func (fs *FS) LogErr() error { return fs.logErr }

// Root returns the inode number of the root directory.
func (fs *FS) Root() uint64 { return fs.sb.rootIno }

// BlockSize returns the filesystem block size in bytes.
func (fs *FS) BlockSize() uint32 { return fs.sb.blockSize }

// Version returns the superblock version: 4, or 5 for filesystems with
// metadata checksums.
func (fs *FS) Version() int { return fs.sb.version }

// readRaw fills p from the volume at off; a short read means a truncated
// or damaged volume.
func (fs *FS) readRaw(p []byte, off uint64) error {
	if off > uint64(fs.size) || uint64(len(p)) > uint64(fs.size)-off {
		return fmt.Errorf("xfs: read of %d bytes at %d past the end of the %d-byte volume: %w",
			len(p), off, fs.size, guest.ErrCorrupt)
	}
	n, err := fs.r.ReadAt(p, int64(off))
	if n == len(p) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		return fmt.Errorf("xfs: short read at %d: %w", off, guest.ErrCorrupt)
	}
	return fmt.Errorf("xfs: read at %d: %w", off, err)
}

// blocksAt returns n linear blocks from blk through the cache. The result
// is shared: callers must not modify it. Callers verify what they read
// (magic, CRC) on every use, so a damaged block is never trusted from the
// cache either.
func (fs *FS) blocksAt(blk uint64, n uint32) ([]byte, error) {
	k := blockKey{blk, n}
	if b, ok := fs.blocks.Get(k); ok {
		return b, nil
	}
	if blk >= fs.sb.dblocks || uint64(n) > fs.sb.dblocks-blk {
		return nil, fmt.Errorf("xfs: block %d outside the %d-block filesystem: %w", blk, fs.sb.dblocks, guest.ErrCorrupt)
	}
	b := make([]byte, int(n)<<fs.sb.blockLog)
	if err := fs.readRaw(b, blk<<fs.sb.blockLog); err != nil {
		return nil, err
	}
	fs.blocks.Add(k, b, len(b))
	return b, nil
}

// daddr is the 512-byte sector address of linear block blk, which v5
// headers record to catch misplaced writes.
func (fs *FS) daddr(blk uint64) uint64 { return blk << (fs.sb.blockLog - 9) }

// checkHeader verifies the self-describing part of a v5 metadata block:
// its CRC at crcOff, its sector address, owner and filesystem UUID. Zero
// offsets skip a field.
func (fs *FS) checkHeader(b []byte, crcOff, blknoOff, ownerOff, uuidOff int, blk, owner uint64) error {
	be := binary.BigEndian
	switch {
	case !crcOK(b, crcOff):
		return errors.New("bad CRC")
	case blknoOff != 0 && be.Uint64(b[blknoOff:]) != fs.daddr(blk):
		return fmt.Errorf("block says it lies at sector %d, read at %d", be.Uint64(b[blknoOff:]), fs.daddr(blk))
	case ownerOff != 0 && be.Uint64(b[ownerOff:]) != owner:
		return fmt.Errorf("block owned by inode %d", be.Uint64(b[ownerOff:]))
	case uuidOff != 0 && [16]byte(b[uuidOff:uuidOff+16]) != fs.metaUUID():
		return errors.New("block of another filesystem")
	}
	return nil
}

// metaUUID is the UUID v5 metadata carries: the superblock's, or the
// original one kept in sb_meta_uuid once the UUID was changed.
func (fs *FS) metaUUID() [16]byte { return fs.sb.metaUUID }

func isCorrupt(err error) bool { return errors.Is(err, guest.ErrCorrupt) }

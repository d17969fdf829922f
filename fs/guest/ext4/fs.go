package ext4

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/cairn-backup/cairn/fs/guest"
	"github.com/cairn-backup/cairn/fs/guest/lru"
)

var _ guest.FS = (*FS)(nil)

// Cache budgets. They bound memory whatever the volume size.
const (
	blockCacheBytes = 4 << 20  // metadata blocks: descriptors, inode tables, tree nodes, xattrs
	inodeCacheCount = 4096     // parsed inodes
	dirCacheBytes   = 32 << 20 // parsed directory listings
)

// Options tune Open. The zero value is the default.
type Options struct {
	// Logf receives one line for each piece of damage the reader works
	// around rather than fails on: a directory entry left out of its
	// listing, a journal block or transaction not replayed. Discarded
	// when nil. It may be called from any goroutine.
	Logf func(format string, args ...any)
}

// FS is a read-only ext2, ext3 or ext4 filesystem. All methods are safe
// for concurrent use; no lock is held while reading the underlying volume.
type FS struct {
	r    io.ReaderAt
	size int64
	sb   superblock
	logf func(format string, args ...any)

	blocks *lru.Cache[uint64, []byte]
	inodes *lru.Cache[uint64, *inode]
	dirs   *lru.Cache[uint64, *dirListing]

	journalErr error    // why a journal that needs recovery was not replayed
	fc         *fcState // what fast commits changed; nil without
}

// Probe reports whether r starts with an ext2/3/4 superblock magic.
func Probe(r io.ReaderAt, size int64) bool {
	if size < superOffset+superSize {
		return false
	}
	var b [2]byte
	if _, err := r.ReadAt(b[:], superOffset+0x38); err != nil {
		return false
	}
	return binary.LittleEndian.Uint16(b[:]) == superMagic
}

// Open reads the superblock of the volume r of size bytes and checks that
// the root directory is readable. Everything else is read on demand.
func Open(r io.ReaderAt, size int64) (*FS, error) {
	return OpenOptions(r, size, Options{})
}

// OpenOptions is Open with options.
func OpenOptions(r io.ReaderAt, size int64, o Options) (*FS, error) {
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	if size < superOffset+superSize {
		return nil, fmt.Errorf("ext4: volume of %d bytes too small: %w", size, guest.ErrUnknown)
	}
	b := make([]byte, superSize)
	if n, err := r.ReadAt(b, superOffset); n != len(b) {
		return nil, fmt.Errorf("ext4: read superblock: %w", err)
	}
	sb, err := parseSuper(b)
	if err != nil {
		return nil, err
	}
	fs := newFS(r, size, sb, o.Logf)
	if sb.has(incompatRecover) && sb.journalIno != 0 {
		// Replay what the journal committed, in memory. A journal this
		// reader cannot follow leaves the volume as it lies, as before,
		// and says so through JournalErr.
		copies, fc, err := fs.replayJournal()
		if err == nil && (len(copies) > 0 || len(fc) > 0) {
			ov := &journalOverlay{r: r, bs: int64(sb.blockSize), copies: copies}
			var sb2 superblock
			if _, err = ov.ReadAt(b, superOffset); err == nil {
				if sb2, err = parseSuper(b); err == nil {
					fs = newFS(ov, size, sb2, o.Logf)
					if len(fc) > 0 {
						fs.applyFastCommit(fc)
					}
				}
			}
		}
		fs.journalErr = err
	}
	root, err := fs.inode(rootIno)
	if err != nil {
		return nil, err
	}
	if !root.isDir() {
		return nil, fmt.Errorf("ext4: root inode is not a directory: %w", guest.ErrCorrupt)
	}
	return fs, nil
}

func newFS(r io.ReaderAt, size int64, sb superblock, logf func(string, ...any)) *FS {
	return &FS{
		r:      r,
		size:   size,
		sb:     sb,
		logf:   logf,
		blocks: lru.New[uint64, []byte](max(blockCacheBytes, 16*int(sb.blockSize))),
		inodes: newInodeCache(),
		dirs:   newDirCache(),
	}
}

func newInodeCache() *lru.Cache[uint64, *inode] { return lru.New[uint64, *inode](inodeCacheCount) }
func newDirCache() *lru.Cache[uint64, *dirListing] {
	return lru.New[uint64, *dirListing](dirCacheBytes)
}

// JournalErr reports why the journal of a filesystem that needs recovery
// could not be replayed; the filesystem then reads as last checkpointed.
// It is nil when there was nothing to replay or the replay succeeded.
func (fs *FS) JournalErr() error { return fs.journalErr }

// Root returns the inode number of the root directory, always 2.
func (fs *FS) Root() uint64 { return rootIno }

// BlockSize returns the filesystem block size in bytes.
func (fs *FS) BlockSize() uint32 { return fs.sb.blockSize }

// readRaw fills p from the volume at off; a short read means a truncated
// or damaged volume.
func (fs *FS) readRaw(p []byte, off uint64) error {
	if off > uint64(fs.size) || uint64(len(p)) > uint64(fs.size)-off {
		return fmt.Errorf("ext4: read of %d bytes at %d past the end of the %d-byte volume: %w",
			len(p), off, fs.size, guest.ErrCorrupt)
	}
	n, err := fs.r.ReadAt(p, int64(off))
	if n == len(p) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		return fmt.Errorf("ext4: short read at %d: %w", off, guest.ErrCorrupt)
	}
	return fmt.Errorf("ext4: read at %d: %w", off, err)
}

// checkRange verifies that n blocks from blk lie inside the filesystem.
func (fs *FS) checkRange(blk, n uint64) bool {
	return blk < fs.sb.blocksCount && n <= fs.sb.blocksCount-blk
}

// block returns the metadata block blk through the cache. The result is
// shared: callers must not modify it.
func (fs *FS) block(blk uint64) ([]byte, error) {
	if b, ok := fs.blocks.Get(blk); ok {
		return b, nil
	}
	if !fs.checkRange(blk, 1) {
		return nil, fmt.Errorf("ext4: block %d outside the %d-block filesystem: %w", blk, fs.sb.blocksCount, guest.ErrCorrupt)
	}
	b := make([]byte, fs.sb.blockSize)
	if err := fs.readRaw(b, blk*uint64(fs.sb.blockSize)); err != nil {
		return nil, err
	}
	fs.blocks.Add(blk, b, len(b))
	return b, nil
}

// inodeTable returns the first block of group g's inode table, once its
// descriptor passes its checksum: a damaged descriptor could send every
// inode of the group to the wrong place.
func (fs *FS) inodeTable(g uint64) (uint64, error) {
	b, err := fs.block(fs.sb.descBlock(g))
	if err != nil {
		return 0, fmt.Errorf("ext4: group %d descriptor: %w", g, err)
	}
	off := (g % uint64(fs.sb.blockSize/fs.sb.descSize)) * uint64(fs.sb.descSize)
	d := b[off : off+uint64(fs.sb.descSize)]
	if !fs.descCsumOK(g, d) {
		return 0, fmt.Errorf("ext4: group %d descriptor checksum does not match: %w", g, guest.ErrCorrupt)
	}
	blk := uint64(binary.LittleEndian.Uint32(d[0x8:]))
	if fs.sb.descSize >= 64 {
		blk |= uint64(binary.LittleEndian.Uint32(d[0x28:])) << 32
	}
	return blk, nil
}

// descCsumOK checks bg_checksum (0x1E) of group g's descriptor d: the
// low 16 bits of crc32c with metadata_csum, crc16 with gdt_csum.
func (fs *FS) descCsumOK(g uint64, d []byte) bool {
	want := binary.LittleEndian.Uint16(d[0x1E:])
	switch {
	case fs.sb.metadataCsum():
		crc := crc32cLE(fs.sb.csumSeed, uint32(g))
		return uint16(crc32cSkip(crc, d, 0x1E, 2)) == want
	case fs.sb.roCompat&roCompatGdtCsum != 0:
		var le [4]byte
		binary.LittleEndian.PutUint32(le[:], uint32(g))
		crc := crc16(0xFFFF, fs.sb.uuid[:])
		crc = crc16(crc, le[:])
		crc = crc16(crc, d[:0x1E])
		if fs.sb.has(incompat64bit) {
			crc = crc16(crc, d[0x20:])
		}
		return crc == want
	}
	return true
}

package ntfs

import (
	"errors"
	"fmt"
	"io"

	"github.com/cairn-backup/cairn/fs/guest"
	"github.com/cairn-backup/cairn/fs/guest/lru"
)

var _ guest.FS = (*FS)(nil)

// RootIno is the inode number of the root directory: its MFT record.
const RootIno = 5

// firstUser is the first MFT record of an ordinary file; the ones below
// hold the metadata files ($MFT, $LogFile, ...), hidden as ntfs-3g hides
// them.
const firstUser = 16

// Cache budgets. They bound memory whatever the volume size.
const (
	inodeCacheBytes = 32 << 20 // parsed files: records, runlists
	dirCacheBytes   = 32 << 20 // parsed directory listings
	unitCacheBytes  = 8 << 20  // decompressed compression units
	linkCacheBytes  = 1 << 20  // symlink targets
)

// Options tune Open. The zero value is the default.
type Options struct {
	// Logf receives one line for each damaged item a directory listing
	// leaves out (an entry whose file record cannot be read, an index
	// block that fails its checks). nil drops them.
	Logf func(format string, args ...any)
}

// FS is a read-only NTFS volume. All methods are safe for concurrent
// use; no lock is held while reading the underlying volume.
type FS struct {
	r    io.ReaderAt
	size int64
	bt   boot
	mft  *stream // the unnamed $DATA of $MFT: where every record lies
	logf func(format string, args ...any)

	inodes *lru.Cache[uint64, *inode]
	dirs   *lru.Cache[uint64, *listing]
	units  *lru.Cache[unitKey, []byte]
	links  *lru.Cache[uint64, string] // symlink targets, which may take path lookups
}

// Open reads the boot sector and the $MFT record of the NTFS volume r of
// size bytes, and checks that the root directory is readable. Everything
// else is read on demand. The error wraps guest.ErrUnknown when r holds
// no NTFS, guest.ErrCorrupt when it is damaged.
func Open(r io.ReaderAt, size int64, o Options) (*FS, error) {
	if size < bootSize {
		return nil, fmt.Errorf("ntfs: volume of %d bytes too small: %w", size, guest.ErrUnknown)
	}
	b := make([]byte, bootSize)
	if n, err := r.ReadAt(b, 0); n != len(b) {
		return nil, fmt.Errorf("ntfs: read boot sector: %w", err)
	}
	bt, err := parseBoot(b, size)
	if err != nil {
		return nil, err
	}
	fs := &FS{
		r:      r,
		size:   size,
		bt:     bt,
		logf:   o.Logf,
		inodes: lru.New[uint64, *inode](inodeCacheBytes),
		dirs:   lru.New[uint64, *listing](dirCacheBytes),
		units:  lru.New[unitKey, []byte](unitCacheBytes),
		links:  lru.New[uint64, string](linkCacheBytes),
	}
	if fs.logf == nil {
		fs.logf = func(string, ...any) {}
	}
	if err := fs.loadMFT(); err != nil {
		return nil, err
	}
	root, err := fs.inode(RootIno)
	if err != nil {
		if errors.Is(err, guest.ErrNotFound) {
			return nil, fmt.Errorf("ntfs: root directory record is free: %w", guest.ErrCorrupt)
		}
		return nil, fmt.Errorf("ntfs: root directory: %w", err)
	}
	if !root.isDirRecord() || root.indexRoot == nil {
		return nil, fmt.Errorf("ntfs: root directory record holds no directory: %w", guest.ErrCorrupt)
	}
	return fs, nil
}

// loadMFT finds where the MFT lies. Record 0 is read at the cluster the
// boot sector names; the extent of its $DATA found there maps the start
// of the MFT, which is enough to read the extension records that map the
// rest when $MFT has an attribute list.
func (fs *FS) loadMFT() error {
	rs := fs.bt.recordSize
	b := make([]byte, rs)
	if err := fs.readRaw(b, fs.bt.mftLCN*fs.bt.clusterSize); err != nil {
		return fmt.Errorf("ntfs: $MFT record: %w", err)
	}
	r, err := parseRecord(0, b)
	if err != nil {
		return err
	}
	if r.flags&recInUse == 0 {
		return corruptRecord(0, "$MFT record is free")
	}
	var first []rawAttr
	for _, a := range r.attrs {
		if a.typ == atData && a.name == "" && !a.resident && a.lowVCN == 0 {
			first = append(first, a)
		}
	}
	if len(first) != 1 {
		return corruptRecord(0, "$MFT has %d first data extents", len(first))
	}
	boot := fs.joinExtents(0, first)
	if boot.err != nil && boot.runs == nil {
		// The first extent alone claims the whole allocation; map just
		// what it holds to read the extension records.
		boot.err = nil
		var end uint64
		var ok bool
		boot.runs, end, ok = decodeRuns(nil, first[0].mapping, 0, fs.bt.totalClusters)
		if !ok {
			return corruptRecord(0, "$MFT runlist")
		}
		boot.allocSize = end * fs.bt.clusterSize
		boot.initSize = min(boot.initSize, boot.allocSize)
		boot.size = min(boot.size, boot.allocSize)
	}
	if boot.flags&(attrCompressed|attrEncrypted) != 0 {
		return corruptRecord(0, "$MFT data flags 0x%x", boot.flags)
	}
	in, err := fs.loadInode(0, boot)
	if errors.Is(err, guest.ErrNotFound) {
		return corruptRecord(0, "$MFT record cannot be found through its own runlist: %v", err)
	}
	if err != nil {
		return fmt.Errorf("ntfs: $MFT: %w", err)
	}
	if in.data == nil || in.data.resident {
		return corruptRecord(0, "$MFT has no data")
	}
	if in.data.err != nil {
		return in.data.err
	}
	if in.data.initSize < firstUser*rs {
		return corruptRecord(0, "$MFT of %d bytes", in.data.initSize)
	}
	fs.mft = in.data
	return nil
}

// Root returns the inode number of the root directory, RootIno.
func (fs *FS) Root() uint64 { return RootIno }

// ClusterSize returns the cluster size in bytes.
func (fs *FS) ClusterSize() uint64 { return fs.bt.clusterSize }

// readRaw fills p from the volume at off; a short read means a truncated
// or damaged volume.
func (fs *FS) readRaw(p []byte, off uint64) error {
	if off > uint64(fs.size) || uint64(len(p)) > uint64(fs.size)-off {
		return fmt.Errorf("ntfs: read of %d bytes at %d past the end of the %d-byte volume: %w",
			len(p), off, fs.size, guest.ErrCorrupt)
	}
	n, err := fs.r.ReadAt(p, int64(off))
	if n == len(p) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		return fmt.Errorf("ntfs: short read at %d: %w", off, guest.ErrCorrupt)
	}
	return fmt.Errorf("ntfs: read at %d: %w", off, err)
}

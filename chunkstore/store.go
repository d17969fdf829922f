package chunkstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/cairn-backup/cairn/chunkstore/storage"
	"github.com/cairn-backup/cairn/index"
)

// Options tune a Store. The zero value means "default" for every field.
type Options struct {
	// CacheSize bounds the decompressed-block cache in bytes. Default 64 MiB.
	CacheSize int64
	// ReadOnly says the index may not be written: damage found while
	// reading is reported but not recorded.
	ReadOnly bool
	// Logf receives notes on damage recorded; discarded when nil.
	Logf func(format string, args ...any)
}

// Store reads and writes blocks. It is safe for concurrent use.
type Store struct {
	st    storage.Storage
	idx   *index.DB
	cache *blockCache
	o     Options

	mu     sync.Mutex
	marked map[Hash]index.Location // damage recorded by this store
}

// New returns a store over st, indexed by idx.
func New(st storage.Storage, idx *index.DB, o Options) *Store {
	if o.CacheSize <= 0 {
		o.CacheSize = 64 << 20
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	return &Store{st: st, idx: idx, cache: newBlockCache(o.CacheSize), o: o, marked: map[Hash]index.Location{}}
}

// Close releases the store. The storage and index stay open.
func (s *Store) Close() error { return nil }

// Storage returns the storage the store's packs live in.
func (s *Store) Storage() storage.Storage { return s.st }

// PackName is the storage name of pack id.
func PackName(id index.PackID) string { return id.String() + ".pack" }

// Has reports whether block h is stored in a copy that is not known to
// be damaged: a backup refers to such a block instead of storing it
// again.
func (s *Store) Has(h Hash) (bool, error) {
	loc, err := s.idx.Block(h)
	if errors.Is(err, index.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return s.usable(h, loc)
}

// usable reports whether the indexed copy loc of block h is not known
// damaged.
func (s *Store) usable(h Hash, loc index.Location) (bool, error) {
	dm, err := s.idx.Damaged(h)
	switch {
	case errors.Is(err, index.ErrNotFound):
		return true, nil
	case err != nil:
		return false, err
	}
	return dm.Location != loc, nil
}

// Get returns block h, verified, through the cache. The returned slice is
// shared: callers must not modify it. Prefer ReadAt, which lets the
// cache recycle the block's memory.
func (s *Store) Get(h Hash) ([]byte, error) {
	return s.cache.get(h, s.fill(h))
}

// ReadAt copies block h's bytes from off into p, through the cache, and
// returns how many it copied: fewer than len(p) only at the block's end.
func (s *Store) ReadAt(h Hash, p []byte, off int) (int, error) {
	return s.cache.readAt(h, p, off, s.fill(h))
}

// Warm loads block h into the cache, unless it is there, on its way or
// was lately read whole (a read-ahead behind its reader); errors are left
// for a later read to report.
func (s *Store) Warm(h Hash) {
	s.cache.warm(h, s.fill(h))
}

func (s *Store) fill(h Hash) fillFunc {
	return func(buf []byte) ([]byte, error) { return s.Load(h, buf) }
}

// Cached reports whether block h is in (or on its way into) the cache.
func (s *Store) Cached(h Hash) bool { return s.cache.contains(h) }

// Load reads block h into dst (reallocated if too small), bypassing the
// cache; for restore, export and verify, which read each block once.
func (s *Store) Load(h Hash, dst []byte) ([]byte, error) {
	for try := 0; ; try++ {
		loc, err := s.location(h)
		if err != nil {
			return nil, err
		}
		b, err := s.readBlob(h, loc, dst)
		if errors.Is(err, errMoved) && try < 3 {
			continue // gc moved the block meanwhile: read its new copy
		}
		return b, err
	}
}

// errMoved: the pack a block was read from is gone because garbage
// collection moved the block to another pack meanwhile; the index has
// its new place.
var errMoved = errors.New("block moved to another pack")

// LoadAt reads the copy of block h at loc, checked as Load checks it,
// whatever the index says; for repair, which weighs the copies storage
// holds of a block.
func (s *Store) LoadAt(h Hash, loc index.Location, dst []byte) ([]byte, error) {
	return s.readBlob(h, loc, dst)
}

// storedBufs recycles the buffers blobs are read into before they are
// decompressed: each is needed for a moment per block read, and fresh
// memory is what a cold read pays most for.
var storedBufs = sync.Pool{New: func() any { return new([]byte) }}

// readBlob reads, checks and decompresses the blob at loc, which must be
// block h.
func (s *Store) readBlob(h Hash, loc index.Location, dst []byte) ([]byte, error) {
	hdr, payload, bp, err := s.readStoredBlob(h, loc)
	if err != nil {
		return nil, err
	}
	defer storedBufs.Put(bp)
	return s.decodeBlob(h, loc, hdr, payload, dst)
}

// readStoredBlob reads the blob at loc, which must be block h, into a
// buffer from storedBufs (bp, for the caller to put back) and checks its
// header against the index and its CRC.
func (s *Store) readStoredBlob(h Hash, loc index.Location) (hdr blobHeader, payload []byte, bp *[]byte, err error) {
	if loc.Length < blobHeaderSize || loc.Length > MaxBlockSize+blobHeaderSize+1024 {
		return hdr, nil, nil, fmt.Errorf("%w: block %s: bad location length %d", ErrCorrupt, h, loc.Length)
	}
	bp = storedBufs.Get().(*[]byte)
	if cap(*bp) < int(loc.Length) {
		*bp = make([]byte, (loc.Length+0xffff)&^0xffff)
	}
	buf := (*bp)[:loc.Length]
	if err := s.st.ReadAt(context.Background(), storage.Packs, PackName(loc.Pack), buf, int64(loc.Offset)); err != nil {
		storedBufs.Put(bp)
		switch {
		case errors.Is(err, storage.ErrNotExist):
			if cur, lerr := s.idx.Block(h); lerr == nil && cur != loc {
				return hdr, nil, nil, errMoved
			}
			err = fmt.Errorf("%w: pack %s is missing", ErrCorrupt, loc.Pack)
		case errors.Is(err, io.ErrUnexpectedEOF):
			err = fmt.Errorf("%w: pack %s is truncated", ErrCorrupt, loc.Pack)
		}
		return hdr, nil, nil, s.damaged(h, loc, fmt.Errorf("block %s in pack %s at %d: %w", h, loc.Pack, loc.Offset, err))
	}
	hdr, err = decodeBlobHeader(buf)
	if err == nil && (hdr.Hash != h || hdr.RawLen != loc.RawLen || int(hdr.StoredLen) != len(buf)-blobHeaderSize) {
		err = fmt.Errorf("%w: blob header does not match the index", ErrCorrupt)
	}
	if err == nil && !checkBlobCRC(buf, buf[blobHeaderSize:], hdr.CRC) {
		err = fmt.Errorf("%w: checksum mismatch", ErrCorrupt)
	}
	if err != nil {
		storedBufs.Put(bp)
		return hdr, nil, nil, s.damaged(h, loc, fmt.Errorf("block %s in pack %s at %d: %w", h, loc.Pack, loc.Offset, err))
	}
	return hdr, buf[blobHeaderSize:], bp, nil
}

// decodeBlob decompresses a checked blob's payload into dst (reallocated
// if too small) and verifies the result against h.
func (s *Store) decodeBlob(h Hash, loc index.Location, hdr blobHeader, payload, dst []byte) ([]byte, error) {
	if cap(dst) < int(hdr.RawLen)+decodeSlack {
		dst = newBlockBuf(int(hdr.RawLen))
	}
	dst = dst[:hdr.RawLen]
	if err := decompress(hdr.Codec, payload, dst); err != nil {
		return nil, s.damaged(h, loc, fmt.Errorf("%w: block %s in pack %s at %d: %v", ErrCorrupt, h, loc.Pack, loc.Offset, err))
	}
	if Sum(dst) != h {
		return nil, s.damaged(h, loc, fmt.Errorf("%w: block %s in pack %s at %d: content does not match its hash", ErrCorrupt, h, loc.Pack, loc.Offset))
	}
	return dst, nil
}

// StoredLen returns the lengths of block h as stored (its compressed
// payload) and raw, from the index alone. A block stored uncompressed has
// stored == raw; a compressed one is always smaller.
func (s *Store) StoredLen(h Hash) (stored, raw int, err error) {
	loc, err := s.location(h)
	if err != nil {
		return 0, 0, err
	}
	if loc.Length < blobHeaderSize {
		return 0, 0, fmt.Errorf("%w: block %s: bad location length %d", ErrCorrupt, h, loc.Length)
	}
	return int(loc.Length) - blobHeaderSize, int(loc.RawLen), nil
}

// AppendStored appends block h's payload as stored (compressed with the
// returned codec) to dst, after the checks Load makes: the payload is
// decompressed and re-hashed, and one whose content does not match h is
// ErrCorrupt, never returned. For export, which can copy a compressed
// block instead of compressing it again.
func (s *Store) AppendStored(h Hash, dst []byte) (Codec, []byte, error) {
	for try := 0; ; try++ {
		loc, err := s.location(h)
		if err != nil {
			return 0, nil, err
		}
		c, out, err := s.AppendStoredAt(h, loc, dst)
		if errors.Is(err, errMoved) && try < 3 {
			continue
		}
		return c, out, err
	}
}

// AppendStoredAt is AppendStored for the copy of h at loc; for
// compaction, which copies a pack's blobs as stored into a new pack.
func (s *Store) AppendStoredAt(h Hash, loc index.Location, dst []byte) (Codec, []byte, error) {
	hdr, payload, bp, err := s.readStoredBlob(h, loc)
	if err != nil {
		return 0, nil, err
	}
	defer storedBufs.Put(bp)
	sp := scratchBufs.Get().(*[]byte)
	defer scratchBufs.Put(sp)
	if *sp, err = s.decodeBlob(h, loc, hdr, payload, *sp); err != nil {
		return 0, nil, err
	}
	return hdr.Codec, append(dst, payload...), nil
}

// scratchBufs holds blocks decompressed only to be verified.
var scratchBufs = sync.Pool{New: func() any { return new([]byte) }}

// location returns where block h is stored.
func (s *Store) location(h Hash) (index.Location, error) {
	loc, err := s.idx.Block(h)
	if errors.Is(err, index.ErrNotFound) {
		return loc, fmt.Errorf("%w: %s", ErrMissing, h)
	}
	return loc, err
}

// damaged records that the copy of block h at loc failed its checks (err
// wraps ErrCorrupt), once per store, so no backup refers to it again: the
// next backup of those bytes stores a good copy, which every point that
// uses the block then reads. It returns err.
func (s *Store) damaged(h Hash, loc index.Location, err error) error {
	if !errors.Is(err, ErrCorrupt) || s.o.ReadOnly {
		return err
	}
	s.mu.Lock()
	done := s.marked[h] == loc
	s.marked[h] = loc
	s.mu.Unlock()
	if !done {
		if merr := s.idx.MarkDamaged(h, loc, err.Error()); merr != nil {
			s.o.Logf("block %s is damaged, and recording that failed: %v", h, merr)
		}
	}
	return err
}

// MarkDamaged records that the copy of block h at loc failed its checks;
// for verify, which finds damage without reading through the store.
func (s *Store) MarkDamaged(h Hash, loc index.Location, err error) {
	s.damaged(h, loc, fmt.Errorf("%w: %v", ErrCorrupt, err))
}

package chunkstore

import (
	"container/list"
	"errors"
	"fmt"
	"sync"

	"github.com/cairn-backup/cairn/index"
)

// Options tune a Store. The zero value means "default" for every field.
type Options struct {
	// CacheSize bounds the decompressed-block cache in bytes. Default 64 MiB.
	CacheSize int64
	// MaxOpenPacks bounds the pack files kept open for reading. Default 64.
	MaxOpenPacks int
}

// Store reads and writes blocks. It is safe for concurrent use.
type Store struct {
	be    Backend
	idx   *index.DB
	cache *blockCache
	packs *packFiles
}

// New returns a store over backend be, indexed by idx.
func New(be Backend, idx *index.DB, o Options) *Store {
	if o.CacheSize <= 0 {
		o.CacheSize = 64 << 20
	}
	if o.MaxOpenPacks <= 0 {
		o.MaxOpenPacks = 64
	}
	return &Store{be: be, idx: idx, cache: newBlockCache(o.CacheSize), packs: newPackFiles(be, o.MaxOpenPacks)}
}

// Close releases open pack files.
func (s *Store) Close() error { return s.packs.closeAll() }

// Has reports whether block h is stored.
func (s *Store) Has(h Hash) (bool, error) { return s.idx.HasBlock(h) }

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
	loc, err := s.location(h)
	if err != nil {
		return nil, err
	}
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
	if err := s.packs.readAt(loc.Pack, buf, int64(loc.Offset)); err != nil {
		storedBufs.Put(bp)
		return hdr, nil, nil, fmt.Errorf("block %s in pack %s at %d: %w", h, loc.Pack, loc.Offset, err)
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
		return hdr, nil, nil, fmt.Errorf("block %s in pack %s at %d: %w", h, loc.Pack, loc.Offset, err)
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
		return nil, fmt.Errorf("%w: block %s in pack %s at %d: %v", ErrCorrupt, h, loc.Pack, loc.Offset, err)
	}
	if Sum(dst) != h {
		return nil, fmt.Errorf("%w: block %s in pack %s at %d: content does not match its hash", ErrCorrupt, h, loc.Pack, loc.Offset)
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
	loc, err := s.location(h)
	if err != nil {
		return 0, nil, err
	}
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

// packFiles keeps an LRU of open pack objects. An evicted object is
// closed only when its last reader is done with it.
type packFiles struct {
	be  Backend
	max int
	mu  sync.Mutex
	lru *list.List // of *openPack
	m   map[index.PackID]*list.Element
}

type openPack struct {
	id      index.PackID
	obj     Object
	refs    int
	evicted bool
}

func newPackFiles(be Backend, max int) *packFiles {
	return &packFiles{be: be, max: max, lru: list.New(), m: map[index.PackID]*list.Element{}}
}

func (p *packFiles) acquire(id index.PackID) (*openPack, error) {
	p.mu.Lock()
	if e, ok := p.m[id]; ok {
		p.lru.MoveToFront(e)
		op := e.Value.(*openPack)
		op.refs++
		p.mu.Unlock()
		return op, nil
	}
	p.mu.Unlock()
	obj, err := p.be.Open(id.String() + ".pack")
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if e, ok := p.m[id]; ok { // another reader opened it meanwhile
		obj.Close()
		op := e.Value.(*openPack)
		op.refs++
		return op, nil
	}
	op := &openPack{id: id, obj: obj, refs: 1}
	p.m[id] = p.lru.PushFront(op)
	for p.lru.Len() > p.max {
		e := p.lru.Back()
		old := e.Value.(*openPack)
		p.lru.Remove(e)
		delete(p.m, old.id)
		old.evicted = true
		if old.refs == 0 {
			old.obj.Close()
		}
	}
	return op, nil
}

func (p *packFiles) release(op *openPack) {
	p.mu.Lock()
	op.refs--
	if op.evicted && op.refs == 0 {
		op.obj.Close()
	}
	p.mu.Unlock()
}

func (p *packFiles) readAt(id index.PackID, buf []byte, off int64) error {
	op, err := p.acquire(id)
	if err != nil {
		return err
	}
	defer p.release(op)
	if off+int64(len(buf)) > op.obj.Size() {
		return fmt.Errorf("%w: pack is %d bytes, blob ends at %d", ErrCorrupt, op.obj.Size(), off+int64(len(buf)))
	}
	_, err = op.obj.ReadAt(buf, off)
	return err
}

func (p *packFiles) closeAll() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for id, e := range p.m {
		op := e.Value.(*openPack)
		op.evicted = true
		if op.refs == 0 {
			op.obj.Close()
		}
		delete(p.m, id)
	}
	p.lru.Init()
	return nil
}

package chunkstore

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"

	"github.com/cairn-backup/cairn/chunkstore/storage"
	"github.com/cairn-backup/cairn/index"
)

// DefaultPackSize is the size at which a pack is sealed.
const DefaultPackSize = 64 << 20

// PackWriter appends new blobs to packs. One goroutine calls Add; a full
// pack is sealed (trailer written, committed to storage, indexed) in the
// background while the next one fills, so storage flushes overlap with
// compression.
type PackWriter struct {
	ctx    context.Context
	s      *Store
	target int64

	cur     *openWrite
	sealing chan *openWrite // at most one pack seals at a time
	sealed  chan error

	mu      sync.Mutex
	pending map[Hash]struct{} // in an open or sealing pack, not yet indexed
	err     error             // first sealing error
	packs   map[index.PackID]int64
	budget  Budget
	nsealed int
}

// Sealed returns the number of packs sealed so far; after Close, all.
func (w *PackWriter) Sealed() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.nsealed
}

// Budget limits the bytes a PackWriter adds to storage: a vault with a
// capacity.
type Budget interface {
	// Reserve is asked before n bytes are written; an error stops the
	// writer.
	Reserve(n int64) error
	// Release returns reserved bytes that never landed (an aborted pack).
	Release(n int64)
}

// SetBudget makes every write ask b first. Call it before the first Add.
func (w *PackWriter) SetBudget(b Budget) { w.budget = b }

type openWrite struct {
	id    index.PackID
	w     storage.Writer
	bw    *bufio.Writer
	size  int64
	blobs []BlobInfo
}

// NewPackWriter returns a writer that seals packs at about target bytes
// (DefaultPackSize when target <= 0). ctx governs every write.
func (s *Store) NewPackWriter(ctx context.Context, target int64) *PackWriter {
	if target <= 0 {
		target = DefaultPackSize
	}
	w := &PackWriter{ctx: ctx, s: s, target: target, pending: map[Hash]struct{}{},
		sealing: make(chan *openWrite), sealed: make(chan error, 1), packs: map[index.PackID]int64{}}
	go w.sealLoop()
	return w
}

func (w *PackWriter) sealLoop() {
	var first error
	for p := range w.sealing {
		err := w.seal(p)
		w.mu.Lock()
		for _, b := range p.blobs {
			delete(w.pending, b.Hash)
		}
		if err != nil && w.err == nil {
			w.err = err
		}
		if err == nil {
			w.nsealed++
		}
		w.mu.Unlock()
		if err != nil && first == nil {
			first = err
		}
	}
	w.sealed <- first
}

func (w *PackWriter) seal(p *openWrite) error {
	trailer := appendTrailer(nil, p.blobs, p.size)
	if w.budget != nil {
		if err := w.budget.Reserve(int64(len(trailer))); err != nil {
			p.w.Abort()
			w.budget.Release(p.size)
			return err
		}
	}
	if _, err := p.bw.Write(trailer); err != nil {
		p.w.Abort()
		return fmt.Errorf("write pack %s: %w", p.id, err)
	}
	if err := p.bw.Flush(); err != nil {
		p.w.Abort()
		return fmt.Errorf("write pack %s: %w", p.id, err)
	}
	if err := p.w.Commit(w.ctx); err != nil {
		return fmt.Errorf("commit pack %s: %w", p.id, err)
	}
	entries := make([]index.BlockEntry, len(p.blobs))
	for i, b := range p.blobs {
		entries[i] = index.BlockEntry{Hash: b.Hash, Location: b.location(p.id)}
	}
	info := index.PackInfo{Size: p.size + int64(len(trailer)), Blobs: int64(len(p.blobs))}
	return w.s.idx.CommitPack(p.id, info, entries)
}

func (b BlobInfo) location(pack index.PackID) index.Location {
	return index.Location{Pack: pack, Offset: uint64(b.Offset), Length: uint32(b.Length), RawLen: uint32(b.RawLen)}
}

// Has reports whether h is stored in a copy a backup may refer to, or
// pending in this writer. A copy is not usable when it is known damaged,
// or when its pack is missing from storage or too short to hold it:
// storage is checked once per pack and writer.
func (w *PackWriter) Has(h Hash) (bool, error) {
	w.mu.Lock()
	_, ok := w.pending[h]
	w.mu.Unlock()
	if ok {
		return true, nil
	}
	loc, err := w.s.idx.Block(h)
	if errors.Is(err, index.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if ok, err := w.s.usable(h, loc); err != nil || !ok {
		return false, err
	}
	size, err := w.packSize(loc.Pack)
	if err != nil {
		return false, err
	}
	return int64(loc.Offset)+int64(loc.Length) <= size, nil
}

// packSize returns the size of a pack in storage, -1 when it is missing.
func (w *PackWriter) packSize(id index.PackID) (int64, error) {
	w.mu.Lock()
	size, ok := w.packs[id]
	w.mu.Unlock()
	if ok {
		return size, nil
	}
	info, err := w.s.st.Stat(w.ctx, storage.Packs, PackName(id))
	switch {
	case errors.Is(err, storage.ErrNotExist):
		size = -1
	case err != nil:
		return 0, err
	default:
		size = info.Size
	}
	w.mu.Lock()
	w.packs[id] = size
	w.mu.Unlock()
	return size, nil
}

// Blob is one block ready for storage: stored is the (possibly
// compressed) payload in codec Codec, of a block of RawLen bytes.
type Blob struct {
	Kind   Kind
	Hash   Hash
	RawLen int
	Codec  Codec
	Stored []byte
}

// Add stores b unless the vault (in a usable copy) or this writer already
// holds its hash. It returns the bytes added to the vault (0 for a
// duplicate).
func (w *PackWriter) Add(b Blob) (int64, error) {
	w.mu.Lock()
	_, dup := w.pending[b.Hash]
	err := w.err
	w.mu.Unlock()
	if err != nil {
		return 0, err
	}
	if dup {
		return 0, nil
	}
	if ok, err := w.Has(b.Hash); err != nil || ok {
		return 0, err
	}
	return w.write(b)
}

// Copy stores b even though the vault holds it: compaction moves a live
// block out of a pack it empties. The index points at the new copy once
// the new pack is sealed.
func (w *PackWriter) Copy(b Blob) (int64, error) {
	w.mu.Lock()
	err := w.err
	w.mu.Unlock()
	if err != nil {
		return 0, err
	}
	return w.write(b)
}

func (w *PackWriter) write(b Blob) (int64, error) {
	if b.RawLen <= 0 || b.RawLen > MaxBlockSize {
		return 0, fmt.Errorf("block of %d bytes is out of range", b.RawLen)
	}
	n := int64(blobHeaderSize + len(b.Stored))
	if w.budget != nil {
		extra := int64(0)
		if w.cur == nil {
			extra = packHeaderSize
		}
		if err := w.budget.Reserve(n + extra); err != nil {
			return 0, err
		}
	}
	if w.cur == nil {
		if err := w.open(); err != nil {
			if w.budget != nil {
				w.budget.Release(n + packHeaderSize)
			}
			return 0, err
		}
	}
	p := w.cur
	var hdr [blobHeaderSize]byte
	bh := blobHeader{Kind: b.Kind, Codec: b.Codec, RawLen: uint32(b.RawLen), StoredLen: uint32(len(b.Stored)), Hash: b.Hash}
	bh.CRC = encodeBlobHeader(hdr[:], bh, b.Stored)
	off := p.size
	if _, err := p.bw.Write(hdr[:]); err != nil {
		return 0, fmt.Errorf("write pack %s: %w", p.id, err)
	}
	if _, err := p.bw.Write(b.Stored); err != nil {
		return 0, fmt.Errorf("write pack %s: %w", p.id, err)
	}
	p.size += n
	p.blobs = append(p.blobs, blobInfo(bh, off))
	w.mu.Lock()
	w.pending[b.Hash] = struct{}{}
	w.mu.Unlock()
	if p.size >= w.target {
		w.cur = nil
		w.sealing <- p
	}
	return n, nil
}

func (w *PackWriter) open() error {
	var id index.PackID
	if _, err := rand.Read(id[:]); err != nil {
		return err
	}
	sw, err := w.s.st.Create(w.ctx, storage.Packs, PackName(id))
	if err != nil {
		return fmt.Errorf("create pack: %w", err)
	}
	p := &openWrite{id: id, w: sw, bw: bufio.NewWriterSize(sw, 1<<20)}
	if _, err := p.bw.Write(packHeader()); err != nil {
		sw.Abort()
		return err
	}
	p.size = packHeaderSize
	w.cur = p
	return nil
}

// Close seals the open pack and waits until every pack is durable and
// indexed. After Close returns nil, every added blob can be read.
func (w *PackWriter) Close() error {
	if w.cur != nil {
		w.sealing <- w.cur
		w.cur = nil
	}
	close(w.sealing)
	return <-w.sealed
}

// Abort discards the open pack. Packs already sealed stay: they are
// valid, indexed data that a later backup reuses or GC frees.
func (w *PackWriter) Abort() {
	if w.cur != nil {
		w.cur.w.Abort()
		if w.budget != nil {
			w.budget.Release(w.cur.size)
		}
		w.cur = nil
	}
	close(w.sealing)
	<-w.sealed
}

package chunkstore

import (
	"bufio"
	"crypto/rand"
	"fmt"
	"sync"

	"github.com/cairn-backup/cairn/index"
)

// DefaultPackSize is the size at which a pack is sealed.
const DefaultPackSize = 64 << 20

// PackWriter appends new blobs to packs. One goroutine calls Add; a full
// pack is sealed (synced, renamed into place, indexed) in the background
// while the next one fills, so disk flushes overlap with compression.
type PackWriter struct {
	s      *Store
	target int64

	cur     *openWrite
	sealing chan *openWrite // at most one pack seals at a time
	sealed  chan error

	mu      sync.Mutex
	pending map[Hash]struct{} // in an open or sealing pack, not yet indexed
	err     error             // first sealing error
}

type openWrite struct {
	id      index.PackID
	ow      ObjectWriter
	bw      *bufio.Writer
	size    int64
	entries []index.BlockEntry
}

// NewPackWriter returns a writer that seals packs at about target bytes
// (DefaultPackSize when target <= 0).
func (s *Store) NewPackWriter(target int64) *PackWriter {
	if target <= 0 {
		target = DefaultPackSize
	}
	w := &PackWriter{s: s, target: target, pending: map[Hash]struct{}{},
		sealing: make(chan *openWrite), sealed: make(chan error, 1)}
	go w.sealLoop()
	return w
}

func (w *PackWriter) sealLoop() {
	var first error
	for p := range w.sealing {
		err := w.seal(p)
		w.mu.Lock()
		for _, e := range p.entries {
			delete(w.pending, e.Hash)
		}
		if err != nil && w.err == nil {
			w.err = err
		}
		w.mu.Unlock()
		if err != nil && first == nil {
			first = err
		}
	}
	w.sealed <- first
}

func (w *PackWriter) seal(p *openWrite) error {
	if err := p.bw.Flush(); err != nil {
		p.ow.Abort()
		return fmt.Errorf("write pack %s: %w", p.id, err)
	}
	if err := p.ow.Commit(); err != nil {
		return fmt.Errorf("commit pack %s: %w", p.id, err)
	}
	info := index.PackInfo{Size: p.size, Blobs: int64(len(p.entries))}
	return w.s.idx.CommitPack(p.id, info, p.entries)
}

// Has reports whether h is already stored or pending in this writer.
func (w *PackWriter) Has(h Hash) (bool, error) {
	w.mu.Lock()
	_, ok := w.pending[h]
	w.mu.Unlock()
	if ok {
		return true, nil
	}
	return w.s.Has(h)
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

// Add stores b unless the vault or this writer already holds its hash. It
// returns the bytes added to the vault (0 for a duplicate).
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
	if ok, err := w.s.Has(b.Hash); err != nil || ok {
		return 0, err
	}
	if b.RawLen <= 0 || b.RawLen > MaxBlockSize {
		return 0, fmt.Errorf("block of %d bytes is out of range", b.RawLen)
	}
	if w.cur == nil {
		if err := w.open(); err != nil {
			return 0, err
		}
	}
	p := w.cur
	var hdr [blobHeaderSize]byte
	encodeBlobHeader(hdr[:], blobHeader{Kind: b.Kind, Codec: b.Codec, RawLen: uint32(b.RawLen),
		StoredLen: uint32(len(b.Stored)), Hash: b.Hash}, b.Stored)
	off := p.size
	if _, err := p.bw.Write(hdr[:]); err != nil {
		return 0, fmt.Errorf("write pack %s: %w", p.id, err)
	}
	if _, err := p.bw.Write(b.Stored); err != nil {
		return 0, fmt.Errorf("write pack %s: %w", p.id, err)
	}
	n := int64(blobHeaderSize + len(b.Stored))
	p.size += n
	p.entries = append(p.entries, index.BlockEntry{Hash: b.Hash, Location: index.Location{
		Pack: p.id, Offset: uint64(off), Length: uint32(n), RawLen: uint32(b.RawLen)}})
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
	ow, err := w.s.be.Create(id.String() + ".pack")
	if err != nil {
		return fmt.Errorf("create pack: %w", err)
	}
	p := &openWrite{id: id, ow: ow, bw: bufio.NewWriterSize(ow, 1<<20)}
	if _, err := p.bw.Write(packHeader()); err != nil {
		ow.Abort()
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
		w.cur.ow.Abort()
		w.cur = nil
	}
	close(w.sealing)
	<-w.sealed
}

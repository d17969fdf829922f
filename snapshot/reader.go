package snapshot

import (
	"context"
	"fmt"
	"io"

	"github.com/cairn-backup/cairn/chunkstore"
	"github.com/cairn-backup/cairn/index"
)

// DiskReader reads one disk of a point. ReadAt is stateless and safe for
// concurrent use; every byte returned was verified against its hash. A
// sequential reader gets the blocks after its reads loaded ahead
// (ReadAhead); a read spanning several blocks fetches them side by side
// (walk).
type DiskReader struct {
	v     *Vault
	p     *Point
	d     *Disk
	bs    int64
	ahead ReadAhead
}

// OpenDisk returns a reader for disk name of point p. An empty name
// selects the only disk of a single-disk point.
func (v *Vault) OpenDisk(p *Point, name string) (*DiskReader, error) {
	d, err := pickDisk(p, name)
	if err != nil {
		return nil, err
	}
	return &DiskReader{v: v, p: p, d: d, bs: int64(d.BlockSize)}, nil
}

func pickDisk(p *Point, name string) (*Disk, error) {
	if name == "" {
		if len(p.Disks) == 1 {
			return &p.Disks[0], nil
		}
		return nil, fmt.Errorf("%s has %d disks (%s): choose one with --disk", p.Name(), len(p.Disks), diskNames(p))
	}
	d := p.Disk(name)
	if d == nil {
		return nil, NoDiskError(p, name)
	}
	return d, nil
}

// NoDiskError says that point p holds no disk name, and which it holds;
// it is ErrNoDisk.
func NoDiskError(p *Point, name string) error {
	return noDisk(fmt.Sprintf("%s has no disk %q (it has %s)", p.Name(), name, diskNames(p)))
}

type noDisk string

func (e noDisk) Error() string      { return string(e) }
func (noDisk) Is(target error) bool { return target == ErrNoDisk }

func diskNames(p *Point) string {
	s := ""
	for i, d := range p.Disks {
		if i > 0 {
			s += ", "
		}
		s += d.Name
	}
	return s
}

// Disk returns the disk's manifest entry.
func (r *DiskReader) Disk() *Disk { return r.d }

// Point returns the point the disk belongs to.
func (r *DiskReader) Point() *Point { return r.p }

// Size is the disk's size in bytes.
func (r *DiskReader) Size() int64 { return r.d.Size }

// ReadAt reads disk bytes at off. Holes read as zeros. A damaged or
// missing block fails the read with an error naming the point, disk and
// offset; no unverified byte is ever returned.
func (r *DiskReader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("negative offset %d", off)
	}
	if off >= r.d.Size {
		return 0, io.EOF
	}
	var eof error
	if rest := r.d.Size - off; int64(len(p)) > rest {
		p, eof = p[:rest], io.EOF
	}
	if len(p) == 0 {
		return 0, eof
	}
	r.ahead.Note(off, int64(len(p)), r.LoadAhead)
	w := walk{v: r.v, p: r.p, d: r.d, start: off, end: off + int64(len(p)), holes: true}
	if i := off / r.bs; i == (off+int64(len(p))-1)/r.bs {
		// One block, the common case of small reads: no goroutines.
		b := walkBlock{i: i, off: off, within: off - i*r.bs, n: int64(len(p))}
		h, err := r.v.blockHash(r.d, i)
		if err != nil {
			return 0, r.fail(off, err)
		}
		b.h = h
		if err := w.readCached(&b, p); err != nil {
			return 0, err
		}
		return len(p), eof
	}
	n := 0
	w.fetch = func(b *walkBlock) error { return w.readCached(b, p[b.off-off:][:b.n]) }
	w.emit = func(b *walkBlock) error { n += int(b.n); return nil }
	if err := w.run(context.Background()); err != nil {
		return n, err
	}
	return n, eof
}

func (r *DiskReader) fail(off int64, err error) error {
	return fmt.Errorf("%s disk %s at offset %d: %w", r.p.Name(), r.d.Name, off, err)
}

// BlockHash returns the hash of the block holding offset off (zero for a
// hole), for callers that want to prefetch.
func (r *DiskReader) BlockHash(off int64) (index.Hash, error) {
	return r.v.blockHash(r.d, off/r.bs)
}

// Prefetch loads the block holding offset off into the cache, unless it
// is a hole or already there, or the vault is closing (Close waits for
// the prefetches running), and returns when it is loaded. Errors are
// left for the read that needs the block to report.
func (r *DiskReader) Prefetch(off int64) {
	if off < 0 || off >= r.d.Size || !r.v.prefetches.enter() {
		return
	}
	defer r.v.prefetches.leave()
	h, err := r.BlockHash(off)
	if err != nil || h.IsZero() || r.v.store.Cached(h) {
		return
	}
	r.v.store.Warm(h)
}

// LoadAhead queues the blocks under [off, end) for the vault's loaders
// to bring into the cache, and returns at once: how far it queued, end
// unless the loaders' queue is full. Holes and blocks cached already
// cost a loader a look only.
func (r *DiskReader) LoadAhead(off, end int64) (reached int64) {
	off, end = max(off, 0), min(end, r.d.Size)
	l := r.v.loaders()
	for b := off / r.bs * r.bs; b < end; b += r.bs {
		if !l.add(r, b) {
			return max(b, off)
		}
	}
	return max(off, end)
}

// SetReadAhead sets the most bytes ReadAt keeps loading ahead of each
// sequential stream of reads: 0 for DefaultReadAhead, negative for none.
func (r *DiskReader) SetReadAhead(n int64) { r.ahead.SetMax(n) }

// Close takes the reader's blocks off the loaders' queue. The reader
// stays usable: Close only ends the read-ahead already asked for, as a
// server does when its client goes.
func (r *DiskReader) Close() error {
	r.v.loaders().drop(r)
	return nil
}

// Cached reports whether reading the block holding off needs no
// decompression: it is a hole or already in the cache.
func (r *DiskReader) Cached(off int64) bool {
	h, err := r.BlockHash(off)
	return err == nil && (h.IsZero() || r.v.store.Cached(h))
}

// Stored says how block i is kept, from the index alone: codec "" for a
// hole, "none" for a block stored as it is, or the vault's compression,
// with the length of its stored payload.
func (r *DiskReader) Stored(i int64) (codec string, n int, err error) {
	h, err := r.v.blockHash(r.d, i)
	if err != nil || h.IsZero() {
		return "", 0, r.failBlock(i, err)
	}
	stored, raw, err := r.v.store.StoredLen(h)
	if err != nil {
		return "", 0, r.failBlock(i, err)
	}
	if stored == raw {
		return chunkstore.CodecNone.String(), stored, nil
	}
	return r.v.cfg.Compression, stored, nil
}

// AppendStored appends block i's payload as stored to dst and returns its
// codec ("" and dst for a hole). The payload is verified first, as every
// read is: it is decompressed and checked against the block's hash.
func (r *DiskReader) AppendStored(dst []byte, i int64) (codec string, out []byte, err error) {
	h, err := r.v.blockHash(r.d, i)
	if err != nil || h.IsZero() {
		return "", dst, r.failBlock(i, err)
	}
	c, out, err := r.v.store.AppendStored(h, dst)
	if err != nil {
		return "", dst, r.failBlock(i, err)
	}
	return c.String(), out, nil
}

// failBlock is fail for block i; nil stays nil.
func (r *DiskReader) failBlock(i int64, err error) error {
	if err == nil {
		return nil
	}
	return r.fail(i*r.bs, err)
}

// BlockSize is the disk's block size.
func (r *DiskReader) BlockSize() int64 { return r.bs }

// NextData returns the first range [start, end) at or after off made of
// stored (non-hole) blocks, or (Size(), Size()) when none remains.
func (r *DiskReader) NextData(off int64) (start, end int64, err error) {
	if off < 0 {
		off = 0
	}
	size := r.d.Size
	if off >= size {
		return size, size, nil
	}
	c := newMapCursor(r.v, r.d)
	nb := r.d.Blocks()
	i := off / r.bs
	for ; i < nb; i++ {
		if p := int(i / PageEntries); r.d.Pages[p].IsZero() {
			i = int64(p+1)*PageEntries - 1 // skip a page of holes
			continue
		}
		h, err := c.hash(i)
		if err != nil {
			return 0, 0, r.fail(i*r.bs, err)
		}
		if !h.IsZero() {
			break
		}
	}
	if i >= nb {
		return size, size, nil
	}
	start = max(off, i*r.bs)
	for i++; i < nb; i++ {
		h, err := c.hash(i)
		if err != nil {
			return 0, 0, r.fail(i*r.bs, err)
		}
		if h.IsZero() {
			break
		}
	}
	return start, min(i*r.bs, size), nil
}

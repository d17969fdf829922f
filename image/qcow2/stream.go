package qcow2

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/cairn-backup/cairn/image"
)

// streamTablesFirst writes an image to a stream, tables first. The layout
// comes from src's data ranges and, with frames, the frames' lengths,
// before any data is read: every guest cluster that meets a data range is
// allocated, in guest order, after the header, L1 table, refcount table,
// refcount blocks and L2 tables; a zstd frame is packed right after the
// one before, any other cluster is plain and cluster-aligned. Nothing is
// spooled, so a pipe receives the image as fast as the workers fill it.
// (Clusters compressed here cannot be laid out ahead: their host offsets
// depend on the compressed sizes of all the clusters before them.)
//
// Memory: the L1 table, one L2 table and one refcount block, whatever the
// disk size. Rather than keep every frame's length, the layout is walked
// again, asking the source, for the refcount blocks and for the L2 tables.
// Each walk, and the data written, fold the clusters and lengths into a
// digest; a source that answered differently fails the stream.
func streamTablesFirst(ctx context.Context, w io.Writer, src image.Source, frames FrameSource, cbits uint, vsize, l1Size int64, workers int, fill fillFunc, progress func(int64)) (int64, error) {
	c := int64(1) << cbits
	l2n := c / 8
	lay := layout{src: src, frames: frames, c: c}

	// Pass 1: how many data clusters, L2 tables and host data clusters.
	hasL2 := make([]bool, l1Size)
	var nL2, nClusters int64
	data := newPacker(c)
	want, err := lay.walk(func(gc int64, n int) error {
		nClusters++
		data.place(n)
		if !hasL2[gc/l2n] {
			hasL2[gc/l2n] = true
			nL2++
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	nData := (data.end + c - 1) / c
	l1Clusters := (l1Size*8 + c - 1) / c
	// The refcount blocks and table count themselves: find the fixed point.
	rcN := c / 2
	fixed := 1 + l1Clusters + nL2 + nData
	nb, nrt := int64(1), int64(1)
	for {
		nb2 := (fixed + nb + nrt + rcN - 1) / rcN
		nrt2 := (nb2*8 + c - 1) / c
		if nb2 == nb && nrt2 == nrt {
			break
		}
		nb, nrt = nb2, nrt2
	}
	total := fixed + nb + nrt
	l1Off := int64(0)
	if l1Size > 0 {
		l1Off = c
	}
	rtOff := (1 + l1Clusters) * c
	rbOff := rtOff + nrt*c
	l2Off := rbOff + nb*c
	dataOff := l2Off + nL2*c

	bw := bufio.NewWriterSize(w, 1<<20)
	out := &streamSink{w: bw, c: c, n: nClusters, data: newPacker(c), zeros: make([]byte, c)}
	be := binary.BigEndian

	if err := out.put(makeHeader(frames != nil, cbits, vsize, l1Size, l1Off, rtOff, nrt)); err != nil {
		return out.written, err
	}
	l1 := make([]byte, l1Size*8)
	k := int64(0)
	for i, used := range hasL2 {
		if used {
			be.PutUint64(l1[8*i:], uint64(l2Off+k*c)|flagCopied)
			k++
		}
	}
	if err := out.putPadded(l1); err != nil {
		return out.written, err
	}
	rt := make([]byte, nrt*c)
	for i := range nb {
		be.PutUint64(rt[8*i:], uint64(rbOff+i*c))
	}
	if err := out.put(rt); err != nil {
		return out.written, err
	}
	if err := writeRefcounts(out, &lay, dataOff/c, data.end, nb, want); err != nil {
		return out.written, err
	}

	// Pass 3: the L2 tables, in order, placing the data as pass 1 did.
	l2 := make([]byte, c)
	cur := int64(-1) // L1 index of l2
	flush := func() error {
		if cur < 0 {
			return nil
		}
		err := out.put(l2)
		clear(l2)
		return err
	}
	x := 62 - (cbits - 8)
	place := newPacker(c)
	got, err := lay.walk(func(gc int64, n int) error {
		if gc/l2n != cur {
			if err := flush(); err != nil {
				return err
			}
			cur = gc / l2n
		}
		off := dataOff + place.place(n)
		e := uint64(off) | flagCopied
		if n > 0 {
			nsec := uint64((off%512+int64(n)+511)/512 - 1)
			e = flagCompressed | nsec<<x | uint64(off)
		}
		be.PutUint64(l2[8*(gc%l2n):], e)
		return nil
	})
	if err != nil {
		return out.written, err
	}
	if err := flush(); err != nil {
		return out.written, err
	}
	if got != want {
		return out.written, errLayoutChanged
	}
	if out.written != dataOff {
		return out.written, fmt.Errorf("qcow2: stream layout: tables end at %d, want %d", out.written, dataOff)
	}

	// Pass 4: the data, filled by the workers and written in order.
	out.base = dataOff
	if err := pump(ctx, src, c, workers, fill, out.add, progress); err != nil {
		return out.written, err
	}
	if out.k != nClusters {
		return out.written, fmt.Errorf("qcow2: stream wrote %d data clusters, laid out %d", out.k, nClusters)
	}
	if out.digest != want {
		return out.written, errLayoutChanged
	}
	if err := out.putPadded(nil); err != nil {
		return out.written, err
	}
	if err := bw.Flush(); err != nil {
		return out.written, fmt.Errorf("qcow2: write: %w", err)
	}
	if out.written != total*c {
		return out.written, fmt.Errorf("qcow2: stream wrote %d bytes, laid out %d", out.written, total*c)
	}
	return out.written, nil
}

// layout walks the data clusters of a stream with the length each is laid
// out with: its frame's, or 0 for a plain cluster.
type layout struct {
	src    image.Source
	frames FrameSource // nil: every cluster plain
	c      int64
}

// length returns the laid-out length of guest cluster gc.
func (l *layout) length(gc int64) (int, error) {
	if l.frames == nil {
		return 0, nil
	}
	return frameLen(l.frames, gc, l.c)
}

// walk calls fn with every data cluster, in guest order, and its length,
// and returns the digest of them all.
func (l *layout) walk(fn func(gc int64, n int) error) (layoutDigest, error) {
	var d layoutDigest
	err := forEachDataCluster(l.src, l.c, func(gc int64) error {
		n, err := l.length(gc)
		if err != nil {
			return err
		}
		d.add(gc, n)
		return fn(gc, n)
	})
	return d, err
}

// layoutDigest folds a sequence of (cluster, length) pairs into 64 bits, in
// order: equal digests mean the same layout, short of a deliberate
// collision.
type layoutDigest uint64

func (d *layoutDigest) add(gc int64, n int) {
	x := uint64(*d) ^ uint64(gc)*0x9e3779b97f4a7c15 ^ uint64(n)
	x ^= x >> 31
	*d = layoutDigest(x * 0xbf58476d1ce4e5b9)
}

var errLayoutChanged = errors.New("qcow2: the source's frame lengths changed while the image was written: the tables written ahead no longer match")

// writeRefcounts writes nb refcount blocks (pass 2): one reference for
// each host cluster before dataFirst (header and tables), the packer's
// count for each data cluster, laid out again from the source's lengths
// and checked to end at dataEnd, and zero past the data.
func writeRefcounts(out *streamSink, lay *layout, dataFirst, dataEnd, nb int64, want layoutDigest) error {
	rcN := out.c / 2
	counts := make([]uint16, rcN)
	blk := int64(0) // the block counts covers
	var err error
	set := func(h int64, refs int) {
		for err == nil && h >= (blk+1)*rcN {
			err = out.put(encodeRefcounts(counts))
			clear(counts)
			blk++
		}
		if err == nil {
			counts[h-blk*rcN] = uint16(refs)
		}
	}
	for h := range dataFirst {
		set(h, 1)
	}
	p := newPacker(out.c)
	p.filled = func(h int64, refs int) { set(dataFirst+h, refs) }
	got, werr := lay.walk(func(_ int64, n int) error {
		p.place(n)
		return err
	})
	if werr != nil {
		return werr
	}
	if got != want {
		return errLayoutChanged
	}
	p.flush()
	for err == nil && blk < nb {
		err = out.put(encodeRefcounts(counts))
		clear(counts)
		blk++
	}
	if err == nil && p.end != dataEnd {
		err = fmt.Errorf("qcow2: stream layout: data of %d bytes counted, %d laid out", p.end, dataEnd)
	}
	return err
}

// packer places data clusters one after another from offset 0: a
// compressed cluster of n bytes right after the previous one, a plain one
// (n = 0) at the next cluster boundary. It counts the references of each
// host cluster it fills as qemu-img check counts them; only packed
// clusters share a host cluster.
type packer struct {
	c       int64
	end     int64 // next free byte
	last    int64 // the last host cluster filled
	lastRef int   // its references
	// filled, if set, receives each host cluster's references, in order,
	// once no later cluster can share it (the last one at flush).
	filled func(h int64, refs int)
}

func newPacker(c int64) *packer { return &packer{c: c, last: -1} }

// place returns the offset of the next cluster, n bytes compressed or
// plain when n is 0.
func (p *packer) place(n int) int64 {
	if n == 0 || (p.end%p.c != 0 && p.lastRef >= maxRefcount) {
		p.end = (p.end + p.c - 1) / p.c * p.c
	}
	off := p.end
	if n == 0 {
		p.end += p.c
	} else {
		p.end += int64(n)
	}
	for h := off / p.c; h <= (p.end-1)/p.c; h++ {
		if h != p.last {
			p.flush()
			p.last, p.lastRef = h, 0
		}
		p.lastRef++
	}
	return off
}

// flush reports the last host cluster filled, if not yet reported.
func (p *packer) flush() {
	if p.last >= 0 && p.lastRef > 0 && p.filled != nil {
		p.filled(p.last, p.lastRef)
	}
	p.lastRef = 0
}

// streamSink writes the data clusters of a stream in the packer's layout
// and folds each cluster and its length into the digest that the caller
// compares, at the end, with the layout's.
type streamSink struct {
	w       *bufio.Writer
	c       int64
	base    int64 // where the data starts
	written int64
	digest  layoutDigest // of the clusters written
	n       int64        // data clusters laid out
	k       int64        // data clusters written
	data    *packer
	zeros   []byte
}

func (s *streamSink) put(p []byte) error {
	n, err := s.w.Write(p)
	s.written += int64(n)
	return err
}

// putPadded writes p and zeros up to the next cluster boundary.
func (s *streamSink) putPadded(p []byte) error {
	if err := s.put(p); err != nil {
		return err
	}
	if r := s.written % s.c; r != 0 {
		return s.put(s.zeros[:s.c-r])
	}
	return nil
}

func (s *streamSink) add(j *job) error {
	if s.k >= s.n {
		return fmt.Errorf("data cluster %d was not laid out", j.gc)
	}
	n := 0
	if !j.zero && !j.plain {
		n = len(j.out)
	}
	s.digest.add(j.gc, n)
	s.k++
	off := s.base + s.data.place(n)
	if pad := off - s.written; pad > 0 {
		if err := s.put(s.zeros[:pad]); err != nil {
			return err
		}
	}
	p := j.out
	switch {
	case j.zero:
		p = s.zeros
	case j.plain:
		p = j.raw
	}
	return s.put(p)
}

// forEachDataCluster calls fn, in increasing order, with every guest
// cluster that holds bytes of one of src's data ranges.
func forEachDataCluster(src image.Source, c int64, fn func(gc int64) error) error {
	size := src.Size()
	next := int64(0) // first cluster not yet passed to fn
	for off := int64(0); off < size; {
		s, e, err := src.NextData(off)
		if err != nil {
			return fmt.Errorf("qcow2: source: %w", err)
		}
		if s >= size || e <= s {
			return nil
		}
		for gc := max(s/c, next); gc*c < e; gc++ {
			if err := fn(gc); err != nil {
				return err
			}
			next = gc + 1
		}
		off = e
	}
	return nil
}

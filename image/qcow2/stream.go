package qcow2

import (
	"bufio"
	"context"
	"encoding/binary"
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
// Memory: the L1 table, one L2 table and one refcount block; with frames
// also 6 bytes per data cluster (its length, and host cluster refcounts),
// 24 MiB per TiB of data at 256 KiB clusters.
func streamTablesFirst(ctx context.Context, w io.Writer, src image.Source, frames FrameSource, cbits uint, vsize, l1Size int64, workers int, fill fillFunc, progress func(int64)) (int64, error) {
	c := int64(1) << cbits
	l2n := c / 8

	// Pass 1: the data clusters' lengths (with frames; 0 for plain) and
	// L2 tables.
	hasL2 := make([]bool, l1Size)
	var nL2, nClusters int64
	var lens []uint32
	data := newPacker(c, frames != nil)
	if err := forEachDataCluster(src, c, func(gc int64) error {
		n := 0
		if frames != nil {
			zst, fn, err := frames.FrameLen(gc)
			if err != nil {
				return fmt.Errorf("qcow2: source: %w", err)
			}
			if zst {
				if fn <= 0 || int64(fn) >= 2*c {
					return fmt.Errorf("qcow2: source frame at offset %d: %d bytes cannot be a cluster", gc*c, fn)
				}
				n = fn
			}
		}
		if frames != nil {
			lens = append(lens, uint32(n))
		}
		nClusters++
		data.place(n)
		if !hasL2[gc/l2n] {
			hasL2[gc/l2n] = true
			nL2++
		}
		return nil
	}); err != nil {
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
	out := &streamSink{w: bw, c: c, lens: lens, n: nClusters, data: newPacker(c, false), zeros: make([]byte, c)}
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
	// Tables and plain clusters are used once each, packed ones as the
	// packer counted.
	counts := make([]uint16, rcN)
	dataFirst := dataOff / c
	for i := range nb {
		for j := range counts {
			h := i*rcN + int64(j)
			switch {
			case h < dataFirst:
				counts[j] = 1
			case h < total:
				counts[j] = data.refcount(h - dataFirst)
			default:
				counts[j] = 0
			}
		}
		if err := out.put(encodeRefcounts(counts)); err != nil {
			return out.written, err
		}
	}

	// Pass 2: the L2 tables, in order, placing the data as pass 1 did.
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
	place := newPacker(c, false)
	k = 0
	if err := forEachDataCluster(src, c, func(gc int64) error {
		if gc/l2n != cur {
			if err := flush(); err != nil {
				return err
			}
			cur = gc / l2n
		}
		n := int64(0)
		if lens != nil {
			n = int64(lens[k])
		}
		k++
		off := dataOff + place.place(int(n))
		e := uint64(off) | flagCopied
		if n > 0 {
			nsec := uint64((off%512+n+511)/512 - 1)
			e = flagCompressed | nsec<<x | uint64(off)
		}
		be.PutUint64(l2[8*(gc%l2n):], e)
		return nil
	}); err != nil {
		return out.written, err
	}
	if err := flush(); err != nil {
		return out.written, err
	}
	if out.written != dataOff {
		return out.written, fmt.Errorf("qcow2: stream layout: tables end at %d, want %d", out.written, dataOff)
	}

	// Pass 3: the data, filled by the workers and written in order.
	out.base = dataOff
	if err := pump(ctx, src, c, workers, fill, out.add, progress); err != nil {
		return out.written, err
	}
	if out.k != nClusters {
		return out.written, fmt.Errorf("qcow2: stream wrote %d data clusters, laid out %d", out.k, nClusters)
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

// packer places data clusters one after another from offset 0: a
// compressed cluster of n bytes right after the previous one, a plain one
// (n = 0) at the next cluster boundary. Counting, it keeps the references
// of every host cluster it fills, as qemu-img check counts them; only
// packed clusters share a host cluster, so a packer of plain ones need not.
type packer struct {
	c       int64
	end     int64 // next free byte
	last    int64 // the last host cluster filled
	lastRef int   // its references
	count   bool
	refs    []uint16 // references per host cluster, when counting
}

func newPacker(c int64, count bool) *packer { return &packer{c: c, last: -1, count: count} }

// refcount returns the references to host cluster h.
func (p *packer) refcount(h int64) uint16 {
	if !p.count {
		return 1
	}
	return p.refs[h]
}

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
			p.last, p.lastRef = h, 0
		}
		p.lastRef++
		if p.count {
			if h == int64(len(p.refs)) {
				p.refs = append(p.refs, 0)
			}
			p.refs[h]++
		}
	}
	return off
}

// streamSink writes the data clusters of a stream in the packer's layout,
// checking each against the length pass 1 laid out.
type streamSink struct {
	w       *bufio.Writer
	c       int64
	base    int64 // where the data starts
	written int64
	lens    []uint32 // nil: every cluster plain
	n       int64    // data clusters laid out
	k       int64    // data clusters written
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
	if s.lens != nil {
		n = int(s.lens[s.k])
	}
	s.k++
	off := s.base + s.data.place(n)
	if pad := off - s.written; pad > 0 {
		if err := s.put(s.zeros[:pad]); err != nil {
			return err
		}
	}
	var p []byte
	switch {
	case n == 0 && j.zero:
		p = s.zeros
	case n == 0 && j.plain:
		p = j.raw
	case n > 0 && !j.zero && !j.plain && len(j.out) == n:
		p = j.out
	default:
		return fmt.Errorf("guest cluster %d does not match the layout written ahead", j.gc)
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

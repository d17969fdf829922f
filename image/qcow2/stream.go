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

// streamPlain writes an uncompressed image to a stream, tables first.
// The layout comes from src's data ranges alone, before any data is read:
// every guest cluster that meets a data range is allocated, in guest
// order, after the header, L1 table, refcount table, refcount blocks and
// L2 tables. Nothing is spooled, so a pipe receives the image as fast as
// src is read. (Compressed clusters cannot be laid out ahead: their host
// offsets depend on the compressed sizes of all the clusters before them.)
func streamPlain(ctx context.Context, w io.Writer, src image.Source, cbits uint, vsize, l1Size int64, progress func(int64)) (int64, error) {
	c := int64(1) << cbits
	l2n := c / 8
	size := src.Size()

	// Pass 1 over the ranges: how many data clusters and L2 tables.
	hasL2 := make([]bool, l1Size)
	var nData, nL2 int64
	if err := forEachDataCluster(src, c, func(gc int64) error {
		nData++
		if !hasL2[gc/l2n] {
			hasL2[gc/l2n] = true
			nL2++
		}
		return nil
	}); err != nil {
		return 0, err
	}
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
	written := int64(0)
	put := func(p []byte) error {
		n, err := bw.Write(p)
		written += int64(n)
		return err
	}
	// putPadded writes p and zeros up to the next cluster boundary.
	zeros := make([]byte, c)
	putPadded := func(p []byte) error {
		if err := put(p); err != nil {
			return err
		}
		if r := written % c; r != 0 {
			return put(zeros[:c-r])
		}
		return nil
	}
	be := binary.BigEndian

	if err := put(makeHeader(false, cbits, vsize, l1Size, l1Off, rtOff, nrt)); err != nil {
		return written, err
	}
	l1 := make([]byte, l1Size*8)
	k := int64(0)
	for i, used := range hasL2 {
		if used {
			be.PutUint64(l1[8*i:], uint64(l2Off+k*c)|flagCopied)
			k++
		}
	}
	if err := putPadded(l1); err != nil {
		return written, err
	}
	rt := make([]byte, nrt*c)
	for i := range nb {
		be.PutUint64(rt[8*i:], uint64(rbOff+i*c))
	}
	if err := put(rt); err != nil {
		return written, err
	}
	// Every cluster of the image is used once.
	counts := make([]uint16, rcN)
	for i := range nb {
		for j := range counts {
			counts[j] = 0
			if i*rcN+int64(j) < total {
				counts[j] = 1
			}
		}
		if err := put(encodeRefcounts(counts)); err != nil {
			return written, err
		}
	}

	// Pass 2: the L2 tables, in order.
	l2 := make([]byte, c)
	cur, next := int64(-1), int64(0) // L1 index of l2; data clusters so far
	flush := func() error {
		if cur < 0 {
			return nil
		}
		err := put(l2)
		clear(l2)
		return err
	}
	if err := forEachDataCluster(src, c, func(gc int64) error {
		if gc/l2n != cur {
			if err := flush(); err != nil {
				return err
			}
			cur = gc / l2n
		}
		be.PutUint64(l2[8*(gc%l2n):], uint64(dataOff+next*c)|flagCopied)
		next++
		return nil
	}); err != nil {
		return written, err
	}
	if err := flush(); err != nil {
		return written, err
	}
	if written != dataOff {
		return written, fmt.Errorf("qcow2: stream layout: tables end at %d, want %d", written, dataOff)
	}

	// Pass 3: the data.
	buf := make([]byte, c)
	if err := forEachDataCluster(src, c, func(gc int64) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		off := gc * c
		n := min(c, size-off)
		got, err := src.ReadAt(buf[:n], off)
		if int64(got) != n {
			if err == nil || errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("qcow2: read source at offset %d: %w", off, err)
		}
		clear(buf[n:])
		if err := put(buf); err != nil {
			return fmt.Errorf("qcow2: write: %w", err)
		}
		if progress != nil {
			progress(off + n)
		}
		return nil
	}); err != nil {
		return written, err
	}
	if err := bw.Flush(); err != nil {
		return written, fmt.Errorf("qcow2: write: %w", err)
	}
	if written != total*c {
		return written, fmt.Errorf("qcow2: stream wrote %d bytes, laid out %d", written, total*c)
	}
	if progress != nil {
		progress(size)
	}
	return written, nil
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

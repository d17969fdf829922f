package qcow2

import (
	"bufio"
	"encoding/binary"
)

// maxRefcount keeps 16-bit refcounts of shared compressed host clusters
// well below overflow.
const maxRefcount = 60000

// allocator lays out the image body (everything after the header
// cluster) strictly in order: every byte is written once, at increasing
// host offsets, so the body can go to a pipe through a spool file or
// straight into a file. Data clusters, each finished L2 table and each
// finished refcount block are appended as they come; the L1 table, the
// last refcount blocks and the refcount table close the body. Only the
// L1 table, one L2 table and one refcount block are held in memory.
type allocator struct {
	out   *bufio.Writer
	c     int64 // cluster size
	cbits uint
	pos   int64 // next free host byte; the body starts at c

	l1    []uint64
	l2    []uint64 // the L2 table being filled
	l2idx int64    // its L1 index, -1 before the first
	l2set bool

	rcN    int64      // refcounts per refcount block
	rc     []uint16   // the refcount block being counted
	rcBase int64      // first host cluster it covers
	full   [][]uint16 // finished blocks not yet written
	rt     []uint64   // host offsets of written refcount blocks

	zeros []byte
}

func newAllocator(out *bufio.Writer, cbits uint, l1Size int64) *allocator {
	c := int64(1) << cbits
	a := &allocator{
		out:   out,
		c:     c,
		cbits: cbits,
		pos:   c,
		l1:    make([]uint64, l1Size),
		l2:    make([]uint64, c/8),
		l2idx: -1,
		rcN:   c / 2,
		zeros: make([]byte, c),
	}
	a.rc = make([]uint16, a.rcN)
	a.ref(0) // the header cluster
	return a
}

func (a *allocator) write(p []byte) error {
	_, err := a.out.Write(p)
	a.pos += int64(len(p))
	return err
}

func (a *allocator) align() error {
	if r := a.pos % a.c; r != 0 {
		return a.write(a.zeros[:a.c-r])
	}
	return nil
}

// ref counts one more reference to host cluster h. Clusters are referenced
// in increasing order, so a block is final once a later one is touched.
func (a *allocator) ref(h int64) {
	for h >= a.rcBase+a.rcN {
		a.full = append(a.full, a.rc)
		a.rc = make([]uint16, a.rcN)
		a.rcBase += a.rcN
	}
	a.rc[h-a.rcBase]++
}

// putCluster appends one cluster-aligned cluster holding p (zero padded).
func (a *allocator) putCluster(p []byte) (int64, error) {
	if err := a.align(); err != nil {
		return 0, err
	}
	off := a.pos
	if err := a.write(p); err != nil {
		return 0, err
	}
	if n := int64(len(p)) % a.c; n != 0 {
		if err := a.write(a.zeros[:a.c-n]); err != nil {
			return 0, err
		}
	}
	for h := off / a.c; h < a.pos/a.c; h++ {
		a.ref(h)
	}
	return off, a.settle()
}

// settle writes refcount blocks that are final. Each lands in a later
// block's range, which counts it.
func (a *allocator) settle() error {
	for len(a.full) > 0 {
		blk := a.full[0]
		a.full = a.full[1:]
		if err := a.align(); err != nil {
			return err
		}
		off := a.pos
		a.ref(off / a.c)
		if err := a.write(encodeRefcounts(blk)); err != nil {
			return err
		}
		a.rt = append(a.rt, uint64(off))
	}
	return nil
}

func encodeRefcounts(blk []uint16) []byte {
	b := make([]byte, 2*len(blk))
	for i, v := range blk {
		binary.BigEndian.PutUint16(b[2*i:], v)
	}
	return b
}

// startCluster switches the L2 table to the one holding guest cluster gc.
func (a *allocator) startCluster(gc int64) error {
	if l1i := gc / int64(len(a.l2)); l1i != a.l2idx {
		if err := a.flushL2(); err != nil {
			return err
		}
		a.l2idx = l1i
	}
	return nil
}

// add stores the cluster of job j: nothing for zeros.
func (a *allocator) add(j *job) error {
	switch {
	case j.zero:
		return nil
	case j.plain:
		return a.addPlain(j.gc, j.raw)
	}
	return a.addCompressed(j.gc, j.out)
}

// addPlain stores guest cluster gc uncompressed.
func (a *allocator) addPlain(gc int64, p []byte) error {
	if err := a.startCluster(gc); err != nil {
		return err
	}
	off, err := a.putCluster(p)
	a.l2[gc%int64(len(a.l2))] = uint64(off) | flagCopied
	a.l2set = true
	return err
}

// addCompressed stores guest cluster gc as compressed bytes, packed right
// after the previous ones.
func (a *allocator) addCompressed(gc int64, p []byte) error {
	if err := a.startCluster(gc); err != nil {
		return err
	}
	if a.pos/a.c >= a.rcBase && a.rc[a.pos/a.c-a.rcBase] >= maxRefcount {
		if err := a.align(); err != nil {
			return err
		}
	}
	off := a.pos
	if err := a.write(p); err != nil {
		return err
	}
	// qemu counts every host cluster the sector-rounded range touches;
	// clusters are whole sectors, so that is the clusters of the bytes.
	for h := off / a.c; h <= (a.pos-1)/a.c; h++ {
		a.ref(h)
	}
	x := 62 - (a.cbits - 8)
	nsec := uint64((off%512+int64(len(p))+511)/512 - 1)
	a.l2[gc%int64(len(a.l2))] = flagCompressed | nsec<<x | uint64(off)
	a.l2set = true
	return a.settle()
}

func (a *allocator) flushL2() error {
	if !a.l2set {
		return nil
	}
	b := make([]byte, a.c)
	for i, e := range a.l2 {
		binary.BigEndian.PutUint64(b[8*i:], e)
	}
	off, err := a.putCluster(b)
	a.l1[a.l2idx] = uint64(off) | flagCopied
	clear(a.l2)
	a.l2set = false
	return err
}

// finish writes the last L2 table, the L1 table, the last refcount blocks
// and the refcount table, and returns where the tables are.
func (a *allocator) finish() (l1Off, rtOff, rtClusters int64, err error) {
	if err = a.flushL2(); err != nil {
		return
	}
	b := make([]byte, max(8*len(a.l1), 1))
	for i, e := range a.l1 {
		binary.BigEndian.PutUint64(b[8*i:], e)
	}
	if len(a.l1) > 0 {
		if l1Off, err = a.putCluster(b); err != nil {
			return
		}
	}
	if err = a.align(); err != nil {
		return
	}
	// The remaining blocks and the table count themselves: find the
	// fixed point of how many of each the tail needs.
	p0 := a.pos / a.c
	nb, nrt := int64(1), int64(1)
	for {
		last := p0 + nb + nrt - 1
		nb2 := last/a.rcN - a.rcBase/a.rcN + 1
		nrt2 := (int64(len(a.rt))+nb2)*8/a.c + 1
		if nb2 == nb && nrt2 == nrt {
			break
		}
		nb, nrt = nb2, nrt2
	}
	for h := p0; h < p0+nb+nrt; h++ {
		a.ref(h)
	}
	blocks := append(a.full, a.rc)
	a.full = nil
	for i, blk := range blocks {
		a.rt = append(a.rt, uint64((p0+int64(i))*a.c))
		if err = a.write(encodeRefcounts(blk)); err != nil {
			return
		}
	}
	rt := make([]byte, nrt*a.c)
	for i, off := range a.rt {
		binary.BigEndian.PutUint64(rt[8*i:], off)
	}
	rtOff = a.pos
	if err = a.write(rt); err != nil {
		return
	}
	return l1Off, rtOff, nrt, a.out.Flush()
}

package qcow2

import (
	"encoding/binary"
	"fmt"
)

// Limits qemu puts on the tables (block/qcow2.h); an image past them is
// one qemu refuses to open.
const (
	maxRefTableBytes  = 8 << 20  // QCOW_MAX_REFTABLE_SIZE
	maxSnapshots      = 65536    // QCOW_MAX_SNAPSHOTS
	maxSnapshotsBytes = 64 << 20 // QCOW_MAX_SNAPSHOTS_SIZE
	maxSnapshotExtra  = 1024     // QCOW_MAX_SNAPSHOT_EXTRA_DATA
	snapshotHeadBytes = 40       // fixed part of a snapshot table entry
	maxBitmaps        = 65535    // QCOW2_MAX_BITMAPS
	maxBitmapDirBytes = 64 << 20 // QCOW2_MAX_BITMAP_DIRECTORY_SIZE
	bitmapEntryBytes  = 24       // fixed part of a bitmap directory entry
	extBitmaps        = 0x23852875

	// refWindow is how many host clusters one counting pass covers: 2
	// bytes each, so the check holds 8 MiB of counts whatever the file
	// size; a larger file takes more passes over its tables.
	refWindow = 4 << 20
	// maxSeenClusters bounds the bitmap of L2 tables already walked (one
	// bit per host cluster, 32 MiB); a larger file walks a shared L2
	// table once per reference instead.
	maxSeenClusters = 256 << 20
)

// snapshotL1 is one internal snapshot's L1 table.
type snapshotL1 struct {
	offset uint64
	size   uint32
}

// bitmapTable is one persistent bitmap's table of data clusters.
type bitmapTable struct {
	offset uint64
	size   uint32
}

// checkTables validates every table the header points at, as qemu does
// when it opens an image and as qemu-img check does after: the refcount
// table and blocks, the snapshot table and each snapshot's L1 and L2
// tables, the bitmap directory and tables, and the active L2 tables. Each
// must be cluster aligned and inside the file, and every host cluster
// must be referenced no more often than its refcount says (an image whose
// tables overlap, or that shares a cluster its refcounts do not know
// about, is corrupt). Active entries must carry the COPIED flag exactly
// when their cluster's refcount is one. A dirty image (lazy refcounts not
// yet written) gets the structural checks only. Memory stays bounded:
// refcount blocks and L2 tables are read through small caches, and
// references are counted one window of host clusters at a time.
func (im *Image) checkTables() error {
	c := &tableCheck{im: im, C: uint64(im.csize)}
	if err := c.readRefTable(); err != nil {
		return err
	}
	if err := c.readSnapshots(); err != nil {
		return err
	}
	if err := c.readBitmaps(); err != nil {
		return err
	}
	clusters := (uint64(im.fileSize) + c.C - 1) / c.C
	fresh := func() {
		if clusters <= maxSeenClusters {
			c.walked = make([]uint64, (clusters+63)/64)
		}
	}
	if im.h.incompatible&incDirty != 0 {
		c.structOnly = true
		fresh()
		return c.walk()
	}
	for lo := uint64(0); lo < clusters; lo += refWindow {
		c.lo, c.hi = lo, min(lo+refWindow, clusters)
		c.refs = make([]uint16, c.hi-c.lo)
		fresh()
		if err := c.walk(); err != nil {
			return err
		}
		if err := c.compare(); err != nil {
			return err
		}
		c.firstPassDone = true
	}
	return nil
}

// tableCheck is the state of one checkTables.
type tableCheck struct {
	im         *Image
	C          uint64 // cluster size
	refTable   []uint64
	refBits    uint
	snapshots  []snapshotL1
	snapBytes  uint64 // length of the snapshot table
	bitmaps    []bitmapTable
	bitmapDir  uint64
	bitmapDirN uint64 // bytes of the bitmap directory
	rbCache    *lru[uint64, []byte]

	structOnly    bool   // dirty image: no refcount checks
	firstPassDone bool   // structural and COPIED checks are done once
	lo, hi        uint64 // host clusters counted in this pass
	refs          []uint16
	// walked marks the L2 tables walked in this pass, so a table many
	// L1 entries share (a snapshot's, or a hostile image's) costs one
	// walk; its data clusters then count once, which can only hide an
	// excess, never invent one.
	walked []uint64
}

func (c *tableCheck) corrupt(format string, args ...any) error {
	return c.im.errf(ErrCorrupt, format, args...)
}

// inFile checks that n bytes at off are cluster aligned and inside the file.
func (c *tableCheck) inFile(what string, off, n uint64) error {
	if off%c.C != 0 {
		return c.corrupt("%s at offset %#x is not cluster aligned", what, off)
	}
	if off == 0 {
		return c.corrupt("%s at offset 0 overlaps the header", what)
	}
	if fs := uint64(c.im.fileSize); off >= fs || n > fs-off {
		return c.corrupt("%s at offset %#x (%d bytes) is beyond the end of the file (%d bytes); truncated?", what, off, n, fs)
	}
	return nil
}

// ref counts one reference to each host cluster of n bytes at off.
func (c *tableCheck) ref(off, n uint64) {
	if c.refs == nil || n == 0 {
		return
	}
	for cl := off / c.C; cl <= (off+n-1)/c.C; cl++ {
		if cl >= c.lo && cl < c.hi && c.refs[cl-c.lo] < 0xffff {
			c.refs[cl-c.lo]++
		}
	}
}

func (c *tableCheck) readRefTable() error {
	h := c.im.h
	if h.refcountTableClusters == 0 {
		return c.corrupt("refcount table of 0 clusters at offset 48")
	}
	if uint64(h.refcountTableClusters) > maxRefTableBytes/c.C {
		return c.corrupt("refcount table of %d clusters is too large", h.refcountTableClusters)
	}
	n := uint64(h.refcountTableClusters) * c.C
	if err := c.inFile("refcount table", h.refcountTableOffset, n); err != nil {
		return err
	}
	raw := make([]byte, n)
	if err := readFull(c.im.r, raw, int64(h.refcountTableOffset)); err != nil {
		return c.corrupt("read refcount table at offset %#x: %v", h.refcountTableOffset, err)
	}
	c.refTable = make([]uint64, n/8)
	for i := range c.refTable {
		e := binary.BigEndian.Uint64(raw[8*i:])
		if e == 0 {
			continue
		}
		if err := c.inFile(fmt.Sprintf("refcount block %d", i), e, c.C); err != nil {
			return err
		}
		c.refTable[i] = e
	}
	c.refBits = 1 << h.refcountOrder
	c.rbCache = newLRU[uint64, []byte](max(4, int(2<<20/c.C)))
	return nil
}

// refcount returns the stored refcount of host cluster cl.
func (c *tableCheck) refcount(cl uint64) (uint64, error) {
	perBlock := c.C * 8 / uint64(c.refBits)
	ti := cl / perBlock
	if ti >= uint64(len(c.refTable)) || c.refTable[ti] == 0 {
		return 0, nil
	}
	off := c.refTable[ti]
	b, ok := c.rbCache.get(off)
	if !ok {
		b = make([]byte, c.C)
		if err := readFull(c.im.r, b, int64(off)); err != nil {
			return 0, c.corrupt("read refcount block at offset %#x: %v", off, err)
		}
		c.rbCache.add(off, b)
	}
	i := cl % perBlock
	switch bits := uint64(c.refBits); {
	case bits < 8: // packed, lowest bits first, as qemu stores them
		return uint64(b[i*bits/8]>>(i*bits%8)) & (1<<bits - 1), nil
	case bits == 8:
		return uint64(b[i]), nil
	case bits == 16:
		return uint64(binary.BigEndian.Uint16(b[2*i:])), nil
	case bits == 32:
		return uint64(binary.BigEndian.Uint32(b[4*i:])), nil
	default:
		return binary.BigEndian.Uint64(b[8*i:]), nil
	}
}

func (c *tableCheck) readSnapshots() error {
	h := c.im.h
	if h.nbSnapshots == 0 {
		return nil
	}
	if h.nbSnapshots > maxSnapshots {
		return c.corrupt("%d snapshots (at most %d)", h.nbSnapshots, maxSnapshots)
	}
	if h.snapshotsOffset%c.C != 0 || h.snapshotsOffset == 0 || h.snapshotsOffset >= uint64(c.im.fileSize) {
		return c.corrupt("snapshot table offset %#x is not a cluster inside the file", h.snapshotsOffset)
	}
	off := h.snapshotsOffset
	var e [snapshotHeadBytes]byte
	var l1Bytes uint64
	for i := uint32(0); i < h.nbSnapshots; i++ {
		if err := readFull(c.im.r, e[:], int64(off)); err != nil {
			return c.corrupt("read snapshot %d at offset %#x: %v", i, off, err)
		}
		be := binary.BigEndian
		s := snapshotL1{offset: be.Uint64(e[0:]), size: be.Uint32(e[8:])}
		idLen, nameLen, extra := uint64(be.Uint16(e[12:])), uint64(be.Uint16(e[14:])), uint64(be.Uint32(e[36:]))
		if extra > maxSnapshotExtra {
			return c.corrupt("snapshot %d has %d bytes of extra data (at most %d)", i, extra, maxSnapshotExtra)
		}
		off += (snapshotHeadBytes + extra + idLen + nameLen + 7) &^ 7
		if off-h.snapshotsOffset > maxSnapshotsBytes {
			return c.corrupt("snapshot table is larger than %d bytes", maxSnapshotsBytes)
		}
		if off > uint64(c.im.fileSize) {
			return c.corrupt("snapshot %d runs past the end of the file", i)
		}
		if uint64(s.size)*8 > maxL1Bytes {
			return c.corrupt("L1 table of snapshot %d has %d entries, too many", i, s.size)
		}
		if s.size > 0 {
			if err := c.inFile(fmt.Sprintf("L1 table of snapshot %d", i), s.offset, uint64(s.size)*8); err != nil {
				return err
			}
			// Each snapshot has an L1 table of its own: together they
			// fit in the file, or some overlap.
			if l1Bytes += uint64(s.size) * 8; l1Bytes > uint64(c.im.fileSize) {
				return c.corrupt("the L1 tables of the snapshots overlap (snapshot %d)", i)
			}
		}
		c.snapshots = append(c.snapshots, s)
	}
	c.snapBytes = off - h.snapshotsOffset
	return nil
}

func (c *tableCheck) readBitmaps() error {
	h := c.im.h
	if h.bitmapDirSize == 0 && h.nbBitmaps == 0 {
		return nil
	}
	if h.nbBitmaps == 0 || h.nbBitmaps > maxBitmaps || h.bitmapDirSize > maxBitmapDirBytes ||
		h.bitmapDirSize < uint64(h.nbBitmaps)*bitmapEntryBytes {
		return c.corrupt("bitmaps extension: %d bitmaps in a directory of %d bytes", h.nbBitmaps, h.bitmapDirSize)
	}
	if err := c.inFile("bitmap directory", h.bitmapDirOffset, h.bitmapDirSize); err != nil {
		return err
	}
	dir := make([]byte, h.bitmapDirSize)
	if err := readFull(c.im.r, dir, int64(h.bitmapDirOffset)); err != nil {
		return c.corrupt("read bitmap directory: %v", err)
	}
	c.bitmapDir, c.bitmapDirN = h.bitmapDirOffset, h.bitmapDirSize
	be := binary.BigEndian
	var tableBytes uint64
	for i, off := uint32(0), uint64(0); i < h.nbBitmaps; i++ {
		if off+bitmapEntryBytes > uint64(len(dir)) {
			return c.corrupt("bitmap %d runs past its directory", i)
		}
		e := dir[off:]
		b := bitmapTable{offset: be.Uint64(e[0:]), size: be.Uint32(e[8:])}
		extra, nameLen := uint64(be.Uint32(e[20:])), uint64(be.Uint16(e[18:]))
		off += (bitmapEntryBytes + extra + nameLen + 7) &^ 7
		if off > uint64(len(dir)) {
			return c.corrupt("bitmap %d runs past its directory", i)
		}
		if err := c.inFile(fmt.Sprintf("table of bitmap %d", i), b.offset, uint64(b.size)*8); err != nil {
			return err
		}
		if tableBytes += uint64(b.size) * 8; tableBytes > uint64(c.im.fileSize) {
			return c.corrupt("the tables of the bitmaps overlap (bitmap %d)", i)
		}
		c.bitmaps = append(c.bitmaps, b)
	}
	return nil
}

// walk visits every table once, checking each entry and counting the
// references of the current window.
func (c *tableCheck) walk() error {
	h := c.im.h
	c.ref(0, c.C) // the header cluster
	c.ref(h.refcountTableOffset, uint64(h.refcountTableClusters)*c.C)
	for _, rb := range c.refTable {
		if rb != 0 {
			c.ref(rb, c.C)
		}
	}
	c.ref(h.l1Offset, uint64(h.l1Size)*8)
	if err := c.walkL1(c.im.l1, "active", true); err != nil {
		return err
	}
	if len(c.snapshots) > 0 {
		c.ref(h.snapshotsOffset, c.snapBytes)
	}
	for i, s := range c.snapshots {
		if s.size == 0 {
			continue
		}
		c.ref(s.offset, uint64(s.size)*8)
		raw := make([]byte, uint64(s.size)*8)
		if err := readFull(c.im.r, raw, int64(s.offset)); err != nil {
			return c.corrupt("read L1 table of snapshot %d: %v", i, err)
		}
		l1 := make([]uint64, s.size)
		for j := range l1 {
			l1[j] = binary.BigEndian.Uint64(raw[8*j:])
		}
		if err := c.walkL1(l1, fmt.Sprintf("snapshot %d", i), false); err != nil {
			return err
		}
	}
	if c.bitmapDirN > 0 {
		c.ref(c.bitmapDir, c.bitmapDirN)
	}
	for i, b := range c.bitmaps {
		c.ref(b.offset, uint64(b.size)*8)
		raw := make([]byte, uint64(b.size)*8)
		if err := readFull(c.im.r, raw, int64(b.offset)); err != nil {
			return c.corrupt("read table of bitmap %d: %v", i, err)
		}
		for j := range b.size {
			e := binary.BigEndian.Uint64(raw[8*j:]) & offsetMask
			if e == 0 {
				continue
			}
			if err := c.inFile(fmt.Sprintf("data of bitmap %d", i), e, c.C); err != nil {
				return err
			}
			c.ref(e, c.C)
		}
	}
	return nil
}

// walkL1 checks one L1 table and the L2 tables it points at.
func (c *tableCheck) walkL1(l1 []uint64, which string, active bool) error {
	for i, e := range l1 {
		off := e & offsetMask
		if off == 0 {
			continue
		}
		if err := c.inFile(fmt.Sprintf("L2 table of %s L1 entry %d", which, i), off, c.C); err != nil {
			return err
		}
		c.ref(off, c.C)
		if active {
			if err := c.checkCopied(e, off, fmt.Sprintf("L2 table of L1 entry %d", i)); err != nil {
				return err
			}
		}
		if cl := off / c.C; c.walked != nil {
			if c.walked[cl/64]&(1<<(cl%64)) != 0 {
				continue
			}
			c.walked[cl/64] |= 1 << (cl % 64)
		}
		t := make([]byte, c.C)
		if err := readFull(c.im.r, t, int64(off)); err != nil {
			return c.corrupt("read L2 table at offset %#x: %v", off, err)
		}
		for j := int64(0); j < c.im.l2n; j++ {
			if err := c.checkL2Entry(t, j, which, active); err != nil {
				return err
			}
		}
	}
	return nil
}

func (c *tableCheck) checkL2Entry(t []byte, j int64, which string, active bool) error {
	e, _ := c.im.entry(t, j)
	if e&flagCompressed != 0 {
		if e&flagCopied != 0 {
			return c.corrupt("%s L2 entry %d: a compressed cluster with the COPIED flag", which, j)
		}
		m, err := c.im.mapCompressed(e, j)
		if err != nil {
			return err
		}
		c.ref(uint64(m.host), uint64(m.clen))
		return nil
	}
	host := e & offsetMask
	if host == 0 {
		return nil
	}
	if err := c.inFile(fmt.Sprintf("data cluster of %s L2 entry %d", which, j), host, 1); err != nil {
		return err
	}
	c.ref(host, 1)
	if active {
		return c.checkCopied(e, host, fmt.Sprintf("data cluster at host offset %#x", host))
	}
	return nil
}

// checkCopied checks, once, that an active entry carries the COPIED flag
// exactly when its cluster's refcount is one.
func (c *tableCheck) checkCopied(e, off uint64, what string) error {
	if c.structOnly || c.firstPassDone {
		return nil
	}
	rc, err := c.refcount(off / c.C)
	if err != nil {
		return err
	}
	if (rc == 1) != (e&flagCopied != 0) {
		return c.corrupt("%s: COPIED flag %v with refcount %d", what, e&flagCopied != 0, rc)
	}
	return nil
}

// compare checks the window's reference counts against the refcounts.
func (c *tableCheck) compare() error {
	for i, n := range c.refs {
		if n == 0 {
			continue
		}
		cl := c.lo + uint64(i)
		rc, err := c.refcount(cl)
		if err != nil {
			return err
		}
		if uint64(n) > rc {
			return c.corrupt("host cluster at offset %#x is referenced %d times but its refcount is %d (qemu-img check reports it)", cl*c.C, n, rc)
		}
	}
	return nil
}

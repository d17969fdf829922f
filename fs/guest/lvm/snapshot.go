package lvm

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"slices"
	"sort"
	"sync"
)

// Old-style (non-thin) snapshots: the visible snapshot LV is the store
// of the origin's chunks that changed after the snapshot was taken; a
// hidden LV of segment type "snapshot" ties it to its origin. The store
// is the kernel's persistent exception store
// (drivers/md/dm-snap-persistent.c): chunk 0 a header ("SnAp", valid,
// version 1, chunk size), then areas of one chunk of exceptions (old
// chunk of the origin, new chunk in the store: 16 bytes each) followed
// by as many data chunks. The list ends at an exception whose new chunk
// is 0. A snapshot reads as its origin except for the chunks listed.

const (
	snapMagic = 0x70416e53
	// maxExceptions bounds the table kept in memory (16 bytes each):
	// 4 GiB of changed data at the default 4 KiB chunks.
	maxExceptions = 1 << 20
	maxSnapChunk  = 16 << 20
)

type exception struct{ old, new int64 }

type snapshotMap struct {
	lv     *LV
	origin *LV
	store  mapper // the snapshot LV's own extents
	chunk  int64  // bytes, from the store's header
	once   sync.Once
	err    error
	exc    []exception // sorted by old
}

func newSnapshotMap(vg *VG, cow *LV, seg *Segment, need func(*LV) error) (mapper, error) {
	if seg.Merging {
		return nil, fmt.Errorf("being merged into %s: %w", seg.Origin.Name, ErrUnsupported)
	}
	for _, s := range cow.Segments {
		if s.Type != "striped" {
			return nil, fmt.Errorf("snapshot store of type %s: %w", s.Type, ErrUnsupported)
		}
	}
	if err := need(seg.Origin); err != nil {
		return nil, err
	}
	store, err := newStripedMap(vg, cow, need)
	if err != nil {
		return nil, err
	}
	cow.size = seg.Origin.Size()
	return &snapshotMap{lv: cow, origin: seg.Origin, store: store, chunk: seg.ChunkSize}, nil
}

// load reads the exception table, once.
func (m *snapshotMap) load() error {
	m.once.Do(func() {
		if m.err = m.readExceptions(); m.err != nil {
			m.err = fmt.Errorf("snapshot store: %w", m.err)
		}
	})
	return m.err
}

func (m *snapshotMap) readExceptions() error {
	le := binary.LittleEndian
	storeSize := m.lv.Extents * m.lv.VG.ExtentSize
	var h [16]byte
	if err := readVia(m.store, storeSize, h[:], 0); err != nil {
		return err
	}
	switch {
	case le.Uint32(h[:]) == 0:
		return nil // never used: no chunk changed
	case le.Uint32(h[:]) != snapMagic:
		return fmt.Errorf("no snapshot header: %w", ErrCorrupt)
	case le.Uint32(h[4:]) == 0:
		return fmt.Errorf("the snapshot was invalidated (its store overflowed or failed): %w", ErrCorrupt)
	case le.Uint32(h[8:]) != 1:
		return fmt.Errorf("store version %d: %w", le.Uint32(h[8:]), ErrUnsupported)
	}
	c := int64(le.Uint32(h[12:])) * sectorSize
	if c < 16 || c > maxSnapChunk || c&(c-1) != 0 {
		return fmt.Errorf("chunk size %d: %w", c, ErrCorrupt)
	}
	m.chunk = c
	chunks := storeSize / c
	originChunks := (m.origin.Size() + c - 1) / c
	perArea := c / 16
	area := make([]byte, c)
	defer func() {
		// Sorted by origin chunk; of several copies of one chunk (the
		// store lists them in the order they were made) the last wins.
		slices.SortStableFunc(m.exc, func(a, b exception) int { return cmp.Compare(a.old, b.old) })
		out := m.exc[:0]
		for i, e := range m.exc {
			if i+1 < len(m.exc) && m.exc[i+1].old == e.old {
				continue
			}
			out = append(out, e)
		}
		m.exc = out
	}()
	for a := int64(0); ; a++ {
		at := 1 + a*(perArea+1)
		if at >= chunks {
			return nil // the store is full
		}
		if err := readVia(m.store, storeSize, area, at*c); err != nil {
			return err
		}
		for i := int64(0); i < perArea; i++ {
			e := exception{int64(le.Uint64(area[16*i:])), int64(le.Uint64(area[16*i+8:]))}
			if e.new == 0 {
				return nil
			}
			if e.new < 0 || e.new >= chunks || e.old < 0 || e.old >= originChunks {
				return fmt.Errorf("exception %d -> %d outside origin (%d chunks) or store (%d): %w",
					e.old, e.new, originChunks, chunks, ErrCorrupt)
			}
			if len(m.exc) == maxExceptions {
				return fmt.Errorf("more than %d changed chunks: %w", maxExceptions, ErrUnsupported)
			}
			m.exc = append(m.exc, e)
		}
	}
}

func (m *snapshotMap) locate(off int64) (*Device, int64, int64, error) {
	if err := m.load(); err != nil {
		return nil, 0, 0, err
	}
	if len(m.exc) == 0 {
		return m.origin.m.locate(off)
	}
	chunk, within := off/m.chunk, off%m.chunk
	n := m.chunk - within
	i := sort.Search(len(m.exc), func(i int) bool { return m.exc[i].old >= chunk })
	if i < len(m.exc) && m.exc[i].old == chunk {
		dev, devOff, n2, err := m.store.locate(m.exc[i].new*m.chunk + within)
		return dev, devOff, min(n, n2), err
	}
	dev, devOff, n2, err := m.origin.m.locate(off)
	return dev, devOff, min(n, n2), err
}

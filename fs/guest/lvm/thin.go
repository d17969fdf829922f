package lvm

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"sync"

	"github.com/cairn-backup/cairn/fs/guest/lru"
)

// Thin volumes: a thin pool is two hidden LVs, its metadata (the
// kernel's dm-thin format, drivers/md/dm-thin-metadata.c) and its data,
// cut into chunks of chunk_size. The metadata is 4 KiB blocks: a
// superblock in block 0 and copy-on-write B-trees
// (drivers/md/persistent-data). The mapping tree has two levels: thin
// device ID to the root of that device's tree, then virtual chunk to
// data chunk. A chunk that is not mapped reads as zeros.

const (
	thinBlock      = 4096
	thinMagic      = 27022010
	thinSBXor      = 160774
	btreeXor       = 121107
	nodeInternal   = 1
	nodeLeaf       = 2
	nodeHeaderSize = 32
	maxTreeDepth   = 16 // a B-tree of 4 KiB nodes is a handful deep
	thinCacheBytes = 4 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// dmChecksum is the kernel's dm_bm_checksum: crc32c seeded with ~0,
// without the final inversion, xored with a per-kind constant.
func dmChecksum(b []byte, xor uint32) uint32 {
	return ^crc32.Checksum(b, castagnoli) ^ xor
}

// thinPool is the opened metadata of a pool, shared by its thin LVs.
type thinPool struct {
	vg       *VG
	pool     *LV
	meta     *LV
	data     *LV
	chunk    int64 // bytes
	once     sync.Once
	err      error
	mapRoot  uint64
	nrBlocks uint64 // metadata blocks
	nodes    *lru.Cache[uint64, []byte]
}

// thinMap reads one thin LV: its chunks through the pool's tree.
type thinMap struct {
	p    *thinPool
	dev  uint64 // thin device ID
	root uint64 // of its tree, once found
	once sync.Once
	err  error
}

func newThinMap(vg *VG, lv *LV, s *Segment, need func(*LV) error) (mapper, error) {
	if s.Pool.thin == nil {
		ps := s.Pool.Segments
		if len(ps) != 1 || ps[0].Type != "thin-pool" {
			return nil, fmt.Errorf("thin_pool %s is no thin pool: %w", s.Pool.Name, ErrCorrupt)
		}
		if err := need(ps[0].Metadata); err != nil {
			return nil, err
		}
		if err := need(ps[0].Data); err != nil {
			return nil, err
		}
		s.Pool.thin = &thinPool{vg: vg, pool: s.Pool, meta: ps[0].Metadata, data: ps[0].Data, chunk: ps[0].ChunkSize,
			nodes: lru.New[uint64, []byte](thinCacheBytes)}
	}
	if s.External != nil {
		return nil, fmt.Errorf("a thin volume with an external origin (%s): %w", s.External.Name, ErrUnsupported)
	}
	return &thinMap{p: s.Pool.thin, dev: uint64(s.DeviceID)}, nil
}

// open reads the pool's superblock, once.
func (p *thinPool) open() error {
	p.once.Do(func() {
		p.err = p.readSuperblock()
		if p.err != nil {
			p.err = fmt.Errorf("thin pool %s: %w", p.pool.Name, p.err)
		}
	})
	return p.err
}

func (p *thinPool) readSuperblock() error {
	le := binary.LittleEndian
	b := make([]byte, thinBlock)
	if _, err := p.meta.ReadAt(b, 0); err != nil {
		return err
	}
	if le.Uint64(b[32:]) != thinMagic {
		if allZero(b) {
			return fmt.Errorf("metadata never written (the pool was never active): %w", ErrCorrupt)
		}
		return fmt.Errorf("no thin pool superblock: %w", ErrCorrupt)
	}
	if got, want := le.Uint32(b), dmChecksum(b[4:], thinSBXor); got != want {
		return fmt.Errorf("superblock checksum %#x, computed %#x: %w", got, want, ErrCorrupt)
	}
	if v := le.Uint32(b[40:]); v < 1 || v > 2 {
		return fmt.Errorf("metadata version %d: %w", v, ErrUnsupported)
	}
	if f := le.Uint32(b[360:]); f != 0 {
		return fmt.Errorf("incompatible features %#x: %w", f, ErrUnsupported)
	}
	if bs := le.Uint32(b[340:]); bs != thinBlock/sectorSize {
		return fmt.Errorf("metadata block size %d sectors: %w", bs, ErrCorrupt)
	}
	if ds := int64(le.Uint32(b[336:])) * sectorSize; ds != p.chunk {
		return fmt.Errorf("data block size %d bytes, LVM says chunks of %d: %w", ds, p.chunk, ErrCorrupt)
	}
	p.mapRoot = le.Uint64(b[320:])
	p.nrBlocks = min(le.Uint64(b[344:]), uint64(p.meta.Size()/thinBlock))
	return nil
}

// node reads and checks the B-tree node in metadata block nr.
func (p *thinPool) node(nr uint64) ([]byte, error) {
	if b, ok := p.nodes.Get(nr); ok {
		return b, nil
	}
	if nr == 0 || nr >= p.nrBlocks {
		return nil, fmt.Errorf("btree node at block %d of %d: %w", nr, p.nrBlocks, ErrCorrupt)
	}
	b := make([]byte, thinBlock)
	if _, err := p.meta.ReadAt(b, int64(nr)*thinBlock); err != nil {
		return nil, err
	}
	le := binary.LittleEndian
	bad := func(format string, a ...any) error {
		return fmt.Errorf("btree node %d: %s: %w", nr, fmt.Sprintf(format, a...), ErrCorrupt)
	}
	if got, want := le.Uint32(b), dmChecksum(b[4:], btreeXor); got != want {
		return nil, bad("checksum %#x, computed %#x", got, want)
	}
	if le.Uint64(b[8:]) != nr {
		return nil, bad("says it is block %d", le.Uint64(b[8:]))
	}
	flags, n, maxN, vsize := le.Uint32(b[4:]), le.Uint32(b[16:]), le.Uint32(b[20:]), le.Uint32(b[24:])
	if flags != nodeInternal && flags != nodeLeaf {
		return nil, bad("flags %#x", flags)
	}
	if vsize != 8 || n > maxN || uint64(maxN)*16 > thinBlock-nodeHeaderSize {
		return nil, bad("%d of %d entries of %d bytes", n, maxN, vsize)
	}
	p.nodes.Add(nr, b, thinBlock)
	return b, nil
}

// lookup finds key in the tree at root; found is false when it is not
// there. Values of internal nodes are child block numbers; keys are
// sorted, a child holding keys from its own key up.
func (p *thinPool) lookup(root, key uint64) (v uint64, found bool, err error) {
	le := binary.LittleEndian
	nr := root
	for depth := 0; ; depth++ {
		if depth >= maxTreeDepth {
			return 0, false, fmt.Errorf("btree deeper than %d: %w", maxTreeDepth, ErrCorrupt)
		}
		b, err := p.node(nr)
		if err != nil {
			return 0, false, err
		}
		n, maxN := int(le.Uint32(b[16:])), int(le.Uint32(b[20:]))
		keys := b[nodeHeaderSize:]
		vals := keys[maxN*8:]
		// Last key <= key.
		lo, hi := 0, n
		for lo < hi {
			mid := (lo + hi) / 2
			if le.Uint64(keys[mid*8:]) <= key {
				lo = mid + 1
			} else {
				hi = mid
			}
		}
		i := lo - 1
		if i < 0 {
			return 0, false, nil
		}
		val := le.Uint64(vals[i*8:])
		if le.Uint32(b[4:]) == nodeLeaf {
			return val, le.Uint64(keys[i*8:]) == key, nil
		}
		nr = val
	}
}

func (m *thinMap) locate(off int64) (*Device, int64, int64, error) {
	p := m.p
	if err := p.open(); err != nil {
		return nil, 0, 0, err
	}
	m.once.Do(func() {
		root, ok, err := p.lookup(p.mapRoot, m.dev)
		switch {
		case err != nil:
			m.err = fmt.Errorf("thin pool %s: %w", p.pool.Name, err)
		case !ok:
			m.err = fmt.Errorf("thin pool %s has no thin device %d: %w", p.pool.Name, m.dev, ErrCorrupt)
		}
		m.root = root
	})
	if m.err != nil {
		return nil, 0, 0, m.err
	}
	chunk, within := off/p.chunk, off%p.chunk
	n := p.chunk - within
	bt, ok, err := p.lookup(m.root, uint64(chunk))
	if err != nil {
		return nil, 0, 0, fmt.Errorf("thin pool %s: %w", p.pool.Name, err)
	}
	if !ok {
		return nil, 0, n, nil
	}
	data := bt >> 24 // the low 24 bits are the time it was mapped
	if data >= uint64(p.data.Size()/p.chunk) {
		return nil, 0, 0, fmt.Errorf("thin pool %s: chunk %d maps to data chunk %d, past the pool's end: %w",
			p.pool.Name, chunk, data, ErrCorrupt)
	}
	dev, devOff, n2, err := p.data.m.locate(int64(data)*p.chunk + within)
	return dev, devOff, min(n, n2), err
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

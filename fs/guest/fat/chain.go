package fat

import (
	"encoding/binary"
	"fmt"
	"io"
	"sort"

	"github.com/cairn-backup/cairn/fs/guest"
)

const fatBlockSize = 4096

// run is a stretch of contiguous clusters of a chain: file clusters
// idx..idx+n-1 live in volume clusters disk..disk+n-1.
type run struct {
	idx, disk, n uint32
}

// chain is a cluster chain as runs; contiguous files need one run.
type chain struct {
	runs     []run
	clusters uint32 // total length
}

// locate returns the volume cluster of file cluster i and how many
// clusters follow it contiguously (itself included).
func (c *chain) locate(i uint32) (disk, contiguous uint32, ok bool) {
	k := sort.Search(len(c.runs), func(k int) bool { return c.runs[k].idx > i }) - 1
	if k < 0 || i >= c.clusters {
		return 0, 0, false
	}
	r := c.runs[k]
	return r.disk + (i - r.idx), r.n - (i - r.idx), true
}

// fatBlock returns the cached 4 KiB block of the FAT at block index bi.
func (fs *FS) fatBlock(bi int64) ([]byte, error) {
	if b, ok := fs.fatCache.Get(bi); ok {
		return b, nil
	}
	off := bi * fatBlockSize
	n := min(int64(fatBlockSize), fs.l.fatBytes-off)
	b := make([]byte, n)
	if err := fs.readFull(b, fs.l.fatStart+off); err != nil {
		return nil, err
	}
	fs.fatCache.Add(bi, b, 1)
	return b, nil
}

// fatBytes reads n (2 or 4) bytes of the FAT at off, across blocks.
func (fs *FS) fatBytesAt(off int64, n int) (uint32, error) {
	var v [4]byte
	for i := 0; i < n; i++ {
		o := off + int64(i)
		b, err := fs.fatBlock(o / fatBlockSize)
		if err != nil {
			return 0, err
		}
		v[i] = b[o%fatBlockSize]
	}
	return binary.LittleEndian.Uint32(v[:]), nil
}

// next returns the FAT entry of cluster c, normalised so that end of
// chain is eoc and bad or free clusters are reported as such.
func (fs *FS) next(c uint32) (uint32, error) {
	var v uint32
	var err error
	switch fs.l.typ {
	case FAT12:
		off := int64(c) + int64(c)/2
		v, err = fs.fatBytesAt(off, 2)
		if c&1 == 1 {
			v >>= 4
		}
		v &= 0xFFF
		if v >= 0xFF7 {
			v |= 0x0FFFF000
		}
	case FAT16:
		v, err = fs.fatBytesAt(int64(c)*2, 2)
		if v >= 0xFFF7 {
			v |= 0x0FFF0000
		}
	default:
		v, err = fs.fatBytesAt(int64(c)*4, 4)
		v &= 0x0FFFFFFF
	}
	return v, err
}

const (
	badCluster = 0x0FFFFFF7
	eocMin     = 0x0FFFFFF8
)

// chainOf returns the whole chain starting at first, walking the FAT once
// and caching the result. maxClusters caps the walk beyond the loop guard
// (directories may not exceed 2 MiB).
func (fs *FS) chainOf(first uint32, maxClusters uint32) (*chain, error) {
	if c, ok := fs.chains.Get(first); ok {
		return c, nil
	}
	if !fs.l.valid(first) {
		return nil, fmt.Errorf("fat: first cluster %d out of range: %w", first, guest.ErrCorrupt)
	}
	// A chain longer than the volume has clusters must loop.
	limit := min(fs.l.clusters, maxClusters)
	ch := &chain{}
	cur := first
	for {
		if ch.clusters >= limit {
			if limit == fs.l.clusters {
				return nil, fmt.Errorf("fat: chain from cluster %d loops: %w", first, guest.ErrCorrupt)
			}
			return nil, fmt.Errorf("fat: chain from cluster %d longer than %d clusters: %w", first, limit, guest.ErrCorrupt)
		}
		if n := len(ch.runs); n > 0 && ch.runs[n-1].disk+ch.runs[n-1].n == cur {
			ch.runs[n-1].n++
		} else {
			ch.runs = append(ch.runs, run{idx: ch.clusters, disk: cur, n: 1})
		}
		ch.clusters++
		nx, err := fs.next(cur)
		if err != nil {
			return nil, err
		}
		if nx >= eocMin {
			break
		}
		if nx == badCluster || !fs.l.valid(nx) {
			return nil, fmt.Errorf("fat: chain from cluster %d: cluster %d links to %#x: %w", first, cur, nx, guest.ErrCorrupt)
		}
		cur = nx
	}
	ch.runs = ch.runs[:len(ch.runs):len(ch.runs)]
	fs.chains.Add(first, ch, len(ch.runs))
	return ch, nil
}

// readChain reads len(p) bytes at offset off of the data of a chain.
func (fs *FS) readChain(ch *chain, p []byte, off int64) error {
	cs := fs.l.clusterSize
	for len(p) > 0 {
		disk, contig, ok := ch.locate(uint32(off / cs))
		if !ok {
			return fmt.Errorf("fat: offset %d past the end of a chain of %d clusters: %w", off, ch.clusters, guest.ErrCorrupt)
		}
		within := off % cs
		n := min(int64(len(p)), int64(contig)*cs-within)
		if err := fs.readFull(p[:n], fs.l.clusterOffset(disk)+within); err != nil {
			return err
		}
		p, off = p[n:], off+n
	}
	return nil
}

// readFull reads p at off of the volume; a volume that ends early is
// damaged.
func (fs *FS) readFull(p []byte, off int64) error {
	n, err := fs.r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || err == io.EOF {
		return fmt.Errorf("fat: read %d bytes at %d: volume too short: %w", len(p), off, guest.ErrCorrupt)
	}
	return fmt.Errorf("fat: read %d bytes at %d: %w", len(p), off, err)
}

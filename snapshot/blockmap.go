package snapshot

import (
	"fmt"

	"github.com/cairn-backup/cairn/chunkstore"
	"github.com/cairn-backup/cairn/index"
)

// PageEntries is the number of block hashes in one map page. 1024 hashes
// make a 32 KiB page: small enough that a scattered change rewrites
// little, large enough that a manifest stays small (a 1 TiB disk at
// 256 KiB blocks has 4096 pages).
const PageEntries = 1024

const hashSize = len(index.Hash{})

// encodePage serialises hashes into a page.
func encodePage(hashes []index.Hash) []byte {
	b := make([]byte, len(hashes)*hashSize)
	for i := range hashes {
		copy(b[i*hashSize:], hashes[i][:])
	}
	return b
}

// pageHashes returns the number of entries page p of disk d holds.
func (d *Disk) pageLen(p int) int {
	n := d.Blocks() - int64(p)*PageEntries
	if n > PageEntries {
		n = PageEntries
	}
	return int(n)
}

// page returns map page p of disk d, through the block cache. A zero page
// hash yields nil: every entry is a hole.
func (v *Vault) page(d *Disk, p int) ([]byte, error) {
	h := d.Pages[p]
	if h.IsZero() {
		return nil, nil
	}
	b, err := v.store.Get(h)
	if err != nil {
		return nil, fmt.Errorf("disk %s, map page %d: %w", d.Name, p, err)
	}
	if len(b) != d.pageLen(p)*hashSize {
		return nil, fmt.Errorf("disk %s, map page %d: %w: %d bytes", d.Name, p, chunkstore.ErrCorrupt, len(b))
	}
	return b, nil
}

// blockHash returns the hash of block i of disk d.
func (v *Vault) blockHash(d *Disk, i int64) (index.Hash, error) {
	var h index.Hash
	pg, err := v.page(d, int(i/PageEntries))
	if err != nil || pg == nil {
		return h, err
	}
	off := int(i%PageEntries) * hashSize
	copy(h[:], pg[off:off+hashSize])
	return h, nil
}

// mapCursor walks a disk's block map in order, one page in memory.
type mapCursor struct {
	v    *Vault
	d    *Disk
	page int
	buf  []byte // nil for a hole page
}

func newMapCursor(v *Vault, d *Disk) *mapCursor {
	return &mapCursor{v: v, d: d, page: -1}
}

// hash returns the hash of block i. Calls should move forward; going
// back costs a page lookup.
func (c *mapCursor) hash(i int64) (index.Hash, error) {
	var h index.Hash
	p := int(i / PageEntries)
	if p != c.page {
		b, err := c.v.page(c.d, p)
		if err != nil {
			return h, err
		}
		c.page, c.buf = p, b
	}
	if c.buf == nil {
		return h, nil
	}
	off := int(i%PageEntries) * hashSize
	copy(h[:], c.buf[off:off+hashSize])
	return h, nil
}

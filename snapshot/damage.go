package snapshot

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"github.com/cairn-backup/cairn/chunkstore"
	"github.com/cairn-backup/cairn/index"
)

// DiskDamage is what cannot be read of one disk: byte ranges.
type DiskDamage struct {
	Disk   string     `json:"disk"`
	Ranges [][2]int64 `json:"ranges"` // [start, end) byte offsets, ascending
	Bytes  int64      `json:"bytes"`
}

// PointDamage is what cannot be read of one point: ranges of its disks,
// or its whole record. Its undamaged ranges still read.
type PointDamage struct {
	Point  string       `json:"point"`
	Record string       `json:"record,omitempty"` // why the point's record cannot be read
	Disks  []DiskDamage `json:"disks"`
}

// pointDamageRecord is PointDamage as the index keeps it, with the
// blocks to look at again later: once each has a usable copy (a later
// backup stored it again), the point is whole.
type pointDamageRecord struct {
	PointDamage
	Blocks []index.Hash `json:"blocks"`
	More   bool         `json:"more,omitempty"` // more blocks than kept: whole only after a verify
}

// maxDamageBlocks bounds the blocks a damage record keeps.
const maxDamageBlocks = 1024

// checker finds what cannot be read of points: blocks without a
// location, in packs storage lacks or holds too short, known damaged, or
// found damaged by this run. Results are kept per map page, so a page
// shared by many points is checked once.
type checker struct {
	v     *Vault
	packs map[index.PackID]int64 // storage sizes; nil: trust the index
	bad   map[index.Hash]string  // copies found damaged in this run
	pages map[index.Hash][]pageFault

	problems map[string][]string           // what is wrong → points it affects
	missing  map[index.Hash]bool           // blocks without a location
	damaged  map[index.Hash]index.Location // copies known damaged; nil: ask the index
}

// maxDamageInMemory bounds the known-damaged copies a checker loads to
// spare an index lookup per block; past it, it asks the index.
const maxDamageInMemory = 1 << 16

type pageFault struct {
	entry int    // -1: the whole page
	what  string // the problem
}

func newChecker(v *Vault, packs map[index.PackID]int64, bad map[index.Hash]string) *checker {
	c := &checker{v: v, packs: packs, bad: bad, pages: map[index.Hash][]pageFault{}, problems: map[string][]string{},
		missing: map[index.Hash]bool{}, damaged: map[index.Hash]index.Location{}}
	errTooMany := errors.New("too many")
	if err := v.idx.Damages(func(d index.Damage) error {
		if len(c.damaged) >= maxDamageInMemory {
			return errTooMany
		}
		c.damaged[d.Hash] = d.Location
		return nil
	}); err != nil {
		c.damaged = nil
	}
	return c
}

// block says what is wrong with block h, or "".
func (c *checker) block(h index.Hash) (string, error) {
	if what, ok := c.bad[h]; ok {
		return what, nil
	}
	loc, err := c.v.idx.Block(h)
	if errors.Is(err, index.ErrNotFound) {
		c.missing[h] = true
		return fmt.Sprintf("block %s is missing", h), nil
	}
	if err != nil {
		return "", err
	}
	if c.packs != nil {
		size, ok := c.packs[loc.Pack]
		switch {
		case !ok:
			return fmt.Sprintf("pack %s is missing", loc.Pack), nil
		case int64(loc.Offset)+int64(loc.Length) > size:
			return fmt.Sprintf("pack %s is truncated (%d bytes)", loc.Pack, size), nil
		}
	}
	if c.damaged != nil {
		if dl, ok := c.damaged[h]; ok && dl == loc {
			return fmt.Sprintf("block %s in pack %s at offset %d is damaged", h, loc.Pack, loc.Offset), nil
		}
		return "", nil
	}
	dm, err := c.v.idx.Damaged(h)
	if err == nil && dm.Location == loc {
		return fmt.Sprintf("block %s in pack %s at offset %d is damaged", h, loc.Pack, loc.Offset), nil
	}
	if err != nil && !errors.Is(err, index.ErrNotFound) {
		return "", err
	}
	return "", nil
}

// page checks map page p of d and its blocks, once per page hash.
func (c *checker) page(d *Disk, p int) ([]pageFault, error) {
	h := d.Pages[p]
	if f, ok := c.pages[h]; ok {
		return f, nil
	}
	var faults []pageFault
	if what, err := c.block(h); err != nil {
		return nil, err
	} else if what != "" {
		faults = []pageFault{{-1, "map page " + what[len("block "):]}}
	} else if pg, err := c.v.page(d, p); err != nil {
		faults = []pageFault{{-1, fmt.Sprintf("map page %s: %v", h, errors.Unwrap(err))}}
	} else {
		for i := 0; i < len(pg)/hashSize; i++ {
			var bh index.Hash
			copy(bh[:], pg[i*hashSize:])
			if bh.IsZero() {
				continue
			}
			what, err := c.block(bh)
			if err != nil {
				return nil, err
			}
			if what != "" {
				faults = append(faults, pageFault{i, what})
			}
		}
	}
	c.pages[h] = faults
	return faults, nil
}

// point checks every disk of p. It returns nil for a whole point.
func (c *checker) point(p *Point) (*pointDamageRecord, error) {
	var rec pointDamageRecord
	rec.Point = p.Name()
	seen := map[string]bool{}
	for di := range p.Disks {
		d := &p.Disks[di]
		dd := DiskDamage{Disk: d.Name, Ranges: [][2]int64{}}
		bs := int64(d.BlockSize)
		add := func(first, n int64, what string) {
			start, end := first*bs, min((first+n)*bs, d.Size)
			if k := len(dd.Ranges); k > 0 && dd.Ranges[k-1][1] == start {
				dd.Ranges[k-1][1] = end
			} else {
				dd.Ranges = append(dd.Ranges, [2]int64{start, end})
			}
			dd.Bytes += end - start
			if !seen[what] {
				seen[what] = true
				c.problems[what] = append(c.problems[what], p.Name())
			}
		}
		for pi := range d.Pages {
			if d.Pages[pi].IsZero() {
				continue
			}
			faults, err := c.page(d, pi)
			if err != nil {
				return nil, err
			}
			first := int64(pi) * PageEntries
			for _, f := range faults {
				if f.entry < 0 {
					add(first, int64(d.pageLen(pi)), f.what)
					rec.noteBlock(d.Pages[pi])
					continue
				}
				add(first+int64(f.entry), 1, f.what)
				if h, err := c.v.blockHash(d, first+int64(f.entry)); err == nil {
					rec.noteBlock(h)
				}
			}
		}
		if len(dd.Ranges) > 0 {
			rec.Disks = append(rec.Disks, dd)
		}
	}
	if len(rec.Disks) == 0 {
		return nil, nil
	}
	return &rec, nil
}

func (r *pointDamageRecord) noteBlock(h index.Hash) {
	if len(r.Blocks) >= maxDamageBlocks {
		r.More = true
		return
	}
	r.Blocks = append(r.Blocks, h)
}

// problemList returns the problems found, each with the points it
// affects, sorted.
func (c *checker) problemList() []Problem {
	out := make([]Problem, 0, len(c.problems))
	for what, pts := range c.problems {
		out = append(out, Problem{What: what, Points: pts})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].What < out[j].What })
	return out
}

// recordDamage keeps what is known damaged of p in the index, or forgets
// it for a whole point, so points and show can say so.
func (v *Vault) recordDamage(p *Point, rec *pointDamageRecord) {
	if v.readOnly {
		return
	}
	var err error
	if rec == nil {
		err = v.idx.DeletePointDamage(p.Resource, p.ID)
	} else {
		var b []byte
		if b, err = json.Marshal(rec); err == nil {
			err = v.idx.PutPointDamage(p.Resource, p.ID, b)
		}
	}
	if err != nil {
		v.logf("%s: recording its damage: %v", p.Name(), err)
	}
}

// Damage returns what is known damaged of p, from the last verify or
// repair and the reads since, or nil when nothing is (any more): a point
// whose damaged blocks have all been stored again by later backups is
// whole.
func (v *Vault) Damage(p *Point) (*PointDamage, error) {
	b, err := v.idx.PointDamage(p.Resource, p.ID)
	if errors.Is(err, index.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, v.indexError(err)
	}
	var rec pointDamageRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, fmt.Errorf("%w: damage record of %s: %v", index.ErrCorrupt, p.Name(), err)
	}
	if rec.More || rec.Record != "" {
		return &rec.PointDamage, nil
	}
	c := newChecker(v, nil, nil)
	for _, h := range rec.Blocks {
		what, err := c.block(h)
		if err != nil {
			return nil, err
		}
		if what != "" {
			return &rec.PointDamage, nil
		}
	}
	return nil, nil // healed
}

// noteReadDamage records that a read of p found block h damaged, when
// verify has not said so already.
func (v *Vault) noteReadDamage(p *Point, d *Disk, block int64, h index.Hash, err error) {
	if v.readOnly || !errors.Is(err, chunkstore.ErrCorrupt) && !errors.Is(err, chunkstore.ErrMissing) {
		return
	}
	if cur, _ := v.Damage(p); cur != nil {
		return
	}
	bs := int64(d.BlockSize)
	rec := &pointDamageRecord{PointDamage: PointDamage{Point: p.Name(), Disks: []DiskDamage{{
		Disk: d.Name, Ranges: [][2]int64{{block * bs, min((block+1)*bs, d.Size)}}, Bytes: min(bs, d.Size-block*bs)}}},
		Blocks: []index.Hash{h}}
	v.recordDamage(p, rec)
}

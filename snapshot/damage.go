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

// maxPagesRemembered bounds the map pages whose results a checker keeps
// by hash (for pages shared between resources).
const maxPagesRemembered = 1 << 16

// resource checks the points of one resource. It goes page by page
// across the points, oldest first, so that a block a point shares with
// the point before it at the same place is not checked again: each
// changed block of a chain is checked once, and memory holds one page
// per disk whatever the disks' size. It returns the damage of each
// damaged point, by name.
func (c *checker) resource(points []*Point) (map[string]*pointDamageRecord, error) {
	out := map[string]*pointDamageRecord{}
	// The disks of the chain, by name, in their points' order.
	type member struct {
		p *Point
		d *Disk
	}
	var names []string
	chains := map[string][]member{}
	for _, p := range points {
		for di := range p.Disks {
			d := &p.Disks[di]
			if _, ok := chains[d.Name]; !ok {
				names = append(names, d.Name)
			}
			chains[d.Name] = append(chains[d.Name], member{p, d})
		}
	}
	damage := map[string]map[string]*DiskDamage{} // point → disk → ranges
	add := func(p *Point, d *Disk, first, n int64, what string, h index.Hash) {
		rec := out[p.Name()]
		if rec == nil {
			rec = &pointDamageRecord{PointDamage: PointDamage{Point: p.Name()}}
			out[p.Name()] = rec
			damage[p.Name()] = map[string]*DiskDamage{}
		}
		dd := damage[p.Name()][d.Name]
		if dd == nil {
			dd = &DiskDamage{Disk: d.Name, Ranges: [][2]int64{}}
			damage[p.Name()][d.Name] = dd
		}
		bs := int64(d.BlockSize)
		start, end := first*bs, min((first+n)*bs, d.Size)
		if k := len(dd.Ranges); k > 0 && dd.Ranges[k-1][1] == start {
			dd.Ranges[k-1][1] = end
		} else {
			dd.Ranges = append(dd.Ranges, [2]int64{start, end})
		}
		dd.Bytes += end - start
		if pts := c.problems[what]; len(pts) == 0 || pts[len(pts)-1] != p.Name() {
			c.problems[what] = append(pts, p.Name())
		}
		rec.noteBlock(h)
	}
	for _, name := range names {
		chain := chains[name]
		pages := 0
		for _, m := range chain {
			pages = max(pages, len(m.d.Pages))
		}
		for pi := 0; pi < pages; pi++ {
			var prev *checkedPage
			for _, m := range chain {
				if pi >= len(m.d.Pages) || m.d.Pages[pi].IsZero() {
					continue
				}
				cur, err := c.checkPage(m.d, pi, prev)
				if err != nil {
					return nil, err
				}
				first := int64(pi) * PageEntries
				for _, f := range cur.faults {
					if f.entry < 0 {
						add(m.p, m.d, first, int64(m.d.pageLen(pi)), f.what, m.d.Pages[pi])
					} else {
						add(m.p, m.d, first+int64(f.entry), 1, f.what, cur.hashAt(f.entry))
					}
				}
				prev = cur
			}
		}
	}
	// Disks in the order the point lists them.
	for _, p := range points {
		rec := out[p.Name()]
		if rec == nil {
			continue
		}
		for _, d := range p.Disks {
			if dd := damage[p.Name()][d.Name]; dd != nil {
				rec.Disks = append(rec.Disks, *dd)
			}
		}
	}
	return out, nil
}

// eachChain calls fn with the points of each resource, oldest first;
// points must be sorted by resource (as Points returns them).
func eachChain(points []*Point, fn func(chain []*Point) error) error {
	for i := 0; i < len(points); {
		j := i + 1
		for j < len(points) && points[j].Resource == points[i].Resource {
			j++
		}
		if err := fn(points[i:j]); err != nil {
			return err
		}
		i = j
	}
	return nil
}

// checkedPage is a map page and what is wrong with its blocks.
type checkedPage struct {
	hash    index.Hash
	content []byte // nil when the page itself cannot be read
	faults  []pageFault
}

func (p *checkedPage) hashAt(i int) index.Hash {
	var h index.Hash
	copy(h[:], p.content[i*hashSize:])
	return h
}

// checkPage checks map page pi of d. Entries equal to prev's (the same
// page of the point before in the chain) take prev's verdict.
func (c *checker) checkPage(d *Disk, pi int, prev *checkedPage) (*checkedPage, error) {
	h := d.Pages[pi]
	if prev != nil && prev.hash == h {
		return prev, nil
	}
	cur := &checkedPage{hash: h}
	if what, err := c.block(h); err != nil {
		return nil, err
	} else if what != "" {
		cur.faults = []pageFault{{-1, "map page " + what[len("block "):]}}
		return cur, nil
	}
	pg, err := c.v.page(d, pi)
	if err != nil {
		cur.faults = []pageFault{{-1, fmt.Sprintf("map page %s: %v", h, errors.Unwrap(err))}}
		return cur, nil
	}
	cur.content = pg
	if known, ok := c.pages[h]; ok {
		cur.faults = known
		return cur, nil
	}
	var prevFault map[int]string
	if prev != nil && prev.content != nil {
		prevFault = map[int]string{}
		for _, f := range prev.faults {
			prevFault[f.entry] = f.what
		}
	}
	for i := 0; i < len(pg)/hashSize; i++ {
		bh := cur.hashAt(i)
		if bh.IsZero() {
			continue
		}
		if prevFault != nil && i < len(prev.content)/hashSize && prev.hashAt(i) == bh {
			if what, bad := prevFault[i]; bad {
				cur.faults = append(cur.faults, pageFault{i, what})
			}
			continue
		}
		what, err := c.block(bh)
		if err != nil {
			return nil, err
		}
		if what != "" {
			cur.faults = append(cur.faults, pageFault{i, what})
		}
	}
	if len(c.pages) < maxPagesRemembered {
		c.pages[h] = cur.faults
	}
	return cur, nil
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

package snapshot

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/cairn-backup/cairn/chunkstore"
	"github.com/cairn-backup/cairn/chunkstore/storage"
	"github.com/cairn-backup/cairn/index"
)

// VerifyOptions tune Verify.
type VerifyOptions struct {
	// Data reads every stored blob back and re-hashes it.
	Data bool
	// Progress is called with pack bytes checked and the total (Data
	// only).
	Progress func(done, total int64)
}

// Problem is one thing Verify found wrong.
type Problem struct {
	What   string   `json:"what"`
	Points []string `json:"points"` // points that cannot be fully read because of it
}

// VerifyReport is the outcome of Verify. The vault is healthy when
// Problems is empty; Notes are harmless findings.
type VerifyReport struct {
	Points         int           `json:"points"`
	Packs          int           `json:"packs"`
	Blocks         int64         `json:"blocks"`
	BytesChecked   int64         `json:"bytes_checked"`
	DataChecked    bool          `json:"data_checked"`
	Problems       []Problem     `json:"problems"`
	Damaged        []PointDamage `json:"damaged"` // every point that cannot be read whole, with disks and ranges
	Notes          []string      `json:"notes"`
	DamagedPoints  []string      `json:"damaged_points"`
	MissingBlocks  int64         `json:"missing_blocks"`
	DamagedBlocks  int64         `json:"damaged_blocks"`
	UnreadablePack int           `json:"unreadable_packs"`
}

// OK reports whether nothing is wrong.
func (r *VerifyReport) OK() bool { return len(r.Problems) == 0 }

// Verify checks storage against the index: the index's tables are
// whole (a damaged one is ErrNeedsRepair), every indexed pack is in
// storage at its size, every point's record is in storage and sound,
// and every block of every point has a location inside a pack storage
// holds. With Data it also reads back and re-hashes every blob. It names
// every damaged point, with its disks and the byte ranges affected.
//
// Verify changes no data: what it finds damaged it records in the index
// (a cache) only, so that points and show can say so and the next backup
// of the same bytes stores a good copy instead of referring to the
// damaged one.
func (v *Vault) Verify(ctx context.Context, o VerifyOptions) (*VerifyReport, error) {
	// Lists are never nil, so JSON shows an empty one as [].
	rep := &VerifyReport{DataChecked: o.Data, Problems: []Problem{}, Damaged: []PointDamage{}, Notes: []string{},
		DamagedPoints: []string{}}
	problem := func(format string, a ...any) {
		rep.Problems = append(rep.Problems, Problem{What: fmt.Sprintf(format, a...), Points: []string{}})
	}

	// 0. The index: its tables whole. A table the open trusted (it
	// verified it before) may have rotted since, and Badger reads a
	// rotten block as keys that are not there: every finding below would
	// blame storage for what the index lost.
	if err := v.idx.CheckTables(); err != nil {
		return nil, v.indexError(err)
	}

	// 1. Packs: every indexed pack is in storage, at its indexed size.
	stored := map[index.PackID]int64{}
	var unindexed []string
	if err := v.st.List(ctx, storage.Packs, func(ob storage.ObjectInfo) error {
		if id, ok := packID(ob.Name); ok {
			stored[id] = ob.Size
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("list packs: %w", err)
	}
	indexed := map[index.PackID]index.PackInfo{}
	if err := v.idx.Packs(func(id index.PackID, info index.PackInfo) error {
		indexed[id] = info
		return nil
	}); err != nil {
		return nil, v.indexError(err)
	}
	var total int64
	for id, info := range indexed {
		size, ok := stored[id]
		if !ok {
			if st, err := v.st.Stat(ctx, storage.Packs, chunkstore.PackName(id)); err == nil {
				size, ok = st.Size, true // listed late
				stored[id] = size
			} else if !errors.Is(err, storage.ErrNotExist) {
				return nil, err
			}
		}
		switch {
		case !ok:
			rep.UnreadablePack++
		case size < info.Size:
			rep.UnreadablePack++
		case size > info.Size:
			problem("pack %s is %d bytes, the index says %d (cairn repair reads it again)", id, size, info.Size)
		}
		total += info.Size
	}
	for id := range stored {
		if _, ok := indexed[id]; !ok {
			unindexed = append(unindexed, id.String())
		}
	}
	sort.Strings(unindexed)
	for _, id := range unindexed {
		rep.Notes = append(rep.Notes, fmt.Sprintf("pack %s is in storage but not in the index (cairn repair indexes it; garbage collection frees what no point uses)", id))
	}
	rep.Packs = len(indexed)

	// 2. With Data: every blob decompresses and matches its hash.
	bad := map[index.Hash]string{}
	if o.Data {
		if err := v.verifyData(ctx, indexed, stored, total, bad, rep, o.Progress); err != nil {
			return nil, err
		}
	}

	// 3. Point records: each point in the index has a sound record in
	// storage, and each record in storage is in the index.
	if err := v.verifyRecords(ctx, rep, problem); err != nil {
		return nil, err
	}

	// 4. Every block of every point has a usable location.
	points, err := v.Points("")
	if err != nil {
		return nil, err
	}
	rep.Points = len(points)
	c := newChecker(v, stored, bad)
	if err := eachChain(points, func(chain []*Point) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		found, err := c.resource(chain)
		if err != nil {
			return v.indexError(err)
		}
		for _, p := range chain {
			dmg := found[p.Name()]
			v.recordDamage(p, dmg)
			if dmg != nil {
				rep.Damaged = append(rep.Damaged, dmg.PointDamage)
				rep.DamagedPoints = append(rep.DamagedPoints, p.Name())
			}
		}
		return nil
	}); err != nil {
		return nil, err
	}
	rep.Problems = append(rep.Problems, c.problemList()...)
	rep.MissingBlocks = int64(len(c.missing))
	n := int64(0)
	if err := v.idx.Blocks(func(index.BlockEntry) error { n++; return ctx.Err() }); err != nil {
		return nil, v.indexError(err)
	}
	rep.Blocks = n
	sort.Strings(rep.DamagedPoints)
	return rep, nil
}

// verifyRecords checks point records both ways, and names bad ones.
func (v *Vault) verifyRecords(ctx context.Context, rep *VerifyReport, problem func(string, ...any)) error {
	if v.cfg.Format < 2 {
		return nil // a format 1 vault opened read-only: its records are in its index
	}
	inIndex := map[string]bool{}
	keys, err := v.idx.PointKeys("")
	if err != nil {
		return v.indexError(err)
	}
	for _, k := range keys {
		inIndex[recordName(k.Resource, k.ID)] = true
	}
	seen := map[string]bool{}
	if err := v.st.List(ctx, storage.Points, func(ob storage.ObjectInfo) error {
		seen[ob.Name] = true
		b, err := v.st.Get(ctx, storage.Points, ob.Name)
		if errors.Is(err, storage.ErrNotExist) {
			return nil // deleted meanwhile
		}
		if err != nil {
			return err
		}
		res, id, ok := splitRecordName(ob.Name)
		p, err := decodeRecord(b, false)
		if err == nil && (!ok || p.Resource != res || p.ID != id) {
			err = fmt.Errorf("%w: it holds %s", ErrBadRecord, p.Name())
		}
		switch {
		case err != nil:
			problem("point record %s: %v", ob.Name, err)
			rep.Damaged = append(rep.Damaged, PointDamage{Point: ob.Name, Record: err.Error(), Disks: []DiskDamage{}})
			rep.DamagedPoints = append(rep.DamagedPoints, ob.Name)
		case !inIndex[ob.Name]:
			problem("point %s is in storage but not in the index (cairn repair adds it)", ob.Name)
		}
		return ctx.Err()
	}); err != nil {
		return fmt.Errorf("list point records: %w", err)
	}
	for name := range inIndex {
		if seen[name] {
			continue
		}
		if _, err := v.st.Stat(ctx, storage.Points, name); errors.Is(err, storage.ErrNotExist) {
			problem("point %s has no record in storage (cairn repair drops it from the index)", name)
		} else if err != nil {
			return err
		}
	}
	bad, err := v.BadRecords()
	if err != nil {
		return err
	}
	for _, b := range bad {
		if !seen[b.Point] || !inIndex[b.Point] {
			continue // reported above
		}
		problem("point %s: the index's copy of its record is damaged: %s (cairn repair reads it again)", b.Point, b.Reason)
	}
	return nil
}

func (v *Vault) verifyData(ctx context.Context, indexed map[index.PackID]index.PackInfo, stored map[index.PackID]int64,
	total int64, bad map[index.Hash]string, rep *VerifyReport, progress func(done, total int64)) error {
	perPack := map[index.PackID]int64{}
	if err := v.idx.Blocks(func(e index.BlockEntry) error {
		perPack[e.Location.Pack]++
		return nil
	}); err != nil {
		return v.indexError(err)
	}
	ids := make([]index.PackID, 0, len(indexed))
	for id := range indexed {
		if _, ok := stored[id]; ok {
			ids = append(ids, id)
		}
	}
	sort.Slice(ids, func(i, j int) bool { return string(ids[i][:]) < string(ids[j][:]) })
	for _, id := range ids {
		if err := ctx.Err(); err != nil {
			return err
		}
		var good, damaged int64 // indexed blobs found in this pack
		var cbErr error
		pc, err := v.store.CheckPack(ctx, id, func(c chunkstore.BlobCheck) {
			rep.BytesChecked += c.Length
			if progress != nil {
				progress(rep.BytesChecked, total)
			}
			loc, err := v.idx.Block(c.Hash)
			if errors.Is(err, index.ErrNotFound) {
				return // an unindexed copy; harmless
			}
			if err != nil {
				cbErr = err
				return
			}
			if loc.Pack != id || int64(loc.Offset) != c.Offset {
				return // another copy is the indexed one
			}
			if c.Err != nil {
				rep.DamagedBlocks++
				damaged++
				bad[c.Hash] = fmt.Sprintf("block %s in pack %s at offset %d is damaged: %v", c.Hash, id, c.Offset, c.Err)
				v.store.MarkDamaged(c.Hash, loc, c.Err)
				return
			}
			good++
		})
		if cbErr != nil {
			return v.indexError(cbErr)
		}
		if pc.TrailerErr != nil {
			rep.Notes = append(rep.Notes, pc.TrailerErr.Error()+
				" (no block is harmed: reads do not use it, and repair reads the blob headers instead)")
		}
		if err != nil {
			rep.UnreadablePack++
			rep.Problems = append(rep.Problems, Problem{What: err.Error(), Points: []string{}})
		}
		if good+damaged < perPack[id] {
			// Some index entries do not start a blob: find them.
			if err := v.idx.Blocks(func(e index.BlockEntry) error {
				if e.Location.Pack != id {
					return nil
				}
				if _, known := bad[e.Hash]; known {
					return nil
				}
				if _, err := v.store.Load(e.Hash, nil); err != nil {
					rep.DamagedBlocks++
					bad[e.Hash] = fmt.Sprintf("block %s in pack %s at offset %d is unreadable: %v", e.Hash, id, e.Location.Offset, err)
				}
				return nil
			}); err != nil {
				return v.indexError(err)
			}
		}
	}
	return nil
}

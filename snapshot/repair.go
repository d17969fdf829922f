package snapshot

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/cairn-backup/cairn/chunkstore"
	"github.com/cairn-backup/cairn/chunkstore/storage"
	"github.com/cairn-backup/cairn/index"
)

// RepairOptions tune Repair. The zero value means "default".
type RepairOptions struct {
	// DryRun builds the new index aside, reports, and changes nothing.
	DryRun bool
	// Logf receives notes on what repair meets; discarded when nil.
	Logf func(format string, args ...any)
	// Progress is called with the packs read so far and their number.
	Progress func(done, total int64)
}

// RepairReport says what Repair found and did.
type RepairReport struct {
	DryRun    bool          `json:"dry_run"`
	Points    int           `json:"points"`
	Packs     int           `json:"packs"`
	Blocks    int64         `json:"blocks"`
	Added     []string      `json:"added"`       // points the old index lacked
	Dropped   []string      `json:"dropped"`     // points the old index had that storage does not
	Relocated int64         `json:"relocated"`   // blocks now read from another copy
	Healed    []string      `json:"healed"`      // points damaged before, whole now
	Damaged   []PointDamage `json:"damaged"`     // points that still cannot be read whole
	BadRecord []BadRecord   `json:"bad_records"` // point records that cannot be read
	Notes     []string      `json:"notes"`
	OldIndex  string        `json:"old_index"` // what the old index was: sound, damaged, missing, ...
	Seconds   float64       `json:"duration_seconds"`
}

// Repair rebuilds the index of the vault in dir from its storage alone:
// the config, every point record, and every block location from the
// packs' headers (no block data is read, but where storage holds several
// copies of a block, they are read to find a sound one). It then checks
// every point as Verify does and records what is damaged. The new index
// is built beside the old one and swapped in at the end, so a repair
// killed at any moment leaves the old index, or none (then the next
// repair starts over); the vault's data is never changed.
//
// Repair needs the vault to itself: no daemon or other cairn may have it
// open.
func Repair(ctx context.Context, dir string, o RepairOptions) (*RepairReport, error) {
	start := time.Now()
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	if _, err := os.Stat(dir); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%s: %w", dir, ErrNotVault)
		}
		return nil, err
	}
	st, err := storage.NewDir(dir)
	if err != nil {
		return nil, err
	}
	st.KeepFree(index.WriteHeadroom) // the new index is written beside the old
	defer st.Close()
	lock, err := lockVault(dir)
	if err != nil {
		return nil, err
	}
	defer func() { lock.release() }()
	cfg, err := readConfig(ctx, st, dir)
	if errors.Is(err, ErrNeedsRepair) {
		o.Logf("%v; rebuilding the config from the point records", err)
		cfg, err = inferConfig(ctx, st, dir)
	}
	if err != nil {
		return nil, err
	}
	if cfg.Format < 2 {
		// Its points live in its index alone: upgrade it first, which
		// writes their records to storage, or refuse.
		lock.release()
		if err := upgradeForRepair(dir, o.DryRun); err != nil {
			return nil, err
		}
		if lock, err = lockVault(dir); err != nil {
			return nil, err
		}
		if cfg, err = readConfig(ctx, st, dir); err != nil {
			return nil, err
		}
	}
	if cfg.Format < FormatVersion || cfg.ID == "" {
		cfg.Format, cfg.ID = FormatVersion, newVaultID()
	}
	rep := &RepairReport{DryRun: o.DryRun, Added: []string{}, Dropped: []string{}, Healed: []string{},
		Damaged: []PointDamage{}, BadRecord: []BadRecord{}, Notes: []string{}}
	old := readOldIndex(dir, cfg.Format, o.DryRun, rep)

	newDir := filepath.Join(dir, indexNew)
	if err := os.RemoveAll(newDir); err != nil {
		return nil, err
	}
	idx, err := index.Open(newDir, index.Options{Create: true, Lean: true, Logf: o.Logf})
	if err != nil {
		return nil, err
	}
	v := &Vault{dir: dir, cfg: cfg, st: st, idx: idx, clock: time.Now, logf: o.Logf}
	v.codec, _ = chunkstore.ParseCodec(cfg.Compression)
	// Map pages are read once each (the checker keeps what it found per
	// page): a small cache is enough.
	v.store = chunkstore.New(st, idx, chunkstore.Options{ReadOnly: true, Logf: o.Logf, CacheSize: 4 << 20})
	built := false
	defer func() {
		if !built {
			idx.Close()
			os.RemoveAll(newDir)
		}
	}()
	packs, err := v.rebuildBlocks(ctx, old, rep, o)
	if err != nil {
		return nil, err
	}
	if err := v.rebuildPoints(ctx, old, rep, o.DryRun); err != nil {
		return nil, err
	}
	if err := v.rebuildDamage(ctx, packs, old, rep); err != nil {
		return nil, err
	}
	if err := idx.SetVaultID(cfg.ID); err != nil {
		return nil, err
	}
	if err := idx.Close(); err != nil {
		return nil, err
	}
	built = true
	for name := range old.points {
		if !old.seenNew[name] {
			rep.Dropped = append(rep.Dropped, name)
		}
	}
	sort.Strings(rep.Added)
	sort.Strings(rep.Dropped)
	rep.Seconds = time.Since(start).Seconds()
	if o.DryRun {
		return rep, os.RemoveAll(newDir)
	}
	if err := putConfig(ctx, st, cfg); err != nil {
		return nil, err
	}
	return rep, swapIndex(dir)
}

// upgradeForRepair upgrades a format 1 vault by opening it, which writes
// each point's record to storage from its index. When that index cannot
// be read, nothing can tell which blocks made which point: repair says
// so and changes nothing.
func upgradeForRepair(dir string, dryRun bool) error {
	if dryRun {
		return fmt.Errorf("%s: this vault was made by an older cairn (format 1), which kept its points in its index alone; "+
			"run cairn repair without --dry-run to write them to storage first", dir)
	}
	v, err := Open(dir, Options{})
	if err != nil {
		return fmt.Errorf("%s: this vault was made by an older cairn (format 1), which kept its points in its index alone, "+
			"and that index cannot be read (%v): its packs hold the data, but not which points it made", dir, err)
	}
	return v.Close()
}

// swapIndex puts the new index in place of the old one.
func swapIndex(dir string) error {
	cur, oldDir := filepath.Join(dir, indexDir), filepath.Join(dir, indexOld)
	if err := os.RemoveAll(oldDir); err != nil {
		return err
	}
	if err := os.Rename(cur, oldDir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := os.Rename(filepath.Join(dir, indexNew), cur); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return os.RemoveAll(oldDir)
}

// oldIndex is what repair takes from the index it replaces, when that
// can be read: which copies were known damaged, which points damaged,
// which points it listed.
type oldIndex struct {
	damage  map[index.Hash]index.Location
	damaged map[string]bool // points
	points  map[string]bool
	seenNew map[string]bool // points of the old index found in storage
	path    string          // where it is, when it opened
}

func readOldIndex(dir string, format int, dryRun bool, rep *RepairReport) *oldIndex {
	old := &oldIndex{damage: map[index.Hash]index.Location{}, damaged: map[string]bool{}, points: map[string]bool{},
		seenNew: map[string]bool{}}
	path := filepath.Join(dir, indexDir)
	if !index.Exists(path) {
		// A repair killed between its two renames leaves the old index here.
		path = filepath.Join(dir, indexOld)
	}
	idx, err := index.Open(path, index.Options{ReadOnly: true})
	if err != nil && !errors.Is(err, index.ErrMissing) && !dryRun {
		idx, err = index.Open(path, index.Options{}) // a crashed writer's index needs recovery first
	}
	switch {
	case errors.Is(err, index.ErrMissing):
		rep.OldIndex = "missing"
		return old
	case err != nil:
		rep.OldIndex = "unreadable: " + err.Error()
		return old
	}
	defer idx.Close()
	old.path = path
	rep.OldIndex = "sound"
	if format >= 2 {
		if _, err := idx.VaultID(); errors.Is(err, index.ErrNotFound) {
			rep.OldIndex = "empty"
		}
	}
	fail := func(err error) {
		if err != nil {
			rep.OldIndex = "damaged: " + err.Error()
		}
	}
	fail(idx.Damages(func(d index.Damage) error {
		old.damage[d.Hash] = d.Location
		return nil
	}))
	fail(idx.PointDamages(func(k index.PointKey, _ []byte) error {
		old.damaged[recordName(k.Resource, k.ID)] = true
		return nil
	}))
	fail(idx.BadRecords(func(name, _ string) error {
		old.damaged[name] = true
		return nil
	}))
	fail(idx.Points("", func(k index.PointKey, _ []byte) error {
		old.points[recordName(k.Resource, k.ID)] = true
		return nil
	}))
	return old
}

// rebuildBlocks reads every pack's headers, two packs at a time, and
// indexes the first copy of each block it meets. A block met again (or
// that a Bloom filter, sized from the packs' bytes, merely takes for
// one met before) is set aside as a candidate; once every pack is read,
// each such block gets its first sound copy. It returns the storage size
// of every pack.
func (v *Vault) rebuildBlocks(ctx context.Context, old *oldIndex, rep *RepairReport, o RepairOptions) (map[index.PackID]int64, error) {
	var packs []storage.ObjectInfo
	var total int64
	if err := v.st.List(ctx, storage.Packs, func(ob storage.ObjectInfo) error {
		if _, ok := packID(ob.Name); ok {
			packs = append(packs, ob)
			total += ob.Size
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("list packs: %w", err)
	}
	sort.Slice(packs, func(i, j int) bool { return packs[i].Name < packs[j].Name })
	// Blobs are at least a quarter of a block in size (compression is
	// rarely better): this bounds their number.
	b := &rebuild{v: v, old: old, rep: rep, seen: newBloom(total/int64(max(1, v.cfg.BlockSize/4)), 0.01, rand.Uint64()),
		sizes: map[index.PackID]int64{}}
	var firstErr error
	var done int64
	work := make(chan storage.ObjectInfo)
	var wg sync.WaitGroup
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ob := range work {
				err := b.pack(ctx, ob)
				b.mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				done++
				if o.Progress != nil {
					o.Progress(done, int64(len(packs)))
				}
				b.mu.Unlock()
			}
		}()
	}
	for _, ob := range packs {
		work <- ob
	}
	close(work)
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	rep.Packs = len(packs)

	// Blocks met more than once: the first sound copy of all.
	var batch []index.BlockEntry
	flush := func() error {
		err := v.idx.PutBlocks(batch)
		batch = batch[:0]
		return err
	}
	var buf []byte
	err := v.idx.EachCandidate(func(h index.Hash, locs []index.Location) error {
		if first, err := v.idx.Block(h); err == nil {
			locs = append([]index.Location{first}, locs...)
		} else if errors.Is(err, index.ErrNotFound) {
			rep.Blocks++ // set aside on a false alarm of the filter
		} else {
			return err
		}
		pick := locs[0]
		if len(locs) > 1 {
			pick = v.pickCopy(h, locs, old, &buf)
		}
		if oldLoc, ok := old.damage[h]; ok {
			if oldLoc == pick {
				if err := v.idx.MarkDamaged(h, pick, "known damaged before the repair"); err != nil {
					return err
				}
			} else {
				rep.Relocated++
				if err := v.idx.ClearDamage(h); err != nil {
					return err
				}
			}
		}
		batch = append(batch, index.BlockEntry{Hash: h, Location: pick})
		if len(batch) >= 8192 {
			return flush()
		}
		return ctx.Err()
	})
	if err == nil {
		err = flush()
	}
	if err == nil {
		err = v.idx.DropCandidates()
	}
	if err == nil {
		err = v.idx.Sync()
	}
	return b.sizes, err
}

// rebuild is the state rebuildBlocks' workers share.
type rebuild struct {
	v     *Vault
	old   *oldIndex
	rep   *RepairReport
	mu    sync.Mutex
	seen  *bloom
	sizes map[index.PackID]int64
}

// pack indexes one pack's blobs: first copies as block locations, copies
// of blocks met before as candidates.
func (b *rebuild) pack(ctx context.Context, ob storage.ObjectInfo) error {
	v := b.v
	id, _ := packID(ob.Name)
	blobs, err := chunkstore.ReadPackIndex(ctx, v.st, ob.Name, ob.Size)
	if err != nil && !errors.Is(err, chunkstore.ErrCorrupt) {
		return err
	}
	var first, again []index.BlockEntry
	var known []index.BlockEntry // first copies the old index knew damaged
	b.mu.Lock()
	if err != nil {
		b.rep.Notes = append(b.rep.Notes, fmt.Sprintf("%v; the %d blob(s) before the damage are kept", err, len(blobs)))
	}
	for _, bl := range blobs {
		e := index.BlockEntry{Hash: bl.Hash, Location: index.Location{Pack: id, Offset: uint64(bl.Offset),
			Length: uint32(bl.Length), RawLen: uint32(bl.RawLen)}}
		if b.seen.has(bl.Hash) {
			again = append(again, e)
			continue
		}
		b.seen.add(bl.Hash)
		first = append(first, e)
		if b.old.damage[bl.Hash] == e.Location {
			known = append(known, e)
		}
	}
	b.rep.Blocks += int64(len(first))
	b.sizes[id] = ob.Size
	b.mu.Unlock()
	if err := v.idx.PutBlocks(first); err != nil {
		return err
	}
	if err := v.idx.AddCandidates(again); err != nil {
		return err
	}
	for _, e := range known {
		if err := v.idx.MarkDamaged(e.Hash, e.Location, "known damaged before the repair"); err != nil {
			return err
		}
	}
	return v.idx.PutPack(id, index.PackInfo{Size: ob.Size, Blobs: int64(len(blobs))})
}

// pickCopy returns the first copy of block h that reads back sound,
// skipping those the old index knew damaged; the first one when none
// does.
func (v *Vault) pickCopy(h index.Hash, locs []index.Location, old *oldIndex, buf *[]byte) index.Location {
	for _, l := range locs {
		if old.damage[h] == l {
			continue
		}
		b, err := v.store.LoadAt(h, l, *buf)
		if err == nil {
			*buf = b
			return l
		}
	}
	return locs[0]
}

// rebuildPoints indexes every point record in storage.
func (v *Vault) rebuildPoints(ctx context.Context, old *oldIndex, rep *RepairReport, dryRun bool) error {
	var names []string
	if err := v.st.List(ctx, storage.Points, func(ob storage.ObjectInfo) error {
		names = append(names, ob.Name)
		return nil
	}); err != nil {
		return fmt.Errorf("list point records: %w", err)
	}
	sort.Strings(names)
	var bad []string
	for _, name := range names {
		ok, err := v.indexRecord(ctx, name)
		if errors.Is(err, storage.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		if ok {
			rep.Points++
		} else if old.points[name] {
			bad = append(bad, name)
		}
	}
	return v.healRecords(ctx, old, bad, rep, dryRun)
}

// healRecords writes back the records storage holds damaged from the old
// index's copies, where those are sound and name the same point: the old
// index then keeps the only good copy, and a repair that left it behind
// would lose a point that every command still read whole. A dry run only
// says so.
func (v *Vault) healRecords(ctx context.Context, old *oldIndex, bad []string, rep *RepairReport, dryRun bool) error {
	if len(bad) == 0 || old.path == "" {
		return nil
	}
	idx, err := index.Open(old.path, index.Options{ReadOnly: true})
	if err != nil {
		return nil // no copies to heal from: the records stay bad
	}
	defer idx.Close()
	for _, name := range bad {
		resource, id, _ := splitRecordName(name)
		b, err := idx.Point(resource, id)
		if err != nil {
			continue
		}
		if p, err := decodeRecord(b, false); err != nil || p.Resource != resource || p.ID != id {
			continue
		}
		if !dryRun {
			if err := v.st.Put(ctx, storage.Points, name, b); err != nil {
				return fmt.Errorf("write point record %s back from the index: %w", name, err)
			}
		}
		if err := v.idx.DeleteBadRecord(name); err != nil {
			return err
		}
		if err := v.idx.PutPoint(resource, id, b); err != nil {
			return err
		}
		rep.Points++
		old.damaged[name] = true // healed, unless its data is damaged too
		rep.Notes = append(rep.Notes, fmt.Sprintf("the record of %s was damaged in storage; written back from the index's sound copy", name))
	}
	return nil
}

// rebuildDamage checks every point as verify does and records what
// cannot be read; it reports points healed since the old index.
func (v *Vault) rebuildDamage(ctx context.Context, packs map[index.PackID]int64, old *oldIndex, rep *RepairReport) error {
	points, err := v.Points("")
	if err != nil {
		return err
	}
	c := newChecker(v, packs, nil)
	err = eachChain(points, func(chain []*Point) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		found, err := c.resource(chain)
		if err != nil {
			return err
		}
		for _, p := range chain {
			name := p.Name()
			if old.points[name] {
				old.seenNew[name] = true
			} else if rep.OldIndex == "sound" {
				rep.Added = append(rep.Added, name)
			}
			dmg := found[name]
			v.recordDamage(p, dmg)
			switch {
			case dmg != nil:
				rep.Damaged = append(rep.Damaged, dmg.PointDamage)
			case old.damaged[name]:
				rep.Healed = append(rep.Healed, name)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	bad, err := v.BadRecords()
	if err != nil {
		return err
	}
	rep.BadRecord = append(rep.BadRecord, bad...)
	for _, b := range bad {
		rep.Damaged = append(rep.Damaged, PointDamage{Point: b.Point, Record: b.Reason, Disks: []DiskDamage{}})
		old.seenNew[b.Point] = true
	}
	return nil
}

// inferConfig rebuilds a lost or damaged cairn.json from the point
// records: the block size their disks have (which must not change), and
// the default compression for new blocks (every blob names its own codec,
// so old ones read as before).
func inferConfig(ctx context.Context, st storage.Storage, dir string) (Config, error) {
	cfg := Config{Format: FormatVersion, ID: newVaultID(), Compression: DefaultCompression, Created: time.Now().UTC()}
	found := errors.New("found")
	err := st.List(ctx, storage.Points, func(ob storage.ObjectInfo) error {
		b, err := st.Get(ctx, storage.Points, ob.Name)
		if err != nil {
			return nil
		}
		p, err := decodeRecord(b, false)
		if err != nil || len(p.Disks) == 0 {
			return nil
		}
		cfg.BlockSize = p.Disks[0].BlockSize
		cfg.Created = p.Time
		return found
	})
	if err != nil && !errors.Is(err, found) {
		return cfg, err
	}
	if cfg.BlockSize == 0 {
		return cfg, fmt.Errorf("%s: %w: no cairn.json and no readable point record", dir, ErrNotVault)
	}
	if err := cfg.check(); err != nil {
		return cfg, err
	}
	return cfg, nil
}

package snapshot

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"time"

	"github.com/cairn-backup/cairn/chunkstore"
	"github.com/cairn-backup/cairn/chunkstore/storage"
	"github.com/cairn-backup/cairn/index"
)

// GCOptions tune GC. The zero value means "default".
type GCOptions struct {
	// DryRun reports what GC would free and changes nothing.
	DryRun bool
	// Threshold is the live share under which a pack is always
	// compacted: its live blocks copied, as stored, into new packs and
	// the pack deleted. 0.5 when 0; negative to compact nothing.
	Threshold float64
	// MaxUnused is the share of the vault's bytes that dead blocks in
	// packs may still take after gc: packs are compacted emptiest first
	// until the rest is under it (restic's --max-unused). 0.05 when 0.
	MaxUnused float64
	// Progress is called with index entries swept and their number.
	Progress func(done, total int64)

	ignoreHolds bool // mark as though no reader held a point (stats)
}

// GCReport says what GC freed (or would free, for a dry run).
type GCReport struct {
	DryRun         bool    `json:"dry_run"`
	Points         int     `json:"points"`           // points whose blocks were kept
	Held           int     `json:"held"`             // of them, held by readers (a mount, a restore), deleted or not
	Blocks         int64   `json:"blocks"`           // blocks indexed before
	BlocksFreed    int64   `json:"blocks_freed"`     // blocks no point uses, dropped
	KeptForBackups int64   `json:"kept_for_backups"` // dead blocks kept because a running backup refers to them
	PacksDeleted   int     `json:"packs_deleted"`    // packs with nothing live, deleted
	PacksCompacted int     `json:"packs_compacted"`  // packs rewritten, then deleted
	PacksWritten   int     `json:"packs_written"`    // new packs of the blocks moved
	BytesMoved     int64   `json:"bytes_moved"`      // stored bytes of live blocks copied
	BytesBefore    int64   `json:"bytes_before"`     // packs' bytes before
	BytesAfter     int64   `json:"bytes_after"`      // and after
	BytesFreed     int64   `json:"bytes_freed"`
	Seconds        float64 `json:"duration_seconds"`
}

// ErrGCRunning is returned when a garbage collection is already running.
var ErrGCRunning = errors.New("a garbage collection is already running")

// GC frees the blocks no point uses: mark, then sweep, then compact.
//
// Mark reads the block maps (never block data) of every point in the
// index and every point a reader holds, into a Bloom filter (bounded
// memory; a false positive only keeps a dead block until a later gc).
// Sweep drops from the index, in batches fenced against running backups,
// every block the filter lacks that no running backup has referred to;
// a backup asking for it afterwards stores it again. Packs left without
// a live block are deleted. Packs whose live share fell under Threshold
// are compacted: their live blocks are copied as stored (never
// recompressed, but verified) into new packs, which are committed and
// indexed before the old pack is deleted, so a kill at any moment loses
// nothing live; a reader that looked a block up in the old pack reads it
// from the new one. GC needs no lock on the vault: backups, reads and
// mounts go on meanwhile.
func (v *Vault) GC(ctx context.Context, o GCOptions) (*GCReport, error) {
	start := time.Now()
	if v.readOnly && !o.DryRun {
		return nil, v.readOnlyErr()
	}
	if !v.gcMu.TryLock() {
		return nil, ErrGCRunning
	}
	defer v.gcMu.Unlock()
	if o.Threshold == 0 {
		o.Threshold = 0.5
	}
	if o.MaxUnused == 0 {
		o.MaxUnused = 0.05
	}
	noted, stop := v.fence.startGC()
	defer stop()
	rep := &GCReport{DryRun: o.DryRun}

	n, err := v.countBlocks(ctx)
	if err != nil {
		return nil, err
	}
	rep.Blocks = n
	live, err := v.mark(ctx, n, rep, o.ignoreHolds)
	if err != nil {
		return nil, err
	}
	packs, err := v.sweep(ctx, live, noted, rep, o)
	if err != nil {
		return nil, err
	}
	if err := v.freePacks(ctx, packs, rep, o); err != nil {
		return nil, err
	}
	if !o.DryRun {
		if err := v.recountUsed(); err != nil {
			return nil, err
		}
		rep.BytesAfter = v.used.Load() // what the index now counts
	}
	rep.BytesFreed = rep.BytesBefore - rep.BytesAfter
	rep.Seconds = seconds(time.Since(start))
	return rep, nil
}

// seconds is d in seconds, to the millisecond.
func seconds(d time.Duration) float64 { return float64(d.Milliseconds()) / 1000 }

func (v *Vault) countBlocks(ctx context.Context) (int64, error) {
	var n int64
	err := v.idx.Blocks(func(index.BlockEntry) error { n++; return ctx.Err() })
	return n, v.indexError(err)
}

// mark fills a filter with every block and map page the points of the
// index and the points readers hold use.
func (v *Vault) mark(ctx context.Context, n int64, rep *GCReport, ignore bool) (*bloom, error) {
	live := newBloom(n, 0.001, rand.Uint64())
	points, err := v.Points("")
	if err != nil {
		return nil, err
	}
	if bad, err := v.BadRecords(); err != nil {
		return nil, err
	} else if len(bad) > 0 {
		return nil, fmt.Errorf("the record of %s cannot be read, so gc cannot tell which blocks it uses; run cairn repair (or delete the point)", bad[0].Point)
	}
	seen := map[string]bool{}
	for _, p := range points {
		seen[p.Name()] = true
	}
	for _, p := range v.fence.held() {
		if ignore {
			break
		}
		rep.Held++
		if !seen[p.Name()] {
			points = append(points, p)
			seen[p.Name()] = true
		}
	}
	rep.Points = len(points)
	pages := map[index.Hash]bool{}
	for _, p := range points {
		for di := range p.Disks {
			d := &p.Disks[di]
			for pi, ph := range d.Pages {
				if err := ctx.Err(); err != nil {
					return nil, err
				}
				if ph.IsZero() || pages[ph] {
					continue
				}
				pages[ph] = true
				live.add(ph)
				pg, err := v.page(d, pi)
				if err != nil {
					return nil, fmt.Errorf("%s: %w; gc cannot tell which blocks it uses, so frees nothing (cairn verify names the damage)", p.Name(), err)
				}
				for off := 0; off+hashSize <= len(pg); off += hashSize {
					var h index.Hash
					copy(h[:], pg[off:])
					if !h.IsZero() {
						live.add(h)
					}
				}
			}
		}
	}
	return live, nil
}

// packUse is what sweep learnt of a pack.
type packUse struct {
	size       int64 // in the index
	live, dead int64 // bytes of blobs
}

// sweep drops the index entries of dead blocks and returns how each
// pack is used.
func (v *Vault) sweep(ctx context.Context, live *bloom, noted func(index.Hash) bool, rep *GCReport, o GCOptions) (map[index.PackID]*packUse, error) {
	packs := map[index.PackID]*packUse{}
	if err := v.idx.Packs(func(id index.PackID, info index.PackInfo) error {
		packs[id] = &packUse{size: info.Size}
		rep.BytesBefore += info.Size
		return nil
	}); err != nil {
		return nil, v.indexError(err)
	}
	var batch []index.BlockEntry
	var done int64
	condemn := func() error {
		// Under the fence: no backup is between noting a block and asking
		// for it. A block some backup noted is kept; the others go.
		v.fence.refs.Lock()
		defer v.fence.refs.Unlock()
		var drop []index.Hash
		for _, e := range batch {
			u := packs[e.Location.Pack]
			if noted(e.Hash) {
				rep.KeptForBackups++
				if u != nil {
					u.live += int64(e.Location.Length)
				}
				continue
			}
			if cur, err := v.idx.Block(e.Hash); err != nil || cur != e.Location {
				continue // stored again meanwhile
			}
			drop = append(drop, e.Hash)
			rep.BlocksFreed++
			if u != nil {
				u.dead += int64(e.Location.Length)
			}
		}
		batch = batch[:0]
		if o.DryRun || len(drop) == 0 {
			return nil
		}
		return v.idx.DropBlocks(drop)
	}
	err := v.idx.Blocks(func(e index.BlockEntry) error {
		done++
		if o.Progress != nil && done%4096 == 0 {
			o.Progress(done, rep.Blocks)
		}
		if live.has(e.Hash) {
			if u := packs[e.Location.Pack]; u != nil {
				u.live += int64(e.Location.Length)
			}
			return nil
		}
		batch = append(batch, e)
		if len(batch) < 4096 {
			return ctx.Err()
		}
		return condemn()
	})
	if err == nil {
		err = condemn()
	}
	return packs, v.indexError(err)
}

// freePacks deletes packs with nothing live and compacts those mostly
// dead: every pack under Threshold, then the emptiest others until the
// dead bytes left are under MaxUnused of the vault.
func (v *Vault) freePacks(ctx context.Context, packs map[index.PackID]*packUse, rep *GCReport, o GCOptions) error {
	ids := make([]index.PackID, 0, len(packs))
	for id := range packs {
		ids = append(ids, id)
	}
	share := func(id index.PackID) float64 {
		u := packs[id]
		return float64(u.live) / float64(max(1, u.size))
	}
	sort.Slice(ids, func(i, j int) bool {
		if si, sj := share(ids[i]), share(ids[j]); si != sj {
			return si < sj
		}
		return string(ids[i][:]) < string(ids[j][:])
	})
	var compact []index.PackID
	rep.BytesAfter = rep.BytesBefore
	var unused, total int64
	for _, id := range ids {
		if u := packs[id]; u.live > 0 {
			unused += u.size - u.live
			total += u.size
		}
	}
	for _, id := range ids {
		u := packs[id]
		switch {
		case u.live == 0:
			rep.PacksDeleted++
			rep.BytesAfter -= u.size
			if !o.DryRun {
				if err := v.deletePack(ctx, id); err != nil {
					return err
				}
			}
		case o.Threshold > 0 && (share(id) < o.Threshold || float64(unused) > o.MaxUnused*float64(total)):
			compact = append(compact, id)
			rep.PacksCompacted++
			rep.BytesMoved += u.live
			rep.BytesAfter -= u.size - u.live // about: the new packs add their headers
			unused -= u.size - u.live
			total -= u.size - u.live
		}
	}
	if o.DryRun || len(compact) == 0 {
		return nil
	}
	rep.BytesMoved = 0
	return v.compact(ctx, compact, rep)
}

// deletePack drops a pack that holds nothing live: its record first,
// then the object (a pack left by a kill between the two is found
// without live blocks by the next gc, or indexed empty by a reconcile).
func (v *Vault) deletePack(ctx context.Context, id index.PackID) error {
	if err := v.idx.DeletePackRecord(id); err != nil {
		return v.indexError(err)
	}
	// Once the record is gone, the object must go too, even if gc was
	// cancelled meanwhile: no later gc sees a pack without a record, and
	// only an open after a crash would index it again.
	if err := v.st.Delete(context.WithoutCancel(ctx), storage.Packs, chunkstore.PackName(id)); err != nil {
		return fmt.Errorf("delete pack %s: %w", id, err)
	}
	return nil
}

// compact copies the live blocks of packs into new packs, then deletes
// the old ones. A live block that cannot be read is left where it is,
// and so is its pack.
func (v *Vault) compact(ctx context.Context, ids []index.PackID, rep *GCReport) error {
	w := v.store.NewPackWriter(ctx, 0)
	var keep = map[index.PackID]bool{}
	var buf []byte
	for _, id := range ids {
		name := chunkstore.PackName(id)
		info, err := v.st.Stat(ctx, storage.Packs, name)
		if err != nil {
			w.Abort()
			return err
		}
		blobs, err := chunkstore.ReadPackIndex(ctx, v.st, name, info.Size)
		if err != nil {
			keep[id] = true // damaged: its blobs may be the only copies
			v.logf("gc: pack %s is not compacted: %v", id, err)
			continue
		}
		for _, b := range blobs {
			loc := index.Location{Pack: id, Offset: uint64(b.Offset), Length: uint32(b.Length), RawLen: uint32(b.RawLen)}
			if cur, err := v.idx.Block(b.Hash); err != nil || cur != loc {
				continue // dead, or another copy is the live one
			}
			codec, stored, err := v.store.AppendStoredAt(b.Hash, loc, buf[:0])
			if err != nil {
				keep[id] = true
				v.logf("gc: block %s in pack %s stays: %v", b.Hash, id, err)
				continue
			}
			buf = stored
			n, err := w.Copy(chunkstore.Blob{Kind: b.Kind, Hash: b.Hash, RawLen: b.RawLen, Codec: codec, Stored: stored})
			if err != nil {
				w.Abort()
				return err
			}
			rep.BytesMoved += n
		}
	}
	if err := w.Close(); err != nil {
		return err
	}
	rep.PacksWritten = w.Sealed()
	for _, id := range ids {
		if keep[id] {
			rep.PacksCompacted--
			continue
		}
		if err := v.deletePack(ctx, id); err != nil {
			return err
		}
	}
	return nil
}

// Reclaimable says what a gc would free now, and of that what it cannot
// free yet because readers hold deleted points (a file open in the
// mount). It changes nothing.
func (v *Vault) Reclaimable(ctx context.Context) (free, held int64, err error) {
	with, err := v.GC(ctx, GCOptions{DryRun: true})
	if err != nil {
		return 0, 0, err
	}
	without, err := v.GC(ctx, GCOptions{DryRun: true, ignoreHolds: true})
	if err != nil {
		return 0, 0, err
	}
	return with.BytesFreed, max(0, without.BytesFreed-with.BytesFreed), nil
}

package snapshot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"

	"github.com/cairn-backup/cairn/chunkstore"
	"github.com/cairn-backup/cairn/chunkstore/storage"
	"github.com/cairn-backup/cairn/index"
)

// Source is a disk to back up: its bytes, its size, and where its data
// may be. Package image provides sources for raw files, block devices and
// qcow2 images.
type Source interface {
	io.ReaderAt
	Size() int64
	// NextData returns the first range [start, end) at or after off that
	// may hold non-zero bytes, or (Size(), Size()) when none remains.
	NextData(off int64) (start, end int64, err error)
}

// DiskSource names one disk of a backup.
type DiskSource struct {
	Name string
	Path string // recorded in the manifest for the user's reference
	Src  Source
	// Bitmap names the dirty bitmap to read the disk's changes from:
	// when the rule of doc.go trusts it, only the blocks Dirty reports
	// are read and the others are the base disk's. When it does not, the
	// disk is read in full and the point's disk says why (BitmapUnused).
	// "" reads every block that may hold data.
	Bitmap string
	// Dirty walks what bitmap Bitmap reports changed; nil when the
	// source does not have the bitmap.
	Dirty DirtyFunc
	// Checkpoint names the bitmap that began recording the disk's changes
	// when the state the source shows was taken: recorded in the point,
	// so that the next backup may read from that bitmap.
	Checkpoint string
}

// BackupOptions tune a backup. The zero value means "default".
type BackupOptions struct {
	// Progress is called from one goroutine with bytes of source data
	// read so far and the total to read.
	Progress func(done, total int64)
	// Workers hashing and compressing; GOMAXPROCS when 0.
	Workers int
	// RequireSameDisks fails the backup, before anything is read, when
	// its disks are not those of the resource's latest point (added,
	// removed or renamed ones).
	RequireSameDisks bool
	// Consistency is recorded in the point: "application" when the
	// caller froze what writes to the sources; "crash" when empty.
	Consistency string
	// Trigger is recorded in the point: "manual" when empty, or
	// "policy NAME".
	Trigger string
}

// Consistency levels a point records.
const (
	ConsistencyApplication = "application"
	ConsistencyCrash       = "crash"
)

// Backup takes a new point of resource from disks and commits it. On any
// error the vault is left as it was, plus at most whole packs of blocks
// that later backups reuse.
func (v *Vault) Backup(ctx context.Context, resource string, disks []DiskSource, o BackupOptions) (*Point, error) {
	start := v.clock()
	if v.readOnly {
		return nil, v.readOnlyErr()
	}
	if err := CheckName("resource", resource); err != nil {
		return nil, err
	}
	if len(disks) == 0 {
		return nil, errors.New("nothing to back up: no source given")
	}
	seen := map[string]bool{}
	var total int64
	var scans []extentScan
	for _, d := range disks {
		if err := CheckName("disk", d.Name); err != nil {
			return nil, err
		}
		if seen[d.Name] {
			return nil, fmt.Errorf("%w: two disks named %q (name them with DISK=PATH)", ErrBadName, d.Name)
		}
		seen[d.Name] = true
		sc, err := scanExtents(d.Src, int64(v.cfg.BlockSize))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", d.Path, err)
		}
		scans = append(scans, sc)
		total += sc.work
	}
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	unlock, err := v.backups.lock(ctx, resource)
	if err != nil {
		return nil, err
	}
	defer unlock()
	parent, release, err := v.holdNewest(resource)
	if err != nil {
		return nil, err
	}
	defer release()
	var nblocks int64
	for _, d := range disks {
		nblocks += (d.Src.Size() + int64(v.cfg.BlockSize) - 1) / int64(v.cfg.BlockSize)
	}
	pw := &writeSession{v: v, PackWriter: v.store.NewPackWriter(ctx, 0), s: v.fence.begin(nblocks + nblocks/PageEntries)}
	pw.SetBudget(budget{v})
	defer v.fence.end(pw.s) // after the commit below: gc must see the session until the point is indexed
	committed := false
	defer func() {
		if !committed {
			pw.Abort()
		}
	}()
	pt := &Point{Version: pointVersion, Resource: resource, Consistency: o.Consistency, Trigger: o.Trigger}
	if pt.Consistency == "" {
		pt.Consistency = ConsistencyCrash
	}
	if pt.Trigger == "" {
		pt.Trigger = "manual"
	}
	if parent != nil {
		pt.Parent = parent.ID
	}
	bases, removed := planDisks(parent, disks)
	pt.Removed = removed
	if o.RequireSameDisks && parent != nil {
		pt.Disks = make([]Disk, len(disks))
		for i, d := range disks {
			pt.Disks[i] = Disk{Name: d.Name}
			if bases[i] != nil {
				pt.Disks[i].Base = bases[i].Name
			}
		}
		if c := pt.DiskChanges(); !c.None() {
			return nil, fmt.Errorf("%w %s: %s; nothing was read", ErrDisksChanged, parent.Name(), c)
		}
		pt.Disks = nil
	}
	plans := make([]*readPlan, len(disks))
	unused := make([]string, len(disks))
	for i, d := range disks {
		if plans[i], unused[i], err = v.planBitmap(ctx, d, parent, bases[i], scans[i]); err != nil {
			return nil, fmt.Errorf("disk %s (%s): %w", d.Name, d.Path, err)
		}
		if plans[i] != nil { // only the dirty blocks that hold data are read
			w := runsBytes(scans[i].runs, plans[i].read, int64(v.cfg.BlockSize), scans[i].size)
			total += w - scans[i].work
		}
	}
	prog := &progress{fn: o.Progress, total: total}
	for i, d := range disks {
		pd := bases[i]
		if pd != nil && pd.BlockSize != v.cfg.BlockSize {
			pd = nil
		}
		disk, err := v.backupDisk(ctx, d, pd, plans[i], pw, o.Workers, prog)
		if err == nil {
			err = checkUnchanged(d.Src, int64(v.cfg.BlockSize), scans[i])
		}
		if err != nil {
			return nil, fmt.Errorf("disk %s (%s): %w", d.Name, d.Path, err)
		}
		if pd != nil {
			disk.Base = pd.Name
		}
		if plans[i] != nil {
			disk.Bitmap = d.Bitmap
		}
		if unused[i] != "" {
			disk.BitmapUnused = fmt.Sprintf("bitmap %s not used: %s", d.Bitmap, unused[i])
		}
		disk.Checkpoint = d.Checkpoint
		pt.Disks = append(pt.Disks, *disk)
		pt.Added += disk.Added
	}
	committed = true // Close below ends the writer either way
	if err := pw.Close(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	v.commitMu.Lock()
	defer v.commitMu.Unlock()
	pt.Time = v.clock().UTC()
	id, err := v.newID(ctx, resource, pt.Time)
	if err != nil {
		return nil, err
	}
	pt.ID = id
	pt.Duration = pt.Time.Sub(start)
	rec, err := encodeRecord(pt)
	if err != nil {
		return nil, err
	}
	// The durable write of the point's record to storage is the commit.
	if err := v.st.Put(ctx, storage.Points, recordName(resource, id), rec); err != nil {
		return nil, fmt.Errorf("commit %s: %w", pt.Name(), err)
	}
	if err := v.idx.PutNewPoint(resource, id, rec); err != nil {
		v.indexLags("point "+pt.Name(), err)
	}
	return pt, nil
}

// extentScan is what a source says of itself before it is read: its
// size, the runs of blocks a backup reads (every block that overlaps a
// data range; everything else is a hole, never read), and their bytes.
type extentScan struct {
	size int64
	runs [][2]int64 // [first, last] block numbers, ascending, disjoint
	work int64
}

// scanExtents walks the data ranges of s.
func scanExtents(s Source, bs int64) (extentScan, error) {
	sc := extentScan{size: s.Size()}
	next := int64(0) // first block not yet counted
	err := eachDataRange(s, func(start, end int64) {
		first, last := max(start/bs, next), (end-1)/bs
		if first > last {
			return
		}
		sc.work += min((last+1)*bs, sc.size) - first*bs
		if n := len(sc.runs); n > 0 && sc.runs[n-1][1]+1 == first {
			sc.runs[n-1][1] = last
		} else {
			sc.runs = append(sc.runs, [2]int64{first, last})
		}
		next = last + 1
	})
	return sc, err
}

// eachDataRange calls fn for each data range of s, in order.
func eachDataRange(s Source, fn func(start, end int64)) error {
	size := s.Size()
	for off := int64(0); off < size; {
		start, end, err := s.NextData(off)
		if err != nil {
			return err
		}
		if start >= size {
			return nil
		}
		if start < off || end <= start || end > size {
			return fmt.Errorf("source reported a bad data range [%d, %d)", start, end)
		}
		fn(start, end)
		off = end
	}
	return nil
}

// CurrentSizer is a Source that can tell its size now, as opposed to
// when it was opened; files and block devices can. A backup checks it
// after reading, so a source that shrank or grew meanwhile fails the
// backup instead of giving a point with part of it silently zeroed.
type CurrentSizer interface {
	CurrentSize() (int64, error)
}

// sourceChanged says how a source changed, and what to do about it.
func sourceChanged(format string, args ...any) error {
	return fmt.Errorf("%w (%s); nothing was committed: back up a snapshot of it, or stop what writes to it first",
		ErrSourceChanged, fmt.Sprintf(format, args...))
}

// checkUnchanged fails when s, just read, no longer matches what before
// recorded: its size changed, or bytes it reported as a hole (and that
// were therefore never read) are no longer zeros. A range that merely
// became reported as data is not a change: a freshly written file's
// extents settle as the kernel writes it back, so the check reads such a
// range and accepts zeros.
func checkUnchanged(s Source, bs int64, before extentScan) error {
	if cs, ok := s.(CurrentSizer); ok {
		n, err := cs.CurrentSize()
		if err != nil {
			return err
		}
		if n != before.size {
			return sourceChanged("its size went from %d to %d bytes", before.size, n)
		}
	}
	runs := before.runs
	var buf []byte
	var changed error
	err := eachDataRange(s, func(start, end int64) {
		for changed == nil && start < end {
			for len(runs) > 0 && (runs[0][1]+1)*bs <= start {
				runs = runs[1:]
			}
			if len(runs) > 0 && runs[0][0]*bs <= start { // read: skip to the run's end
				start = min(end, (runs[0][1]+1)*bs)
				continue
			}
			stop := end // a hole when it was scanned: must still be zeros
			if len(runs) > 0 {
				stop = min(end, runs[0][0]*bs)
			}
			for off := start; off < stop && changed == nil; off += int64(len(buf)) {
				if buf == nil {
					buf = make([]byte, bs)
				}
				p := buf[:min(int64(len(buf)), stop-off)]
				if _, err := s.ReadAt(p, off); err != nil && !errors.Is(err, io.EOF) {
					changed = err
				} else if !chunkstore.IsZero(p) {
					changed = sourceChanged("data appeared near offset %d, where it had a hole", off)
				}
			}
			start = stop
		}
	})
	if err != nil {
		return err
	}
	return changed
}

type progress struct {
	fn          func(done, total int64)
	done, total int64
}

func (p *progress) add(n int64) {
	p.done += n
	if p.fn != nil {
		p.fn(p.done, p.total)
	}
}

// item is one unit of the backup pipeline: a block to hash and maybe
// compress, a block taken from the base disk unread, or a run of hole
// blocks.
type item struct {
	first int64 // block number
	holes int64 // >0: a run of this many hole blocks; no data
	kept  int64 // >0: a block of this many bytes taken from the base disk, hash set, unread
	raw   []byte
	read  int64 // source bytes read for this block
	extra bool  // read though the plan meant to take it from the base disk

	hash   index.Hash
	exists bool
	codec  chunkstore.Codec
	stored []byte
	err    error
	done   chan struct{}
	slot   *slot
}

type slot struct {
	raw, comp []byte
}

// backupDisk streams one disk through reader → workers (zero check,
// hash, dedup lookup, compression) → this goroutine (in order: pack
// writes and map pages). The window of items in flight bounds memory.
// With a plan, only its blocks are read; the others are its base's.
func (v *Vault) backupDisk(ctx context.Context, ds DiskSource, parent *Disk, plan *readPlan, pw *writeSession, workers int, prog *progress) (*Disk, error) {
	src := ds.Src
	bs := int64(v.cfg.BlockSize)
	d := &Disk{Name: ds.Name, Source: ds.Path, Size: src.Size(), BlockSize: int(bs)}
	nblocks := d.Blocks()
	window := 4 * workers
	slots := make(chan *slot, window)
	for i := 0; i < window; i++ {
		slots <- &slot{raw: make([]byte, bs)}
	}
	ordered := make(chan *item, window)
	work := make(chan *item, window)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var readErr error
	go func() { // reader
		defer close(ordered)
		defer close(work)
		readErr = v.readBlocks(ctx, src, bs, nblocks, plan, pw, slots, ordered, work)
	}()
	var wg sync.WaitGroup
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for it := range work {
				v.processBlock(it, pw)
				close(it.done)
			}
		}()
	}
	defer wg.Wait()

	var parentMap *mapCursor
	if parent != nil {
		parentMap = newMapCursor(v, parent)
	}
	pages := newPageBuilder(v, pw, nblocks)
	fail := func(err error) (*Disk, error) {
		cancel()
		for it := range ordered { // drain so the reader and workers end
			<-it.done
		}
		return nil, err
	}
	for it := range ordered {
		<-it.done
		if it.err != nil {
			return fail(it.err)
		}
		if it.holes > 0 {
			for i := int64(0); i < it.holes; i++ {
				if err := v.noteChange(parentMap, it.first+i, index.Hash{}, 0, &d.Changed); err != nil {
					return fail(err)
				}
				if err := pages.add(index.Hash{}, &d.Added); err != nil {
					return fail(err)
				}
			}
			continue
		}
		n := int64(len(it.raw))
		if it.kept > 0 {
			n = it.kept
		}
		if !it.hash.IsZero() {
			d.Allocated += n
			if !it.exists {
				added, err := pw.Add(chunkstore.Blob{Kind: chunkstore.KindData, Hash: it.hash,
					RawLen: len(it.raw), Codec: it.codec, Stored: it.stored})
				if err != nil {
					return fail(err)
				}
				d.Added += added
			}
		}
		if err := v.noteChange(parentMap, it.first, it.hash, n, &d.Changed); err != nil {
			return fail(err)
		}
		if err := pages.add(it.hash, &d.Added); err != nil {
			return fail(err)
		}
		d.Read += it.read
		if it.extra {
			prog.total += it.read
		}
		prog.add(it.read)
		if it.slot != nil {
			slots <- it.slot
		}
	}
	if readErr != nil {
		return nil, readErr
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var err error
	if d.Pages, err = pages.finish(&d.Added); err != nil {
		return nil, err
	}
	return d, nil
}

// noteChange counts block i as changed when its hash differs from the
// parent's. Without a parent every allocated byte counts as changed.
func (v *Vault) noteChange(parent *mapCursor, i int64, h index.Hash, n int64, changed *int64) error {
	if parent == nil || i >= parent.d.Blocks() {
		if !h.IsZero() {
			*changed += n
		}
		return nil
	}
	ph, err := parent.hash(i)
	if err != nil {
		return fmt.Errorf("parent point: %w", err)
	}
	if ph != h {
		if n == 0 { // now a hole; count what was there
			n = min(int64(parent.d.BlockSize), parent.d.Size-i*int64(parent.d.BlockSize))
		}
		*changed += n
	}
	return nil
}

// readBlocks feeds the pipeline in block order. Blocks wholly inside a
// hole of the source are never read; with a plan, neither are the blocks
// it takes from its base disk.
func (v *Vault) readBlocks(ctx context.Context, src Source, bs, nblocks int64, plan *readPlan, pw *writeSession, slots chan *slot, ordered, work chan *item) error {
	size := src.Size()
	var dataStart, dataEnd int64 = -1, -1 // current data range
	var base *mapCursor
	var ri int // cursor into plan.read
	if plan != nil {
		base = newMapCursor(v, plan.base)
	}
	for b := int64(0); b < nblocks; {
		if err := ctx.Err(); err != nil {
			return err
		}
		off := b * bs
		limit, extra := nblocks, false // the blocks from b to limit are read or holes
		if plan != nil {
			h, ok, err := plan.baseBlock(base, &ri, pw, b)
			if err != nil {
				return err
			}
			if ok {
				it := &item{first: b, hash: h, exists: true, done: make(chan struct{})}
				if h.IsZero() {
					it.holes = 1
				} else {
					it.kept = min(bs, size-off)
				}
				close(it.done)
				ordered <- it
				b++
				continue
			}
			if ri < len(plan.read) && plan.read[ri][0] <= b {
				limit = plan.read[ri][1] + 1
			} else { // meant to be kept, but it must be read
				limit, extra = b+1, true
			}
		}
		if off >= dataEnd {
			var err error
			if dataStart, dataEnd, err = src.NextData(off); err != nil {
				return err
			}
			if dataStart < off {
				dataStart = off
			}
		}
		if dataStart >= off+bs || dataStart >= size {
			// Blocks before the next data range are holes.
			next := nblocks
			if dataStart < size {
				next = dataStart / bs
			}
			next = min(next, limit)
			it := &item{first: b, holes: next - b, done: make(chan struct{})}
			close(it.done)
			ordered <- it
			b = next
			continue
		}
		var s *slot
		select {
		case s = <-slots:
		case <-ctx.Done():
			return ctx.Err()
		}
		n := min(bs, size-off)
		raw := s.raw[:n]
		if got, err := src.ReadAt(raw, off); err != nil && !(errors.Is(err, io.EOF) && got == len(raw)) {
			if errors.Is(err, io.EOF) {
				return sourceChanged("it ended at offset %d, before its size of %d bytes", off+int64(got), size)
			}
			return fmt.Errorf("read at offset %d: %w", off, err)
		}
		it := &item{first: b, raw: raw, read: n, extra: extra, slot: s, done: make(chan struct{})}
		ordered <- it
		work <- it
		b++
	}
	return nil
}

// processBlock runs on a worker: zero check, hash, lookup, compress.
func (v *Vault) processBlock(it *item, pw *writeSession) {
	if chunkstore.IsZero(it.raw) {
		return // zero hash: a hole
	}
	it.hash = chunkstore.Sum(it.raw)
	it.exists, it.err = pw.has(it.hash)
	if it.err != nil || it.exists {
		return
	}
	codec, out := chunkstore.Compress(v.codec, it.raw, it.slot.comp)
	it.codec, it.stored = codec, out
	if codec != chunkstore.CodecNone {
		it.slot.comp = out // keep the grown buffer; never alias raw
	}
}

// writeSession is a backup's pack writer with its gc fence session:
// every block the backup refers to is noted before the vault is asked
// whether it holds it.
type writeSession struct {
	v *Vault
	*chunkstore.PackWriter
	s *session
}

func (w *writeSession) has(h index.Hash) (bool, error) {
	return w.v.fence.refer(w.s, h, w.PackWriter.Has)
}

// pageBuilder cuts the ordered stream of block hashes into map pages and
// stores each full page as it completes.
type pageBuilder struct {
	v      *Vault
	pw     *writeSession
	cur    []index.Hash
	pages  []index.Hash
	zero   bool // cur holds only holes
	expect int64
	got    int64
}

func newPageBuilder(v *Vault, pw *writeSession, nblocks int64) *pageBuilder {
	return &pageBuilder{v: v, pw: pw, cur: make([]index.Hash, 0, PageEntries), zero: true, expect: nblocks}
}

func (p *pageBuilder) add(h index.Hash, added *int64) error {
	p.cur = append(p.cur, h)
	p.got++
	if !h.IsZero() {
		p.zero = false
	}
	if len(p.cur) == PageEntries {
		return p.flush(added)
	}
	return nil
}

func (p *pageBuilder) flush(added *int64) error {
	if p.zero {
		p.pages = append(p.pages, index.Hash{})
	} else {
		raw := encodePage(p.cur)
		h := chunkstore.Sum(raw)
		exists, err := p.pw.has(h)
		if err != nil {
			return err
		}
		if !exists {
			codec, stored := chunkstore.Compress(p.v.codec, raw, nil)
			n, err := p.pw.Add(chunkstore.Blob{Kind: chunkstore.KindMap, Hash: h, RawLen: len(raw), Codec: codec, Stored: stored})
			if err != nil {
				return err
			}
			*added += n
		}
		p.pages = append(p.pages, h)
	}
	p.cur = p.cur[:0]
	p.zero = true
	return nil
}

func (p *pageBuilder) finish(added *int64) ([]index.Hash, error) {
	if len(p.cur) > 0 {
		if err := p.flush(added); err != nil {
			return nil, err
		}
	}
	if p.got != p.expect {
		return nil, fmt.Errorf("internal error: mapped %d of %d blocks", p.got, p.expect)
	}
	return p.pages, nil
}

// holdNewest returns the newest point of resource, held so that gc
// keeps its map pages while a backup compares against it (nil when the
// resource has none), and the release of the hold. A delete that takes
// the point meanwhile makes it look again: the hold is sure only once
// the point is seen to exist after it was taken.
func (v *Vault) holdNewest(resource string) (*Point, func(), error) {
	for {
		ids, err := v.PointIDs(resource)
		if err != nil || len(ids) == 0 {
			return nil, func() {}, err
		}
		p, err := v.Point(resource, ids[len(ids)-1])
		if errors.Is(err, ErrNoPoint) {
			continue // deleted since it was listed
		}
		if err != nil {
			return nil, nil, err
		}
		release := v.fence.hold(p)
		if _, err := v.Point(resource, p.ID); err == nil {
			return p, release, nil
		} else if !errors.Is(err, ErrNoPoint) {
			release()
			return nil, nil, err
		}
		release()
	}
}

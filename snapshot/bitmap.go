package snapshot

import (
	"context"
	"fmt"

	"github.com/cairn-backup/cairn/index"
)

// DirtyFunc walks the ranges [start, end) of a disk that a dirty bitmap
// reports changed, in ascending order. An error from fn stops the walk
// and is returned.
type DirtyFunc func(ctx context.Context, fn func(start, end int64) error) error

// readPlan says which blocks of a disk a backup reads. Without one every
// block that may hold data is read (a full read). With one, only the
// blocks in read are; every other block is the base disk's, taken from
// its block map without reading the source.
type readPlan struct {
	read [][2]int64 // [first, last] block runs to read, ascending, disjoint
	base *Disk
}

// planBitmap decides whether ds may be read from its dirty bitmap
// against base, the disk of parent (the resource's latest point) it is
// compared with, and returns the plan, or nil and why not (the disk is
// then read in full). sc is the source's allocation, scanned before.
//
// The rule (see doc.go): bitmap NAME is trusted only when base recorded
// checkpoint NAME (the bitmap began recording at base's read), the disk
// has base's size and block size, and the bitmap agrees with what the
// source reports: no block the bitmap calls clean may have gone from
// data in base to reading as zeros.
func (v *Vault) planBitmap(ctx context.Context, ds DiskSource, parent *Point, base *Disk, sc extentScan) (*readPlan, string, error) {
	if ds.Bitmap == "" {
		return nil, "", nil
	}
	bs := int64(v.cfg.BlockSize)
	size := ds.Src.Size()
	switch {
	case ds.Dirty == nil:
		return nil, "the source does not offer it", nil
	case parent == nil:
		return nil, "the resource has no point yet to take the unchanged blocks from", nil
	case base == nil:
		return nil, fmt.Sprintf("the latest point, %s, has no disk %s to take the unchanged blocks from", parent.Name(), ds.Name), nil
	case base.Checkpoint == "":
		return nil, fmt.Sprintf("the latest point, %s, recorded no checkpoint for disk %s, so the bitmap may miss changes since it", parent.Name(), base.Name), nil
	case base.Checkpoint != ds.Bitmap:
		return nil, fmt.Sprintf("the latest point, %s, recorded checkpoint %s for disk %s, not %s", parent.Name(), base.Checkpoint, base.Name, ds.Bitmap), nil
	case base.Size != size:
		return nil, fmt.Sprintf("the disk's size went from %d bytes in %s to %d", base.Size, parent.Name(), size), nil
	case int64(base.BlockSize) != bs:
		return nil, fmt.Sprintf("%s has blocks of %d bytes, the vault %d", parent.Name(), base.BlockSize, bs), nil
	}
	nblocks := (size + bs - 1) / bs
	var dirty [][2]int64
	last := int64(-1) // end of the last range
	err := ds.Dirty(ctx, func(start, end int64) error {
		if start < last || end <= start || end > size {
			return fmt.Errorf("bitmap %s: the source reported a bad dirty range [%d, %d)", ds.Bitmap, start, end)
		}
		last = end
		dirty = addRun(dirty, start/bs, (end-1)/bs)
		return nil
	})
	if err != nil {
		return nil, "", fmt.Errorf("bitmap %s: %w", ds.Bitmap, err)
	}
	// Map pages of base that cannot be read give no hashes: their blocks
	// are read from the source. The others must agree with the source.
	cur := newMapCursor(v, base)
	var read [][2]int64
	di, si := 0, 0 // cursors into dirty and sc.runs
	for pg := range base.Pages {
		first := int64(pg) * PageEntries
		lastB := min(first+PageEntries, nblocks) - 1
		if err := ctx.Err(); err != nil {
			return nil, "", err
		}
		if base.Pages[pg].IsZero() {
			continue
		}
		if _, err := cur.hash(first); err != nil {
			read = addRun(read, first, lastB)
			continue
		}
		for b := first; b <= lastB; b++ {
			h, _ := cur.hash(b) // the page is in the cursor
			if h.IsZero() || inRuns(dirty, &di, b) || inRuns(sc.runs, &si, b) {
				continue
			}
			return nil, fmt.Sprintf("it does not match the source: the block at offset %d held data in %s, reads as zeros now, and the bitmap says it did not change",
				b*bs, parent.Name()), nil
		}
	}
	return &readPlan{read: unionRuns(dirty, read), base: base}, "", nil
}

// addRun appends the block run [first, last] to ascending runs, merging
// it with the last run when they touch or overlap.
func addRun(runs [][2]int64, first, last int64) [][2]int64 {
	if n := len(runs); n > 0 && first <= runs[n-1][1]+1 {
		runs[n-1][1] = max(runs[n-1][1], last)
		return runs
	}
	return append(runs, [2]int64{first, last})
}

// inRuns reports whether block b lies in runs; *i is a cursor that calls
// with ascending b move forward.
func inRuns(runs [][2]int64, i *int, b int64) bool {
	for *i < len(runs) && runs[*i][1] < b {
		*i++
	}
	return *i < len(runs) && runs[*i][0] <= b
}

// unionRuns merges two ascending run lists.
func unionRuns(a, b [][2]int64) [][2]int64 {
	var out [][2]int64
	for len(a) > 0 || len(b) > 0 {
		var r [2]int64
		if len(b) == 0 || (len(a) > 0 && a[0][0] <= b[0][0]) {
			r, a = a[0], a[1:]
		} else {
			r, b = b[0], b[1:]
		}
		out = addRun(out, r[0], r[1])
	}
	return out
}

// runsBytes counts the bytes of a disk of size in the blocks that lie in
// both a and b.
func runsBytes(a, b [][2]int64, bs, size int64) int64 {
	var n int64
	for len(a) > 0 && len(b) > 0 {
		first, last := max(a[0][0], b[0][0]), min(a[0][1], b[0][1])
		if first <= last {
			n += min((last+1)*bs, size) - first*bs
		}
		if a[0][1] < b[0][1] {
			a = a[1:]
		} else {
			b = b[1:]
		}
	}
	return n
}

// baseBlock returns the hash block b takes from the plan's base disk, and
// whether it may: a block to read, or one whose base page cannot be read
// or whose stored copy is missing or damaged, must be read from the
// source. The hash is noted in the backup's gc session (pw.has) before
// it is taken.
func (p *readPlan) baseBlock(cur *mapCursor, i *int, pw *writeSession, b int64) (index.Hash, bool, error) {
	if inRuns(p.read, i, b) {
		return index.Hash{}, false, nil
	}
	h, err := cur.hash(b)
	if err != nil {
		return index.Hash{}, false, nil
	}
	if h.IsZero() {
		return h, true, nil
	}
	ok, err := pw.has(h)
	return h, ok, err
}

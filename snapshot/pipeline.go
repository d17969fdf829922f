package snapshot

import (
	"context"
	"fmt"
	"runtime"
	"sync"

	"github.com/cairn-backup/cairn/index"
)

// walk is one run of the block pipeline, the only place that walks a
// point's blocks in order with their fetching spread over the cores:
// whole-disk streams (Blocks, StoredBlocks), Restore, and a DiskReader
// read that spans several blocks all run through it.
//
// One goroutine walks the block map over [start, end) in order; workers
// run fetch on each block (read, check, decompress, or whatever the
// caller does in parallel); emit takes the blocks in order on the
// caller's goroutine. A fixed set of slots, each with its own buffer,
// bounds what is in flight (walkSlots). The first error in disk order,
// fetch's, emit's, the block map's or the context's, stops the walk;
// every goroutine has ended when run returns.
type walk struct {
	v *Vault
	p *Point
	d *Disk
	// start and end bound the bytes of the disk walked; a block is
	// handed out clipped to them.
	start, end int64
	// holes hands out holes too (blocks whose hash is zero), instead of
	// skipping them (and whole map pages of them) unseen.
	holes bool
	// damaged hands out the rest of a map page that cannot be read as
	// one block with damage set, instead of stopping the walk.
	damaged bool
	// workers run fetch; GOMAXPROCS when 0, never more than the blocks.
	workers int
	// fetch runs on a worker for each block handed out, holes included
	// (h zero), but not for a damaged map page.
	fetch func(b *walkBlock) error
	// emit runs on the caller's goroutine for each block, in order;
	// nil when the caller wants fetch's side effects only.
	emit func(b *walkBlock) error
}

// walkBlock is one block on its way through the pipeline. Its slot, and
// so buf, is reused once emit has returned.
type walkBlock struct {
	i      int64      // block index
	off, n int64      // the bytes of the disk it stands for, clipped to the walk
	within int64      // off's position inside the block
	h      index.Hash // zero for a hole
	// damage is why the bytes could not be read when they are handed
	// out anyway (walk.damaged, or a fetch that set it).
	damage error

	codec string // what fetch found, for emit
	data  []byte
	buf   []byte // the slot's buffer, kept from block to block

	err  error
	done chan struct{}
}

// walkBudget bounds the bytes of blocks in flight: the slots of a walk
// are about this many bytes of blocks, at least two per worker and at
// most five per worker and one.
const walkBudget = 32 << 20

// walkSlots is the number of blocks one walk keeps in flight.
func walkSlots(workers int, bs int64) int {
	return max(2*workers, min(5*workers+1, int(walkBudget/max(bs, 1))))
}

// fail names the point, disk and offset of an error.
func (w *walk) fail(off int64, err error) error {
	return fmt.Errorf("%s disk %s at offset %d: %w", w.p.Name(), w.d.Name, off, err)
}

// run walks the blocks; see walk.
func (w *walk) run(ctx context.Context) error {
	bs := int64(w.d.BlockSize)
	end := min(w.end, w.d.Size)
	if w.start >= end {
		return ctx.Err()
	}
	first, last := w.start/bs, (end-1)/bs
	workers := w.workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	workers = int(min(int64(workers), last-first+1))
	slots := int(min(int64(walkSlots(workers, bs)), last-first+1))

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	order := make(chan *walkBlock, slots)
	work := make(chan *walkBlock, slots)
	free := make(chan *walkBlock, slots)
	for range slots {
		free <- &walkBlock{done: make(chan struct{}, 1)}
	}
	var mapErr error
	go func() {
		defer close(order)
		defer close(work)
		c := newMapCursor(w.v, w.d)
		for i := first; i <= last; i++ {
			pg := int(i / PageEntries)
			pageEnd := int64(pg+1) * PageEntries // the first block of the next page
			if w.d.Pages[pg].IsZero() && !w.holes {
				i = pageEnd - 1
				continue
			}
			h, err := c.hash(i)
			if err != nil && !w.damaged {
				mapErr = w.fail(max(i*bs, w.start), err)
				return
			}
			if err == nil && h.IsZero() && !w.holes {
				continue
			}
			var b *walkBlock
			select {
			case b = <-free:
			case <-ctx.Done():
				return
			}
			b.i, b.h, b.damage, b.codec, b.data, b.err = i, h, nil, "", nil, nil
			b.off = max(i*bs, w.start)
			b.within = b.off - i*bs
			b.n = min((i+1)*bs, end) - b.off
			if err != nil {
				// The rest of the page is unknown: one damaged block.
				b.damage = w.fail(b.off, err)
				b.n = min(pageEnd*bs, end) - b.off
				i = pageEnd - 1
			}
			order <- b
			work <- b
		}
	}()

	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range work {
				switch {
				case ctx.Err() != nil:
					b.err = ctx.Err()
				case b.damage == nil:
					b.err = w.fetch(b)
				}
				b.done <- struct{}{}
			}
		}()
	}
	defer wg.Wait()

	var err error
	for b := range order {
		<-b.done
		if err == nil {
			err = b.err
			if err == nil && w.emit != nil {
				err = w.emit(b)
			}
			if err == nil {
				err = ctx.Err()
			}
			if err != nil {
				cancel()
			}
		}
		free <- b
	}
	if err == nil {
		err = mapErr
	}
	if err == nil {
		err = ctx.Err() // cancelled before any block was queued
	}
	return err
}

// load reads block b whole into its slot's buffer, bypassing the block
// cache: for walks that see each block once.
func (w *walk) load(b *walkBlock) error {
	data, err := w.v.store.Load(b.h, b.buf)
	if err != nil {
		w.v.noteReadDamage(w.p, w.d, b.i, b.h, err)
		return w.fail(b.off, err)
	}
	b.buf = data
	if want := min(int64(w.d.BlockSize), w.d.Size-b.i*int64(w.d.BlockSize)); int64(len(data)) != want {
		return w.fail(b.off, fmt.Errorf("block %s is %d bytes, want %d", b.h, len(data), want))
	}
	b.data = data[b.within : b.within+b.n]
	return nil
}

// readCached copies block b's bytes into dst (len b.n) through the block
// cache, for reads that may come back to the same block; a hole reads as
// zeros.
func (w *walk) readCached(b *walkBlock, dst []byte) error {
	if b.h.IsZero() {
		clear(dst)
		return nil
	}
	got, err := w.v.store.ReadAt(b.h, dst, int(b.within))
	if err != nil {
		w.v.noteReadDamage(w.p, w.d, b.i, b.h, err)
		return w.fail(b.off, err)
	}
	if int64(got) < b.n {
		return w.fail(b.off, fmt.Errorf("block %s is %d bytes, too short", b.h, b.within+int64(got)))
	}
	return nil
}

package snapshot

import (
	"context"
	"fmt"
	"runtime"
	"sync"

	"github.com/cairn-backup/cairn/index"
)

// Blocks calls fn with every stored block of disk name of point p, in
// order of offset; holes are skipped. Workers (GOMAXPROCS) read, verify
// and decompress ahead through a bounded window, bypassing the block
// cache, so a whole-disk stream neither evicts the mount's working set
// nor holds more than a few blocks per worker in memory. data is valid
// only during the call to fn; fn runs on the caller's goroutine. The
// first error (fn's, or a damaged block named by point, disk and offset)
// stops the walk and is returned.
func (v *Vault) Blocks(ctx context.Context, p *Point, name string, fn func(off int64, data []byte) error) error {
	load := func(h index.Hash, buf []byte, want int64) (string, []byte, error) {
		data, err := v.store.Load(h, buf)
		if err == nil && int64(len(data)) != want {
			err = fmt.Errorf("block %s is %d bytes, want %d", h, len(data), want)
		}
		return "", data, err
	}
	return v.walkBlocks(ctx, p, name, load, func(off int64, _ string, data []byte) error { return fn(off, data) })
}

// StoredBlocks is Blocks with each block as the vault stores it: fn gets
// the codec ("none" for a block kept as it is, or the vault's
// compression) and the stored payload, which holds the block's bytes from
// off to the next block or the disk's end. Every block is verified
// (decompressed and hashed) before fn sees it, as Blocks does; for
// export, which copies compressed blocks instead of compressing again.
func (v *Vault) StoredBlocks(ctx context.Context, p *Point, name string, fn func(off int64, codec string, payload []byte) error) error {
	load := func(h index.Hash, buf []byte, want int64) (string, []byte, error) {
		_, raw, err := v.store.StoredLen(h)
		if err == nil && int64(raw) != want {
			err = fmt.Errorf("block %s is %d bytes, want %d", h, raw, want)
		}
		if err != nil {
			return "", nil, err
		}
		c, out, err := v.store.AppendStored(h, buf[:0])
		return c.String(), out, err
	}
	return v.walkBlocks(ctx, p, name, load, fn)
}

// walkBlocks runs Blocks and StoredBlocks: load reads block h, of want
// bytes, into buf (or a new buffer) in a worker; fn takes the results in
// order.
func (v *Vault) walkBlocks(ctx context.Context, p *Point, name string,
	load func(h index.Hash, buf []byte, want int64) (codec string, data []byte, err error),
	fn func(off int64, codec string, data []byte) error) error {
	d, err := pickDisk(p, name)
	if err != nil {
		return err
	}
	workers := runtime.GOMAXPROCS(0)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	type job struct {
		off   int64
		h     index.Hash
		buf   []byte
		codec string
		data  []byte
		err   error
		done  chan struct{}
	}
	window := 4 * workers
	order := make(chan *job, window)
	work := make(chan *job, window)
	free := make(chan *job, window+workers+1)
	for range cap(free) {
		free <- &job{done: make(chan struct{}, 1)}
	}
	bs := int64(d.BlockSize)
	var mapErr error
	go func() {
		defer close(order)
		defer close(work)
		c := newMapCursor(v, d)
		nb := d.Blocks()
		for i := int64(0); i < nb; i++ {
			if pg := int(i / PageEntries); d.Pages[pg].IsZero() {
				i = int64(pg+1)*PageEntries - 1 // a page of holes
				continue
			}
			h, err := c.hash(i)
			if err != nil {
				mapErr = fmt.Errorf("%s disk %s at offset %d: %w", p.Name(), d.Name, i*bs, err)
				return
			}
			if h.IsZero() {
				continue
			}
			var j *job
			select {
			case j = <-free:
			case <-ctx.Done():
				return
			}
			j.off, j.h, j.data, j.err = i*bs, h, nil, nil
			order <- j
			work <- j
		}
	}()

	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range work {
				if ctx.Err() == nil {
					j.codec, j.data, j.err = load(j.h, j.buf, min(bs, d.Size-j.off))
					if j.err == nil {
						j.buf = j.data
					}
					if j.err != nil {
						j.err = fmt.Errorf("%s disk %s at offset %d: %w", p.Name(), d.Name, j.off, j.err)
					}
				} else {
					j.err = ctx.Err()
				}
				j.done <- struct{}{}
			}
		}()
	}
	defer wg.Wait()

	for j := range order {
		<-j.done
		if err == nil {
			err = j.err
			if err == nil {
				err = fn(j.off, j.codec, j.data)
			}
			if err == nil {
				err = ctx.Err()
			}
			if err != nil {
				cancel()
			}
		}
		free <- j
	}
	if err == nil {
		err = mapErr
	}
	if err == nil {
		err = ctx.Err() // cancelled before any block was queued
	}
	return err
}

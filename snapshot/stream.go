package snapshot

import (
	"context"
	"fmt"
)

// Blocks calls fn with every stored block of disk name of point p, in
// order of offset; holes are skipped. The block pipeline (walk) reads,
// verifies and decompresses ahead on GOMAXPROCS workers, bypassing the
// block cache, so a whole-disk stream neither evicts the mount's working
// set nor holds more than walkBudget bytes of blocks in memory. data is
// valid only during the call to fn; fn runs on the caller's goroutine.
// The first error (fn's, or a damaged block named by point, disk and
// offset) stops the walk and is returned.
func (v *Vault) Blocks(ctx context.Context, p *Point, name string, fn func(off int64, data []byte) error) error {
	d, err := pickDisk(p, name)
	if err != nil {
		return err
	}
	w := walk{v: v, p: p, d: d, start: 0, end: d.Size}
	w.fetch = w.load
	w.emit = func(b *walkBlock) error { return fn(b.off, b.data) }
	return w.run(ctx)
}

// StoredBlocks is Blocks with each block as the vault stores it: fn gets
// the codec ("none" for a block kept as it is, or the vault's
// compression) and the stored payload, which holds the block's bytes from
// off to the next block or the disk's end. Every block is verified
// (decompressed and hashed) before fn sees it, as Blocks does; for
// export, which copies compressed blocks instead of compressing again.
func (v *Vault) StoredBlocks(ctx context.Context, p *Point, name string, fn func(off int64, codec string, payload []byte) error) error {
	d, err := pickDisk(p, name)
	if err != nil {
		return err
	}
	w := walk{v: v, p: p, d: d, start: 0, end: d.Size}
	w.fetch = func(b *walkBlock) error {
		_, raw, err := v.store.StoredLen(b.h)
		if err == nil && int64(raw) != b.n {
			err = fmt.Errorf("block %s is %d bytes, want %d", b.h, raw, b.n)
		}
		if err != nil {
			return w.fail(b.off, err)
		}
		c, out, err := v.store.AppendStored(b.h, b.buf[:0])
		if err != nil {
			v.noteReadDamage(p, d, b.i, b.h, err)
			return w.fail(b.off, err)
		}
		b.codec, b.data, b.buf = c.String(), out, out
		return nil
	}
	w.emit = func(b *walkBlock) error { return fn(b.off, b.codec, b.data) }
	return w.run(ctx)
}

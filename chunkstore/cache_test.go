package chunkstore

import (
	"bytes"
	"fmt"
	"math/rand"
	"sync"
	"sync/atomic"
	"testing"
)

// cacheBlock is the content the test fill gives block i.
func cacheBlock(i byte, buf []byte) []byte {
	if cap(buf) < 4096 {
		buf = make([]byte, 4096)
	}
	buf = buf[:4096]
	for j := range buf {
		buf[j] = i + byte(j)
	}
	return buf
}

// Readers copying out of a cache far smaller than the blocks they ask for
// always get their block's bytes, though evicted buffers are reused for
// other blocks all the time; blocks handed out whole are never reused.
func TestCacheRecyclesOnlyUnusedBuffers(t *testing.T) {
	c := newBlockCache(3 * 4096)
	var fresh, reused atomic.Int64
	fill := func(i byte) fillFunc {
		return func(buf []byte) ([]byte, error) {
			if buf == nil {
				fresh.Add(1)
			} else {
				reused.Add(1)
			}
			return cacheBlock(i, buf), nil
		}
	}
	hash := func(i byte) Hash { return Hash{i} }

	pinned, err := c.get(hash(200), fill(200))
	if err != nil {
		t.Fatal(err)
	}
	want := bytes.Clone(pinned)

	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewSource(int64(w)))
			p := make([]byte, 512)
			for range 2000 {
				i := byte(r.Intn(16))
				off := r.Intn(4096 - len(p))
				n, err := c.readAt(hash(i), p, off, fill(i))
				if err != nil || n != len(p) || !bytes.Equal(p, cacheBlock(i, nil)[off:off+len(p)]) {
					errs <- fmt.Errorf("block %d at %d: n %d err %v, wrong bytes", i, off, n, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if !bytes.Equal(pinned, want) {
		t.Error("a block handed out by get was overwritten")
	}
	if reused.Load() == 0 {
		t.Errorf("no buffer was recycled (%d fresh loads)", fresh.Load())
	}
	if fresh.Load() > 3+maxFree+8 {
		t.Errorf("%d loads took fresh memory, %d recycled: more than the cache and free list hold", fresh.Load(), reused.Load())
	}
	if n, _ := c.readAt(hash(1), make([]byte, 10), 4090, fill(1)); n != 6 {
		t.Errorf("read past the block's end copied %d bytes, want 6", n)
	}
}

// A block copied whole leaves the cache and lends its buffer to the next
// load, and read-ahead does not load it again; a partial read keeps it.
func TestCacheDropsBlocksReadWhole(t *testing.T) {
	c := newBlockCache(1 << 20)
	loads := 0
	var lent []byte
	fill := func(i byte) fillFunc {
		return func(buf []byte) ([]byte, error) {
			loads++
			lent = buf
			return cacheBlock(i, buf), nil
		}
	}
	p := make([]byte, 4096)
	if _, err := c.readAt(Hash{1}, p[:100], 0, fill(1)); err != nil || !c.contains(Hash{1}) {
		t.Fatalf("partial read: %v, cached %v", err, c.contains(Hash{1}))
	}
	n, err := c.readAt(Hash{1}, p, 0, fill(1))
	if err != nil || n != 4096 || !bytes.Equal(p, cacheBlock(1, nil)) || loads != 1 {
		t.Fatalf("whole read: %d bytes, %v, %d loads", n, err, loads)
	}
	if c.contains(Hash{1}) || c.cur != 0 {
		t.Fatalf("block read whole still cached (%d bytes held)", c.cur)
	}
	first := &c.free[0][0]
	if _, err := c.readAt(Hash{2}, p[:10], 0, fill(2)); err != nil || lent == nil || &lent[0] != first {
		t.Fatalf("the next load got a fresh buffer, not the consumed block's: %v", err)
	}
	c.warm(Hash{1}, fill(1))
	if loads != 2 {
		t.Errorf("read-ahead loaded a block just read whole: %d loads", loads)
	}
	c.warm(Hash{3}, fill(3))
	if loads != 3 || !c.contains(Hash{3}) {
		t.Errorf("read-ahead of a new block: %d loads, cached %v", loads, c.contains(Hash{3}))
	}
	// Read in pieces (on 64-byte boundaries, as the kernel's are on
	// pages), out of order, one read twice.
	if _, err := c.readAt(Hash{4}, p[:3008], 1024, fill(4)); err != nil || !c.contains(Hash{4}) {
		t.Fatalf("first piece: %v", err)
	}
	c.readAt(Hash{4}, p[:1024], 0, fill(4))
	if !c.contains(Hash{4}) {
		t.Fatal("block dropped before its last bytes were read")
	}
	c.readAt(Hash{4}, p[:128], 0, fill(4))
	if c.readAt(Hash{4}, p[:64], 4032, fill(4)); c.contains(Hash{4}) || loads != 4 {
		t.Fatalf("block read in pieces: cached %v after its last piece, %d loads", c.contains(Hash{4}), loads)
	}
	// Rereading one range never completes a block.
	for range 100 {
		c.readAt(Hash{5}, p[:512], 512, fill(5))
	}
	if !c.contains(Hash{5}) {
		t.Fatal("a block whose first bytes were never read was dropped")
	}
	// Only the latest maxConsumed blocks read whole are remembered.
	n = maxConsumed + 10
	for i := range n {
		c.readAt(Hash{9, byte(i), byte(i >> 8)}, p, 0, fill(9))
	}
	if len(c.consumed) != maxConsumed || c.consumed[Hash{1}] || !c.consumed[Hash{9, byte(n - 1), byte((n - 1) >> 8)}] {
		t.Errorf("%d blocks remembered; the first still %v", len(c.consumed), c.consumed[Hash{1}])
	}
}

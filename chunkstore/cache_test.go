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

package fs

import (
	"sync"

	"github.com/cairn-backup/cairn/snapshot"
)

// readAhead loads the blocks after a sequential reader's position into
// the block cache on a bounded pool of goroutines, so decompression of
// upcoming blocks runs on every core while the kernel consumes the
// current one.
type readAhead struct {
	blocks  int // how many blocks ahead to load
	sem     chan struct{}
	mu      sync.Mutex
	pending map[pendingKey]bool
}

type pendingKey struct {
	r   *snapshot.DiskReader
	off int64
}

func newReadAhead(workers, blocks int) *readAhead {
	return &readAhead{blocks: blocks, sem: make(chan struct{}, workers), pending: map[pendingKey]bool{}}
}

// after starts loading the blocks that follow offset off of r. It never
// blocks: when every worker is busy, the rest is skipped.
func (ra *readAhead) after(r *snapshot.DiskReader, off int64) {
	if ra == nil || ra.blocks == 0 {
		return
	}
	bs := r.BlockSize()
	first := off / bs * bs
	for i := 0; i < ra.blocks; i++ {
		b := first + int64(i)*bs
		if b >= r.Size() {
			return
		}
		k := pendingKey{r, b}
		ra.mu.Lock()
		busy := ra.pending[k]
		ra.mu.Unlock()
		if busy {
			continue
		}
		select {
		case ra.sem <- struct{}{}:
		default:
			return
		}
		ra.mu.Lock()
		ra.pending[k] = true
		ra.mu.Unlock()
		go func() {
			r.Prefetch(b)
			ra.mu.Lock()
			delete(ra.pending, k)
			ra.mu.Unlock()
			<-ra.sem
		}()
	}
}

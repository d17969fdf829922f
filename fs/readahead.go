package fs

import (
	"sync"

	"github.com/cairn-backup/cairn/snapshot"
)

// readAhead loads the blocks after a sequential reader's position into
// the block cache on a fixed pool of workers, so decompression of
// upcoming blocks runs on every core while the kernel consumes the
// current one. It never blocks a read: when its queue is full, the rest
// of the window waits for the next read to ask again.
type readAhead struct {
	window  int64 // bytes to keep loaded ahead of a reader
	jobs    chan pendingKey
	mu      sync.Mutex
	pending map[pendingKey]bool
}

type pendingKey struct {
	r   *snapshot.DiskReader
	off int64
}

func newReadAhead(workers int, window int64) *readAhead {
	ra := &readAhead{window: window, jobs: make(chan pendingKey, 256), pending: map[pendingKey]bool{}}
	for i := 0; i < workers; i++ {
		go ra.work()
	}
	return ra
}

func (ra *readAhead) work() {
	for k := range ra.jobs {
		k.r.Prefetch(k.off)
		ra.mu.Lock()
		delete(ra.pending, k)
		ra.mu.Unlock()
	}
}

// after queues the blocks of r in [off, off+window) that are neither
// cached nor already queued.
func (ra *readAhead) after(r *snapshot.DiskReader, off int64) {
	if ra == nil || ra.window <= 0 {
		return
	}
	ra.span(r, off, ra.window)
}

// span queues the blocks of r in [off, off+n) that are neither cached
// nor already queued; it reports false when the queue is full.
func (ra *readAhead) span(r *snapshot.DiskReader, off, n int64) bool {
	bs := r.BlockSize()
	end := min(off+n, r.Size())
	for b := max(off, 0) / bs * bs; b < end; b += bs {
		k := pendingKey{r, b}
		ra.mu.Lock()
		busy := ra.pending[k]
		ra.mu.Unlock()
		if busy || r.Cached(b) {
			continue
		}
		ra.mu.Lock()
		ra.pending[k] = true
		ra.mu.Unlock()
		select {
		case ra.jobs <- k:
		default:
			ra.mu.Lock()
			delete(ra.pending, k)
			ra.mu.Unlock()
			return false
		}
	}
	return true
}

// stop ends the workers once the mount is gone.
func (ra *readAhead) stop() { close(ra.jobs) }

package snapshot

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// The read-ahead of every reader of a vault's points: the mount (disk
// files, partitions, logical volumes, guest files), the exports and the
// NBD server. It has two parts:
//
//   - ReadAhead, one per file, finds the sequential streams among the
//     file's reads and says, read by read, which bytes to load next;
//   - the vault's loaders, a few goroutines shared by every reader of
//     the vault, load the blocks under those bytes into the block cache
//     (DiskReader.LoadAhead), so their decompression runs on the other
//     cores while the reader works on the current block.
//
// A random reader never starts a stream (it would need three reads in a
// row, each near the last one's end), so it costs one short lock per
// read and loads nothing it did not ask for. Memory is bounded whatever
// the disk size: a ReadAhead is a few streams; the loaders queue at most
// maxLoadQueue blocks, run at most GOMAXPROCS at once and load into the
// block cache, which is bounded by bytes.

// DefaultReadAhead is the most a stream keeps loading ahead of its
// reader. It is reached by doubling from twice the read size, one
// sequential read at a time.
const DefaultReadAhead = 8 << 20

// seqSlack is the most a read may start away from a stream's end and
// still continue it: the kernel and NBD clients send a sequential
// reader's requests several at a time and not always in order. Within
// that, a read continues a stream when it starts within 16 reads of its
// size or the stream's window of the end, so that small random reads
// rarely land near each other even on a small disk.
const seqSlack = 4 << 20

// slack is how far from s's end a read of n bytes may start and still
// continue it.
func (s *stream) slack(n int64) int64 { return min(seqSlack, max(16*n, s.window)) }

// maxStreams is how many streams one ReadAhead follows at once: a few
// readers of one file (two copies of a disk, guest files of several
// partitions read through the disk's reader, a striped volume's stripes).
// A read that continues none replaces the least recently read.
const maxStreams = 4

// ReadAhead finds the sequential streams among the reads of one file and
// says what to load ahead of each. The zero value uses DefaultReadAhead.
// It is safe for concurrent use.
//
// A stream starts with a read that continues no other; read-ahead starts
// with its second read in a row that begins near the stream's end (so a
// random reader that once lands near its last read loads nothing), or
// its first when the stream began at offset 0, with a window of twice
// the read's size that doubles with every further read up to the
// maximum. Each byte is asked for once per stream.
type ReadAhead struct {
	limit atomic.Int64 // 0: DefaultReadAhead; negative: off

	mu      sync.Mutex
	streams [maxStreams]stream
	tick    uint64
}

type stream struct {
	next   int64  // the end of the stream's furthest read
	queued int64  // loading was asked for up to here
	hits   int    // reads in a row that continued the stream
	window int64  // bytes kept loading ahead of next
	used   uint64 // tick of the last read; 0 for a free slot
}

// SetMax sets the most bytes a stream keeps loading ahead: 0 for
// DefaultReadAhead, negative to turn read-ahead off.
func (a *ReadAhead) SetMax(n int64) { a.limit.Store(n) }

// Max is the most bytes a stream keeps loading ahead; 0 when off.
func (a *ReadAhead) Max() int64 {
	switch n := a.limit.Load(); {
	case n == 0:
		return DefaultReadAhead
	case n < 0:
		return 0
	default:
		return n
	}
}

// Note records a read of n bytes at off. When the read continues a
// sequential stream it calls load with the range [start, end) to load
// ahead now, outside the lock; load returns how far it got (end, or less
// when the loaders are full: the rest is asked for again by a later
// read).
func (a *ReadAhead) Note(off, n int64, load func(start, end int64) (reached int64)) {
	limit := a.Max()
	if limit <= 0 || n <= 0 || off < 0 {
		return
	}
	end := off + n
	a.mu.Lock()
	a.tick++
	s := a.find(off, n)
	if s == nil {
		s = a.oldest()
		*s = stream{next: end, queued: end, used: a.tick}
		if off == 0 {
			// A reader that starts at the start is taken to go on, as
			// cp and dd do: its next read in a row starts read-ahead.
			s.hits = 1
		}
		a.mu.Unlock()
		return
	}
	s.used = a.tick
	s.hits++
	s.next = max(s.next, end)
	if s.hits < 2 {
		a.mu.Unlock()
		return
	}
	s.window = min(max(2*s.window, 2*n), limit)
	from, to := max(s.queued, s.next), s.next+s.window
	if from >= to {
		a.mu.Unlock()
		return
	}
	s.queued = to
	tick := s.used
	a.mu.Unlock()

	if got := load(from, to); got < to {
		a.mu.Lock()
		if s.used == tick && s.queued == to { // nobody moved the stream meanwhile
			s.queued = max(got, from)
		}
		a.mu.Unlock()
	}
}

// find returns the stream that a read of n bytes at off continues, or
// nil; a.mu is held.
func (a *ReadAhead) find(off, n int64) *stream {
	for i := range a.streams {
		s := &a.streams[i]
		if d := s.slack(n); s.used != 0 && off >= s.next-d && off <= s.next+d {
			return s
		}
	}
	return nil
}

// oldest returns a free slot or the least recently read stream; a.mu is
// held.
func (a *ReadAhead) oldest() *stream {
	o := &a.streams[0]
	for i := range a.streams {
		if s := &a.streams[i]; s.used < o.used {
			o = s
		}
	}
	return o
}

// maxLoadQueue bounds the blocks waiting for a loader, over every
// reader of a vault: far more than the windows of a few streams hold.
const maxLoadQueue = 256

// loaders load blocks that readers will want into the block cache. They
// are started when there is work and end when there is none, so an idle
// vault runs no goroutine of theirs and nothing needs stopping.
type loaders struct {
	max     int // loaders at most
	mu      sync.Mutex
	queue   []loadTask
	pending map[loadTask]bool // queued or loading
	running int
	added   int64 // blocks ever queued
}

type loadTask struct {
	r   *DiskReader
	off int64 // the block's offset
}

func newLoaders(n int) *loaders {
	return &loaders{max: max(n, 1), pending: map[loadTask]bool{}}
}

// loaders returns the vault's loaders.
func (v *Vault) loaders() *loaders {
	v.loadOnce.Do(func() { v.load = newLoaders(runtime.GOMAXPROCS(0)) })
	return v.load
}

// add queues the block at off of r unless it is queued or loading
// already; false when the queue is full.
func (l *loaders) add(r *DiskReader, off int64) bool {
	t := loadTask{r, off}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.pending[t] {
		return true
	}
	if len(l.queue) >= maxLoadQueue {
		return false
	}
	l.pending[t] = true
	l.queue = append(l.queue, t)
	l.added++
	if l.running < l.max {
		l.running++
		go l.work()
	}
	return true
}

func (l *loaders) work() {
	l.mu.Lock()
	for len(l.queue) > 0 {
		t := l.queue[0]
		l.queue = l.queue[1:]
		l.mu.Unlock()
		t.r.Prefetch(t.off)
		l.mu.Lock()
		delete(l.pending, t)
	}
	l.running--
	l.mu.Unlock()
}

// drop takes r's blocks off the queue; those loading finish.
func (l *loaders) drop(r *DiskReader) {
	l.mu.Lock()
	defer l.mu.Unlock()
	kept := l.queue[:0]
	for _, t := range l.queue {
		if t.r == r {
			delete(l.pending, t)
		} else {
			kept = append(kept, t)
		}
	}
	clear(l.queue[len(kept):])
	l.queue = kept
}

// idle reports whether no loader runs and none is queued, for tests.
func (l *loaders) idle() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.running == 0 && len(l.queue) == 0
}

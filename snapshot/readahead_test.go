package snapshot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/chunkstore"
)

// loadLog records what a ReadAhead asks to load.
type loadLog struct {
	mu     sync.Mutex
	ranges [][2]int64
	short  int64 // when > 0, every load stops short at this offset once
}

func (l *loadLog) load(start, end int64) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.short > start && l.short < end {
		end, l.short = l.short, 0
	}
	l.ranges = append(l.ranges, [2]int64{start, end})
	return end
}

func (l *loadLog) bytes() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := int64(0)
	for _, r := range l.ranges {
		n += r[1] - r[0]
	}
	return n
}

// A sequential reader gets read-ahead from its third read on (the
// second in a row that continues its stream), or its second when it
// started at offset 0, with a window that starts at twice the read size
// and doubles up to the maximum; every byte ahead is asked for once, in
// order, and never more than the maximum past the furthest read.
func TestReadAheadSequentialWindowGrows(t *testing.T) {
	for _, base := range []int64{0, 5 << 20} {
		testWindowGrows(t, base)
	}
}

func testWindowGrows(t *testing.T, base int64) {
	var a ReadAhead
	a.SetMax(1 << 20)
	var l loadLog
	const n = 16 << 10
	first := int64(2) // the first read that gets read-ahead
	if base == 0 {
		first = 1
	}
	var windows []int64
	for i := int64(0); i < 64; i++ {
		before := len(l.ranges)
		a.Note(base+i*n, n, l.load)
		end := base + (i+1)*n
		switch {
		case i < first && len(l.ranges) != before:
			t.Fatalf("base %d, read %d: read-ahead %v before the stream was sure", base, i, l.ranges[before:])
		case i >= first && len(l.ranges) != before+1:
			t.Fatalf("base %d, read %d: %d loads, want 1", base, i, len(l.ranges)-before)
		case i >= first:
			r := l.ranges[before]
			if before > 0 && r[0] != l.ranges[before-1][1] {
				t.Fatalf("read %d: load %v does not follow %v", i, r, l.ranges[before-1])
			}
			if before == 0 && r[0] != end {
				t.Fatalf("first load %v does not start at the read's end %d", r, end)
			}
			if r[1]-end > 1<<20 {
				t.Fatalf("read %d: loads up to %d, %d past the read's end", i, r[1], r[1]-end)
			}
			windows = append(windows, r[1]-end)
		}
	}
	want := []int64{2 * n, 4 * n, 8 * n, 16 * n, 32 * n, 1 << 20, 1 << 20}
	for i, w := range want {
		if windows[i] != w {
			t.Fatalf("windows %v, want %v first", windows[:len(want)], want)
		}
	}
}

// A random reader loads nothing ahead, not even when one read lands near
// the one before.
func TestReadAheadRandomReaderLoadsNothing(t *testing.T) {
	var a ReadAhead
	var l loadLog
	rng := rand.New(rand.NewSource(1))
	const size = 64 << 30
	for range 20000 {
		a.Note(rng.Int63n(size/4096)*4096, 4096, l.load)
	}
	if n := l.bytes(); n != 0 {
		t.Fatalf("random 4 KiB reads asked for %d bytes ahead: %v", n, l.ranges)
	}
	a.Note(12<<20, 4096, l.load)
	a.Note(13<<20, 4096, l.load)        // 1 MiB away: not near for 4 KiB reads
	a.Note(13<<20+40<<10, 4096, l.load) // near the last: one in a row
	if len(l.ranges) != 0 {
		t.Fatalf("one near read loaded %v", l.ranges)
	}
	a.Note(13<<20+44<<10, 4096, l.load) // two in a row: a stream
	if len(l.ranges) != 1 {
		t.Fatalf("two sequential reads: loads %v", l.ranges)
	}
}

// Two readers of one file, interleaved, each get their own stream; a
// read-ahead turned off loads nothing.
func TestReadAheadStreamsAndOff(t *testing.T) {
	var a ReadAhead
	var l loadLog
	const n = 64 << 10
	for i := int64(0); i < 8; i++ {
		a.Note(i*n, n, l.load)
		a.Note(1<<30+i*n, n, l.load)
	}
	var low, high int
	for _, r := range l.ranges {
		if r[0] < 1<<30 {
			low++
		} else {
			high++
		}
	}
	if low != 7 || high != 6 { // the one from offset 0 starts a read sooner
		t.Fatalf("interleaved readers: %d and %d loads, want 7 and 6: %v", low, high, l.ranges)
	}

	var off ReadAhead
	off.SetMax(-1)
	var l2 loadLog
	for i := int64(0); i < 8; i++ {
		off.Note(i*n, n, l2.load)
	}
	if off.Max() != 0 || len(l2.ranges) != 0 {
		t.Fatalf("read-ahead off: max %d, loads %v", off.Max(), l2.ranges)
	}
}

// A load that stops short (the loaders are full) leaves the rest for the
// next read to ask for again.
func TestReadAheadShortLoadAsksAgain(t *testing.T) {
	var a ReadAhead
	const base, n = 1 << 30, 64 << 10
	l := loadLog{short: base + 4*n + 100}
	for i := int64(0); i < 4; i++ {
		a.Note(base+i*n, n, l.load)
	}
	// Read 2 asked [3n, 5n) and got up to 4n+100; read 3 asks again
	// from there.
	if len(l.ranges) != 2 || l.ranges[0] != [2]int64{base + 3*n, base + 4*n + 100} || l.ranges[1][0] != base+4*n+100 {
		t.Fatalf("loads %v", l.ranges)
	}
}

// Readers calling Note at once from many goroutines (run with -race).
func TestReadAheadConcurrent(t *testing.T) {
	var a ReadAhead
	var l loadLog
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int64(0); i < 500; i++ {
				a.Note(int64(w)<<30+i*4096, 4096, l.load)
			}
		}()
	}
	wg.Wait()
	if l.bytes() == 0 {
		t.Fatal("no read-ahead for 8 sequential readers")
	}
}

// waitGoroutines waits until no more than n goroutines run.
func waitGoroutines(t testing.TB, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > n {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines, want at most %d:\n%s", runtime.NumGoroutine(), n, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(time.Millisecond)
	}
}

func waitIdle(t testing.TB, v *Vault) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !v.loaders().idle() {
		if time.Now().After(deadline) {
			t.Fatal("loaders still busy")
		}
		time.Sleep(time.Millisecond)
	}
}

// LoadAhead brings blocks into the cache on the vault's loaders and
// returns at once; the loaders end when the queue is empty; the queue is
// bounded, and Close takes a reader's blocks off it.
func TestLoadAhead(t *testing.T) {
	const bs = 16 << 10
	v := TestVault(t, Config{BlockSize: bs})
	data := disk(5, 2*maxLoadQueue*bs)
	clear(data[bs : 2*bs])
	p, err := v.Backup(context.Background(), "r", []DiskSource{{Name: "d", Src: &MemSource{Data: data}}}, BackupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r, err := v.OpenDisk(p, "")
	if err != nil {
		t.Fatal(err)
	}
	waitIdle(t, v)
	base := runtime.NumGoroutine()
	if got := r.LoadAhead(0, 8*bs); got != 8*bs {
		t.Fatalf("LoadAhead reached %d", got)
	}
	waitIdle(t, v)
	for off := int64(0); off < 8*bs; off += bs {
		if !r.Cached(off) {
			t.Fatalf("block at %d not loaded", off)
		}
	}
	waitGoroutines(t, base)
	buf := make([]byte, 8*bs)
	if _, err := r.ReadAt(buf, 0); err != nil || !bytes.Equal(buf, data[:8*bs]) {
		t.Fatalf("read of loaded blocks: %v", err)
	}

	// A bounded queue: a reader asking for the whole disk gets a part.
	l := v.loaders()
	l.mu.Lock() // no loader takes anything off meanwhile
	l.running += l.max
	l.mu.Unlock()
	got := r.LoadAhead(0, r.Size())
	if got >= r.Size() || len(l.queue) != maxLoadQueue {
		t.Fatalf("LoadAhead of %d blocks reached %d, queue %d", r.Size()/bs, got, len(l.queue))
	}
	r2, _ := v.OpenDisk(p, "")
	r.Close()
	if len(l.queue) != 0 || len(l.pending) != 0 {
		t.Fatalf("Close left %d queued, %d pending", len(l.queue), len(l.pending))
	}
	if r2.LoadAhead(0, bs) != bs || len(l.queue) != 1 {
		t.Fatal("queue refused after Close")
	}
	l.mu.Lock()
	l.running -= l.max
	l.mu.Unlock()
	r2.Close()
}

// DiskReader.ReadAt reads ahead of a sequential reader, up to its
// window, and not at all for a random one; a read spanning blocks gives
// the disk's bytes and leaves no goroutine behind.
func TestDiskReaderReadsAhead(t *testing.T) {
	const bs = 64 << 10
	v := TestVault(t, Config{BlockSize: bs})
	data := disk(3, 24<<20)
	p, err := v.Backup(context.Background(), "r", []DiskSource{{Name: "d", Src: &MemSource{Data: data}}}, BackupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r, err := v.OpenDisk(p, "")
	if err != nil {
		t.Fatal(err)
	}
	waitIdle(t, v)
	base := runtime.NumGoroutine()
	l := v.loaders()
	read := func(off, n int64) {
		t.Helper()
		buf := make([]byte, n)
		if _, err := r.ReadAt(buf, off); err != nil || !bytes.Equal(buf, data[off:off+n]) {
			t.Fatalf("read of %d at %d: %v", n, off, err)
		}
	}
	rng := rand.New(rand.NewSource(4))
	for range 200 { // in the last third, away from the stream below
		read(16<<20+rng.Int63n(2047)*4096, 4096)
	}
	read(16<<20, 4096)
	read(16<<20+32<<10, 4096) // near the last: one in a row
	waitIdle(t, v)
	if l.added != 0 {
		t.Fatalf("random reads queued %d blocks", l.added)
	}
	const reads = 20
	for i := int64(0); i < reads; i++ {
		read(i*bs, bs)
	}
	waitIdle(t, v)
	end := int64(reads * bs)
	for _, c := range []struct {
		off    int64
		cached bool
	}{{end, true}, {end + DefaultReadAhead/2, true}, {end + DefaultReadAhead - bs, true}, {end + DefaultReadAhead + bs, false}} {
		if r.Cached(c.off) != c.cached {
			t.Errorf("block at %d (%d past the reads): cached %v", c.off, c.off-end, !c.cached)
		}
	}
	if l.added > (end+DefaultReadAhead)/bs {
		t.Errorf("%d blocks queued, beyond a window of %d blocks", l.added, DefaultReadAhead/bs)
	}
	read(12<<20+100, 5*bs)
	waitGoroutines(t, base)
	r.SetReadAhead(-1)
	added := l.added
	for i := int64(0); i < 8; i++ {
		read(13<<20+i*bs, bs)
	}
	if l.added != added {
		t.Errorf("read-ahead off: %d blocks queued", l.added-added)
	}
}

// A read across a damaged block returns the bytes before it and an
// error naming its offset, never the damaged bytes.
func TestDiskReaderDamagedSpan(t *testing.T) {
	const bs = 64 << 10
	v := damageableVault(t, bs)
	data := make([]byte, 16*bs)
	rand.New(rand.NewSource(8)).Read(data) // blobs larger than damageBlock's offset
	p, err := v.Backup(context.Background(), "r", []DiskSource{{Name: "d", Src: &MemSource{Data: data}}}, BackupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r, _ := v.OpenDisk(p, "")
	damageBlock(t, v, r.Disk(), 6)
	buf := make([]byte, 4*bs)
	n, err := r.ReadAt(buf, 4*bs+10)
	if !errors.Is(err, chunkstore.ErrCorrupt) || !strings.Contains(err.Error(), fmt.Sprintf("at offset %d", 6*bs)) || n != 2*bs-10 {
		t.Fatalf("read across damage: %d bytes, %v", n, err)
	}
	if !bytes.Equal(buf[:n], data[4*bs+10:6*bs]) {
		t.Fatal("bytes before the damage differ")
	}
	if _, err := r.ReadAt(buf[:100], 6*bs+5); !errors.Is(err, chunkstore.ErrCorrupt) {
		t.Fatalf("read inside damage: %v", err)
	}
}

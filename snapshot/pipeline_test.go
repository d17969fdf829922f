package snapshot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/chunkstore"
	"github.com/cairn-backup/cairn/index"
)

// walkDisk backs up a disk of nb blocks of bs bytes plus a short one,
// with a hole at block 3 and a whole map page of holes when nb allows.
func walkDisk(t *testing.T, v *Vault, bs, nb int) (*Point, []byte) {
	t.Helper()
	data := disk(9, nb*bs+bs/3)
	clear(data[3*bs : 4*bs])
	if nb > 3*PageEntries {
		clear(data[PageEntries*bs : 2*PageEntries*bs])
	}
	p, err := v.Backup(context.Background(), "r", []DiskSource{{Name: "d", Src: &MemSource{Data: data}}}, BackupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return p, data
}

// The pipeline hands blocks out in order though workers finish them out
// of order, clipped to the walk's range, holes as asked, and never holds
// more than its slots in flight.
func TestWalkOrderAndBound(t *testing.T) {
	const bs = 4 << 10
	v := TestVault(t, Config{BlockSize: bs})
	p, data := walkDisk(t, v, bs, 3*PageEntries+40)
	d := &p.Disks[0]
	for _, c := range []struct {
		start, end int64
		holes      bool
	}{
		{0, d.Size, false},
		{0, d.Size, true},
		{100, 5*bs + 7, true},
		{PageEntries*bs - 10, 2*PageEntries*bs + 10, false},
		{d.Size - 5, d.Size + 100, true},
	} {
		t.Run(fmt.Sprintf("%d-%d-%v", c.start, c.end, c.holes), func(t *testing.T) {
			var inFlight, most atomic.Int64
			rng := rand.New(rand.NewSource(1))
			var rngMu sync.Mutex
			got := make([]byte, len(data))
			pos := c.start
			w := walk{v: v, p: p, d: d, start: c.start, end: c.end, holes: c.holes}
			w.fetch = func(b *walkBlock) error {
				n := inFlight.Add(1)
				for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
				}
				rngMu.Lock()
				pause := time.Duration(rng.Intn(50)) * time.Microsecond
				rngMu.Unlock()
				time.Sleep(pause)
				if b.h.IsZero() {
					b.data = make([]byte, b.n)
					return nil
				}
				return w.load(b)
			}
			w.emit = func(b *walkBlock) error {
				inFlight.Add(-1)
				if b.off < pos || (c.holes && b.off != pos) {
					return fmt.Errorf("block at %d after %d", b.off, pos)
				}
				if !c.holes && b.h.IsZero() {
					return fmt.Errorf("hole at %d handed out", b.off)
				}
				if b.off < c.start || b.off+b.n > min(c.end, d.Size) || int64(len(b.data)) != b.n {
					return fmt.Errorf("block [%d, +%d) with %d bytes outside [%d, %d)", b.off, b.n, len(b.data), c.start, c.end)
				}
				copy(got[b.off:], b.data)
				pos = b.off + b.n
				return nil
			}
			if err := w.run(context.Background()); err != nil {
				t.Fatal(err)
			}
			end := min(c.end, d.Size)
			if !bytes.Equal(got[c.start:end], data[c.start:end]) {
				t.Fatal("blocks differ from the disk")
			}
			if c.holes && pos != end {
				t.Fatalf("walk ended at %d, want %d", pos, end)
			}
			if s := int64(walkSlots(runtime.GOMAXPROCS(0), bs)); most.Load() > s {
				t.Fatalf("%d blocks in flight, %d slots", most.Load(), s)
			}
		})
	}
}

// walkSlots bounds the bytes in flight, whatever the block size.
func TestWalkSlotsBoundBytes(t *testing.T) {
	for _, bs := range []int64{4 << 10, 256 << 10, 4 << 20} {
		for _, w := range []int{1, 2, 8} {
			s := walkSlots(w, bs)
			if s < 2*w || int64(s)*bs > max(walkBudget, 2*int64(w)*bs) {
				t.Errorf("block size %d, %d workers: %d slots", bs, w, s)
			}
		}
	}
}

// The first error in disk order stops the walk: a fetch's, emit's, a
// damaged block's or a cancel; every goroutine of the walk has ended
// when run returns.
func TestWalkErrorsAndCancel(t *testing.T) {
	const bs = 64 << 10
	v := damageableVault(t, bs)
	p, _ := walkDisk(t, v, bs, 200)
	d := &p.Disks[0]
	ctx := context.Background()
	base := runtime.NumGoroutine()
	walkAll := func(ctx context.Context, fetch func(*walkBlock) error, emit func(*walkBlock) error) ([]int64, error) {
		var seen []int64
		w := walk{v: v, p: p, d: d, start: 0, end: d.Size, fetch: fetch}
		w.emit = func(b *walkBlock) error {
			seen = append(seen, b.off)
			if emit != nil {
				return emit(b)
			}
			return nil
		}
		err := w.run(ctx)
		return seen, err
	}

	boom := errors.New("boom")
	var active atomic.Int32 // fetches running
	seen, err := walkAll(ctx, func(b *walkBlock) error {
		active.Add(1)
		defer active.Add(-1)
		if b.i == 50 {
			return boom
		}
		if b.i > 50 {
			time.Sleep(time.Millisecond) // later blocks are in flight
		}
		return nil
	}, nil)
	if !errors.Is(err, boom) || len(seen) == 0 || seen[len(seen)-1] >= 50*bs {
		t.Fatalf("fetch error: %v, blocks handed out at %v", err, seen)
	}
	if n := active.Load(); n != 0 {
		t.Fatalf("%d fetches still run after the walk returned", n)
	}
	waitGoroutines(t, base)

	seen, err = walkAll(ctx, func(*walkBlock) error { return nil }, func(b *walkBlock) error {
		if b.i == 20 {
			return boom
		}
		return nil
	})
	if !errors.Is(err, boom) || seen[len(seen)-1] != 20*bs {
		t.Fatalf("emit error: %v after %d blocks", err, len(seen))
	}
	waitGoroutines(t, base)

	cctx, cancel := context.WithCancel(ctx)
	seen, err = walkAll(cctx, func(*walkBlock) error { return nil }, func(b *walkBlock) error {
		if b.i == 30 {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) || seen[len(seen)-1] != 30*bs {
		t.Fatalf("cancel: %v after %d blocks", err, len(seen))
	}
	if seen, err := walkAll(cctx, func(*walkBlock) error { return nil }, nil); !errors.Is(err, context.Canceled) || len(seen) != 0 {
		t.Fatalf("cancelled before: %v, %d blocks", err, len(seen))
	}
	waitGoroutines(t, base)

	// A damaged block: an error that wraps ErrCorrupt and names the
	// offset; nothing of it or after it handed out.
	damageBlock(t, v, d, 70)
	w := walk{v: v, p: p, d: d, start: 0, end: d.Size}
	var last int64 = -1
	w.fetch = w.load
	w.emit = func(b *walkBlock) error { last = b.off; return nil }
	err = w.run(ctx)
	if !errors.Is(err, chunkstore.ErrCorrupt) || !strings.Contains(err.Error(), fmt.Sprintf("at offset %d", 70*bs)) || last >= 70*bs {
		t.Fatalf("damaged block: %v, last handed out %d", err, last)
	}
	waitGoroutines(t, base)
}

// damageBlob overwrites four bytes at the end of the stored blob of h
// (a block or a map page) in its pack file: inside its payload, however
// small.
func damageBlob(t testing.TB, v *Vault, h index.Hash) {
	t.Helper()
	loc, err := v.idx.Block(h)
	if err != nil {
		t.Fatal(err)
	}
	packs, _ := filepath.Glob(filepath.Join(v.Dir(), "packs", "*", loc.Pack.String()+".pack"))
	if len(packs) != 1 {
		t.Fatalf("pack %s: found %v", loc.Pack, packs)
	}
	f, err := os.OpenFile(packs[0], os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte("XXXX"), int64(loc.Offset)+int64(loc.Length)-8); err != nil {
		t.Fatal(err)
	}
}

// An unreadable map page stops a walk with an error at its first block;
// with damaged set it comes out as one damaged block for the rest of the
// page, and the walk goes on.
func TestWalkDamagedMapPage(t *testing.T) {
	const bs = 4 << 10
	v := damageableVault(t, bs)
	p, _ := walkDisk(t, v, bs, 2*PageEntries+10)
	d := &p.Disks[0]
	damageBlob(t, v, d.Pages[1])
	w := walk{v: v, p: p, d: d, start: 0, end: d.Size}
	w.fetch = func(*walkBlock) error { return nil }
	var last int64
	w.emit = func(b *walkBlock) error { last = b.off; return nil }
	err := w.run(context.Background())
	if !errors.Is(err, chunkstore.ErrCorrupt) || !strings.Contains(err.Error(), fmt.Sprintf("at offset %d", PageEntries*bs)) ||
		last >= PageEntries*bs {
		t.Fatalf("damaged page: %v, last block %d", err, last)
	}

	w.damaged, w.holes = true, true
	var damaged [][2]int64
	pos := int64(0)
	w.emit = func(b *walkBlock) error {
		if b.off != pos {
			return fmt.Errorf("block at %d, want %d", b.off, pos)
		}
		pos += b.n
		if b.damage != nil {
			damaged = append(damaged, [2]int64{b.off, b.off + b.n})
		}
		return nil
	}
	if err := w.run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if want := [][2]int64{{PageEntries * bs, 2 * PageEntries * bs}}; fmt.Sprint(damaged) != fmt.Sprint(want) || pos != d.Size {
		t.Fatalf("damaged ranges %v, want %v; walk ended at %d of %d", damaged, want, pos, d.Size)
	}
}

package fs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/snapshot"
)

// memAt is an io.WriterAt over a buffer of a disk's size.
type memAt []byte

func (m memAt) WriteAt(p []byte, off int64) (int, error) { return copy(m[off:], p), nil }

// TestMountBesideBackupsPruneAndGC runs at once, for a few seconds and
// over a real FUSE mount: two backups of the same resource (they take
// turns), backups of another, readers of every point through the mount,
// one of them keeping the oldest point open while it is pruned,
// listings (the vault's and the mount's), prune (keep the last 2) and
// gc with compaction. No operation fails; no read returns wrong bytes;
// a point once listed disappears only when prune removed it, and only
// if 2 newer points of its resource were committed; at the end every
// point restores byte for byte, through the mount too, and the vault
// verifies with its data.
func TestMountBesideBackupsPruneAndGC(t *testing.T) {
	needFUSE(t)
	const bs, blocks, keep = 64 << 10, 8, 2
	ctx := context.Background()
	v := snapshot.TestVault(t, snapshot.Config{BlockSize: bs})
	dir := mountWith(t, v, MountOptions{})
	pool := make([][]byte, 40)
	rng := rand.New(rand.NewSource(7))
	for i := range pool {
		pool[i] = make([]byte, bs)
		rng.Read(pool[i])
	}
	disk := func(r *rand.Rand) []byte {
		out := make([]byte, 0, blocks*bs)
		for i := 0; i < blocks; i++ {
			switch r.Intn(5) {
			case 0:
				out = append(out, make([]byte, bs)...) // a hole
			case 1, 2: // shared with other points
				out = append(out, pool[r.Intn(len(pool))]...)
			default: // this point's own, which gc frees once it is gone
				b := make([]byte, bs)
				r.Read(b)
				out = append(out, b...)
			}
		}
		return out
	}

	var mu sync.Mutex
	committed := map[string][]byte{} // every point made, by name
	byRes := map[string][]string{}   // their IDs, by resource
	listed := map[string]bool{}      // every point a listing showed
	pruned := map[string]bool{}      // every point prune removed
	// What ran; gone counts the holder's reads.
	var backups, reads, gone, listings, prunes, gcs atomic.Int64
	dataOf := func(name string) ([]byte, bool) {
		mu.Lock()
		defer mu.Unlock()
		b, ok := committed[name]
		return b, ok
	}

	// Run for a few seconds and until enough has happened at once, on a
	// machine however loaded, but never past a bound.
	run := 3 * time.Second
	if testing.Short() {
		run = time.Second
	}
	enough := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return backups.Load() >= 8 && reads.Load() >= 6 && gone.Load() >= 1 && len(pruned) >= 2 && gcs.Load() >= 2
	}
	stop := make(chan struct{})
	go func() {
		start := time.Now()
		for time.Since(start) < run || !enough() && time.Since(start) < 12*time.Second {
			time.Sleep(20 * time.Millisecond)
		}
		close(stop)
	}()
	stopped := func() bool {
		select {
		case <-stop:
			return true
		default:
			return false
		}
	}
	errs := make(chan error, 16)
	var wg sync.WaitGroup
	loop := func(name string, seed int64, step func(r *rand.Rand) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewSource(seed))
			for !stopped() {
				if err := step(r); err != nil {
					errs <- fmt.Errorf("%s: %w", name, err)
					return
				}
			}
		}()
	}
	backup := func(res string) func(r *rand.Rand) error {
		return func(r *rand.Rand) error {
			data := disk(r)
			p, err := v.Backup(ctx, res, []snapshot.DiskSource{{Name: "d", Src: &snapshot.MemSource{Data: data}}},
				snapshot.BackupOptions{Workers: 2})
			if err != nil {
				return err
			}
			mu.Lock()
			committed[p.Name()] = data
			byRes[res] = append(byRes[res], p.ID)
			mu.Unlock()
			backups.Add(1)
			return nil
		}
	}
	loop("backup a", 1, backup("a"))
	loop("backup a again", 2, backup("a")) // the same resource: they take turns
	loop("backup b", 3, backup("b"))
	// Readers: points the mount lists, read whole (of b: a's are the
	// holder's, below). A point pruned meanwhile may be gone (ENOENT);
	// its bytes are never wrong.
	for i := 0; i < 2; i++ {
		loop(fmt.Sprintf("reader %d", i), int64(10+i), func(r *rand.Rand) error {
			time.Sleep(time.Duration(r.Intn(10)) * time.Millisecond)
			for _, res := range []string{"b"} {
				ents, err := os.ReadDir(filepath.Join(dir, res))
				if errors.Is(err, fs.ErrNotExist) {
					continue // no point yet
				}
				if err != nil {
					return err
				}
				listings.Add(1)
				r.Shuffle(len(ents), func(i, j int) { ents[i], ents[j] = ents[j], ents[i] })
				for _, e := range ents[:min(2, len(ents))] {
					if e.Name() == "latest" {
						continue
					}
					name := res + "@" + e.Name()
					mu.Lock()
					listed[name] = true
					mu.Unlock()
					got, err := os.ReadFile(filepath.Join(dir, res, e.Name(), "d.raw"))
					if errors.Is(err, fs.ErrNotExist) {
						continue
					}
					if err != nil {
						return fmt.Errorf("%s: %w", name, err)
					}
					reads.Add(1)
					if want, ok := dataOf(name); ok && !bytes.Equal(got, want) {
						return fmt.Errorf("%s: wrong bytes through the mount", name)
					}
				}
			}
			return nil
		})
	}
	// A reader that opens the oldest point of a, waits until prune has
	// removed it and a gc has run since, then reads it all for the first
	// time (so neither the kernel's cache nor the vault's has its
	// blocks): the mount holds an open point, so its bytes stay.
	loop("holder", 12, func(r *rand.Rand) error {
		ents, err := os.ReadDir(filepath.Join(dir, "a"))
		if errors.Is(err, fs.ErrNotExist) || len(ents) < 2 {
			time.Sleep(10 * time.Millisecond)
			return nil
		}
		if err != nil {
			return err
		}
		name := "a@" + ents[0].Name()
		want, ok := dataOf(name)
		if !ok {
			return nil
		}
		f, err := os.Open(filepath.Join(dir, "a", ents[0].Name(), "d.raw"))
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		defer f.Close()
		var gcsThen int64 = -1
		for !stopped() {
			mu.Lock()
			removed := pruned[name]
			mu.Unlock()
			if removed && gcsThen < 0 {
				gcsThen = gcs.Load()
			}
			if gcsThen >= 0 && gcs.Load() >= gcsThen+2 { // one started after the prune, and ended
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		if gcsThen < 0 || gcs.Load() < gcsThen+2 {
			return nil // stopped first
		}
		got := make([]byte, len(want))
		if _, err := f.ReadAt(got, 0); err != nil {
			return fmt.Errorf("%s, open while pruned and gc ran: %w", name, err)
		}
		if !bytes.Equal(got, want) {
			return fmt.Errorf("%s, open while pruned and gc ran: wrong bytes", name)
		}
		gone.Add(1)
		return nil
	})
	loop("points", 20, func(r *rand.Rand) error {
		time.Sleep(time.Duration(r.Intn(5)) * time.Millisecond)
		ps, err := v.Points("")
		if err != nil {
			return err
		}
		mu.Lock()
		for _, p := range ps {
			listed[p.Name()] = true
		}
		mu.Unlock()
		listings.Add(1)
		return nil
	})
	loop("prune", 21, func(r *rand.Rand) error {
		time.Sleep(time.Duration(r.Intn(50)) * time.Millisecond)
		rep, err := v.Prune(nil, snapshot.Rules{Last: keep}, false)
		if err != nil {
			return err
		}
		mu.Lock()
		for _, c := range rep.Resources {
			for _, d := range c.Decisions {
				if !d.Keep {
					pruned[d.Name] = true
				}
			}
		}
		mu.Unlock()
		prunes.Add(1)
		return nil
	})
	loop("gc", 22, func(r *rand.Rand) error {
		time.Sleep(time.Duration(r.Intn(50)) * time.Millisecond)
		if _, err := v.GC(ctx, snapshot.GCOptions{Threshold: 0.9}); err != nil && !errors.Is(err, snapshot.ErrGCRunning) {
			return err
		}
		gcs.Add(1)
		return nil
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	t.Logf("%d backups, %d reads through the mount, %d whole reads of an open point pruned and collected meanwhile, %d listings, %d prunes (%d points removed), %d gcs",
		backups.Load(), reads.Load(), gone.Load(), listings.Load(), prunes.Load(), len(pruned), gcs.Load())
	if t.Failed() {
		return
	}
	if !enough() {
		t.Fatal("too little ran at once to prove anything")
	}

	final, err := v.Points("")
	if err != nil {
		t.Fatal(err)
	}
	left := map[string]bool{}
	for _, p := range final {
		left[p.Name()] = true
	}
	for name := range listed {
		if !left[name] && !pruned[name] {
			t.Errorf("%s was listed, is gone, and prune did not remove it", name)
		}
	}
	// Prune removed only points with keep newer ones of their resource.
	for name := range pruned {
		if left[name] {
			t.Errorf("%s: prune reported it removed, yet it is listed", name)
			continue
		}
		res, id, _ := cutAt(name)
		ids := byRes[res]
		sort.Strings(ids)
		newer := len(ids) - sort.SearchStrings(ids, id) - 1
		if newer < keep {
			t.Errorf("%s: pruned with %d newer points, want at least %d", name, newer, keep)
		}
	}
	// The chain of the resource two backups wrote at once is a line.
	parents := map[string]bool{}
	for _, p := range final {
		if p.Resource == "a" && p.Parent != "" {
			if parents[p.Parent] {
				t.Errorf("two points of a have parent %s", p.Parent)
			}
			parents[p.Parent] = true
		}
	}
	for _, p := range final {
		want := committed[p.Name()]
		out := make(memAt, len(want))
		if err := v.Restore(ctx, p, "d", out, snapshot.RestoreOptions{}); err != nil || !bytes.Equal(out, want) {
			t.Errorf("%s restores differently: %v", p.Name(), err)
		}
		if got, err := os.ReadFile(filepath.Join(dir, p.Resource, p.ID, "d.raw")); err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s reads differently through the mount: %v", p.Name(), err)
		}
	}
	rep, err := v.Verify(ctx, snapshot.VerifyOptions{Data: true})
	if err != nil || !rep.OK() {
		t.Errorf("verify --data: %v %+v", err, rep)
	}
	// TestVault's cleanup verifies again, after the unmount.
}

// cutAt splits a point's name into resource and ID.
func cutAt(name string) (string, string, bool) {
	for i := len(name) - 1; i >= 0; i-- {
		if name[i] == '@' {
			return name[:i], name[i+1:], true
		}
	}
	return name, "", false
}

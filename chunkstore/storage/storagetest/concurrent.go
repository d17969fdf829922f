package storagetest

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/cairn-backup/cairn/chunkstore/storage"
)

// testConcurrent runs Put, Get, ReadAt, Stat, List and writers from many
// goroutines at once; under -race it checks the backend's locking, and it
// checks that Put is atomic: a reader of an object being replaced gets
// one whole version, never a mix or a torn one.
func testConcurrent(t *testing.T, o open) {
	s := o(t)
	const (
		workers = 8
		rounds  = 10
	)
	pack := testData(10, 512<<10)
	mustCreate(t, s, storage.Packs, "fixed.pack", pack)
	// Versions of a shared object: version v is v+1 KiB of byte v, so a
	// torn read shows as mixed bytes or a wrong length.
	version := func(v int) []byte { return bytes.Repeat([]byte{byte(v)}, (v+1)<<10) }
	mustPut(t, s, storage.Points, "shared", version(0))

	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for g := range workers {
		wg.Go(func() {
			if err := worker(t, s, g, rounds, pack, version); err != nil {
				errs <- fmt.Errorf("worker %d: %w", g, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	got := listed(t, s, storage.Packs)
	if len(got) != 1+workers || got["fixed.pack"] != int64(len(pack)) {
		t.Errorf("List Packs after the run: %v", got)
	}
}

func worker(t *testing.T, s storage.Storage, g, rounds int, pack []byte, version func(int) []byte) error {
	ctx := t.Context()
	r := rand.New(rand.NewPCG(uint64(g), 1))
	own := fmt.Sprintf("own-%d", g)
	buf := make([]byte, 64<<10)
	for i := range rounds {
		data := testData(uint64(g*1000+i), 100+i)
		if err := s.Put(ctx, storage.Points, own, data); err != nil {
			return err
		}
		got, err := s.Get(ctx, storage.Points, own)
		if err != nil {
			return err
		}
		if !bytes.Equal(got, data) {
			return fmt.Errorf("round %d: Get %s does not return what was put", i, own)
		}
		if i%3 == 0 {
			if err := s.Put(ctx, storage.Points, "shared", version(g)); err != nil {
				return err
			}
		}
		got, err = s.Get(ctx, storage.Points, "shared")
		if err != nil {
			return err
		}
		if v := int(got[0]); len(got) != (v+1)<<10 || !bytes.Equal(got, version(v)) {
			return fmt.Errorf("round %d: torn read of shared: %d bytes starting with %d", i, len(got), v)
		}
		for range 4 {
			off := r.Int64N(int64(len(pack) - len(buf)))
			if err := s.ReadAt(ctx, storage.Packs, "fixed.pack", buf, off); err != nil {
				return err
			}
			if !bytes.Equal(buf, pack[off:off+int64(len(buf))]) {
				return fmt.Errorf("round %d: ReadAt at %d returns wrong bytes", i, off)
			}
		}
		if _, err := s.Stat(ctx, storage.Points, "shared"); err != nil {
			return err
		}
		seen := false
		err = s.List(ctx, storage.Packs, func(info storage.ObjectInfo) error {
			seen = seen || info.Name == "fixed.pack"
			return nil
		})
		if err != nil {
			return err
		}
		if !seen {
			return fmt.Errorf("round %d: List misses fixed.pack", i)
		}
	}
	// A writer of its own, committed while the others read and list.
	w, err := s.Create(ctx, storage.Packs, fmt.Sprintf("w%d.pack", g))
	if err != nil {
		return err
	}
	if _, err := w.Write(testData(uint64(g), 5000)); err != nil {
		w.Abort()
		return err
	}
	return w.Commit(ctx)
}

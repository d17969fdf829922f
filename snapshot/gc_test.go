package snapshot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand"
	"sync"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/index"
)

// poolDisk builds a disk of n 64 KiB blocks drawn from a pool of
// distinct block contents, so points share blocks as real chains do.
func poolDisk(r *rand.Rand, pool [][]byte, n int) []byte {
	out := make([]byte, 0, n*len(pool[0]))
	for i := 0; i < n; i++ {
		out = append(out, pool[r.Intn(len(pool))]...)
	}
	return out
}

func blockPool(seed int64, n, size int) [][]byte {
	r := rand.New(rand.NewSource(seed))
	pool := make([][]byte, n)
	for i := range pool {
		pool[i] = make([]byte, size)
		r.Read(pool[i])
	}
	return pool
}

func packBytes(t *testing.T, v *Vault) int64 {
	t.Helper()
	if err := v.recountUsed(); err != nil {
		t.Fatal(err)
	}
	return v.Used()
}

// TestGCGivesSpaceBack deletes most points of a chain: after gc the
// vault is within 5% of a fresh vault holding only the survivors, and
// every survivor restores byte for byte.
func TestGCGivesSpaceBack(t *testing.T) {
	ctx := context.Background()
	v := TestVault(t, Config{BlockSize: 64 << 10})
	fresh := TestVault(t, Config{BlockSize: 64 << 10})
	r := rand.New(rand.NewSource(1))
	data := poolDisk(r, blockPool(2, 64, 64<<10), 64)
	var points []*Point
	var disks [][]byte
	for i := 0; i < 12; i++ {
		// About a tenth of the disk changes each time.
		for j := 0; j < 6; j++ {
			off := r.Intn(64) << 16
			r.Read(data[off : off+64<<10])
		}
		p, err := v.Backup(ctx, "vm", []DiskSource{{Name: "vda", Src: &MemSource{Data: bytes.Clone(data)}}}, BackupOptions{})
		if err != nil {
			t.Fatal(err)
		}
		points, disks = append(points, p), append(disks, bytes.Clone(data))
	}
	var gone []*Point
	var survivors []int
	for i, p := range points {
		if i%4 == 3 || i == len(points)-1 {
			survivors = append(survivors, i)
			if _, err := fresh.Backup(ctx, "vm", []DiskSource{{Name: "vda", Src: &MemSource{Data: disks[i]}}}, BackupOptions{}); err != nil {
				t.Fatal(err)
			}
		} else {
			gone = append(gone, p)
		}
	}
	before := packBytes(t, v)
	if err := v.Delete(gone); err != nil {
		t.Fatal(err)
	}
	dry, err := v.GC(ctx, GCOptions{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if packBytes(t, v) != before || dry.BlocksFreed == 0 {
		t.Fatalf("dry run changed the vault or found nothing: %+v", dry)
	}
	rep, err := v.GC(ctx, GCOptions{})
	if err != nil {
		t.Fatal(err)
	}
	after, want := packBytes(t, v), packBytes(t, fresh)
	t.Logf("packs: %d before, %d after gc, %d in a fresh vault; %+v", before, after, want, rep)
	if float64(after) > 1.05*float64(want) {
		t.Errorf("after gc the vault is %.3fx a fresh one (want at most 1.05x)", float64(after)/float64(want))
	}
	if rep.BytesFreed != before-after || rep.BlocksFreed < dry.BlocksFreed {
		t.Errorf("report %+v against %d -> %d (dry run %+v)", rep, before, after, dry)
	}
	for _, i := range survivors {
		if got := restoreAll(t, v, points[i], ""); !bytes.Equal(got, disks[i]) {
			t.Errorf("%s restores differently after gc", points[i].Name())
		}
	}
	// A second gc finds nothing more.
	if rep, err := v.GC(ctx, GCOptions{}); err != nil || rep.BlocksFreed != 0 || rep.PacksCompacted != 0 {
		t.Errorf("second gc: %+v %v", rep, err)
	}
}

// TestGCBesideBackupsAndReaders runs, at the same time and over and
// over, backups whose blocks a delete has just left unused, a reader of
// a point being deleted, and deletes with gc and compaction. Every point
// left restores byte for byte; the reader never sees wrong bytes.
func TestGCBesideBackupsAndReaders(t *testing.T) {
	ctx := context.Background()
	v := TestVault(t, Config{BlockSize: 64 << 10})
	pool := blockPool(3, 48, 64<<10)
	r := rand.New(rand.NewSource(4))
	want := map[string][]byte{}
	var mu sync.Mutex
	backup := func(res string, data []byte) (*Point, error) {
		p, err := v.Backup(ctx, res, []DiskSource{{Name: "vda", Src: &MemSource{Data: data}}}, BackupOptions{Workers: 2})
		if err == nil {
			mu.Lock()
			want[p.Name()] = data
			mu.Unlock()
		}
		return p, err
	}
	prev, err := backup("a", poolDisk(r, pool, 24))
	if err != nil {
		t.Fatal(err)
	}
	iterations := 12
	if testing.Short() {
		iterations = 4
	}
	for it := 0; it < iterations; it++ {
		old := prev
		oldData := want[old.Name()]
		next := bytes.Clone(oldData) // the blocks the delete below frees
		copy(next[r.Intn(24)<<16:], pool[r.Intn(len(pool))])
		other := poolDisk(r, pool, 16)
		release := v.Hold(old)
		rd, err := v.OpenDisk(old, "")
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		stopRead := make(chan struct{})
		wg.Add(5)
		go func() { // backups: one of the freed blocks, one of other data
			defer wg.Done()
			p, err := backup("a", next)
			if err != nil {
				errs <- fmt.Errorf("backup a: %w", err)
				return
			}
			prev = p
		}()
		go func() {
			defer wg.Done()
			if _, err := backup("b", other); err != nil {
				errs <- fmt.Errorf("backup b: %w", err)
			}
		}()
		go func() { // a reader of the point being deleted
			defer wg.Done()
			buf := make([]byte, len(oldData))
			for {
				select {
				case <-stopRead:
					return
				default:
				}
				if _, err := rd.ReadAt(buf, 0); err != nil {
					errs <- fmt.Errorf("reader of deleted point: %w", err)
					return
				}
				if !bytes.Equal(buf, oldData) {
					errs <- errors.New("reader of deleted point: wrong bytes")
					return
				}
			}
		}()
		go func() { // a restore of it, which reads storage (not the cache)
			defer wg.Done()
			for {
				select {
				case <-stopRead:
					return
				default:
				}
				out := make(memWriter, len(oldData))
				if err := v.Restore(ctx, old, "", out, RestoreOptions{Workers: 2}); err != nil {
					errs <- fmt.Errorf("restore of deleted point: %w", err)
					return
				}
				if !bytes.Equal(out, oldData) {
					errs <- errors.New("restore of deleted point: wrong bytes")
					return
				}
			}
		}()
		go func() { // delete and gc, compacting nearly every pack
			defer wg.Done()
			defer close(stopRead)
			if err := v.Delete([]*Point{old}); err != nil {
				errs <- err
				return
			}
			mu.Lock()
			delete(want, old.Name())
			mu.Unlock()
			for i := 0; i < 2; i++ {
				if _, err := v.GC(ctx, GCOptions{Threshold: 0.95}); err != nil && !errors.Is(err, ErrGCRunning) {
					errs <- fmt.Errorf("gc: %w", err)
					return
				}
			}
		}()
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("iteration %d: %v", it, err)
		}
		release()
		// Keep resource b short, so its points come and go too.
		if ids, _ := v.PointIDs("b"); len(ids) > 2 {
			p, _ := v.Point("b", ids[0])
			if err := v.Delete([]*Point{p}); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			delete(want, p.Name())
			mu.Unlock()
		}
	}
	if _, err := v.GC(ctx, GCOptions{Threshold: 0.95}); err != nil {
		t.Fatal(err)
	}
	points, _ := v.Points("")
	if len(points) != len(want) {
		t.Fatalf("%d points, want %d", len(points), len(want))
	}
	for _, p := range points {
		if got := restoreAll(t, v, p, ""); !bytes.Equal(got, want[p.Name()]) {
			t.Errorf("%s restores differently", p.Name())
		}
	}
	// TestVault's cleanup runs verify --data.
}

// TestCapacity fills a vault with a capacity: the backup that would pass
// it fails and commits nothing; gc brings the vault back where it was.
func TestCapacity(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	if err := Init(dir, Config{BlockSize: 64 << 10, Capacity: 3 << 20}, time.Now()); err != nil {
		t.Fatal(err)
	}
	v, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	rnd := func(seed int64, n int) []byte {
		b := make([]byte, n)
		rand.New(rand.NewSource(seed)).Read(b)
		return b
	}
	if _, err := v.Backup(ctx, "a", []DiskSource{{Name: "vda", Src: &MemSource{Data: rnd(1, 1<<20)}}}, BackupOptions{}); err != nil {
		t.Fatal(err)
	}
	before := packBytes(t, v)
	// Small packs, so some are sealed before the capacity stops it.
	_, err = v.Backup(ctx, "b", []DiskSource{{Name: "vda", Src: &MemSource{Data: rnd(2, 4<<20)}}}, BackupOptions{})
	if !errors.Is(err, ErrCapacity) {
		t.Fatalf("backup past the capacity: %v", err)
	}
	if ids, _ := v.PointIDs("b"); len(ids) != 0 {
		t.Fatal("a point was committed past the capacity")
	}
	if _, err := v.GC(ctx, GCOptions{}); err != nil {
		t.Fatal(err)
	}
	if after := packBytes(t, v); after != before {
		t.Errorf("after gc the vault holds %d bytes, before the failed backup %d", after, before)
	}
	if err := v.SetCapacity(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Backup(ctx, "b", []DiskSource{{Name: "vda", Src: &MemSource{Data: rnd(2, 4<<20)}}}, BackupOptions{}); err != nil {
		t.Fatalf("backup without a capacity: %v", err)
	}
}

// TestSameDataBackedUpTwiceAtOnce backs up the same new data into two
// resources at the same moment. Both may store it before either is
// indexed; the next gc must bring the vault back to one copy.
func TestSameDataBackedUpTwiceAtOnce(t *testing.T) {
	ctx := context.Background()
	v := TestVault(t, Config{BlockSize: 64 << 10})
	fresh := TestVault(t, Config{BlockSize: 64 << 10})
	data := poolDisk(rand.New(rand.NewSource(3)), blockPool(4, 256, 64<<10), 256)
	if _, err := fresh.Backup(ctx, "a", []DiskSource{{Name: "vda", Src: &MemSource{Data: data}}}, BackupOptions{}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	points := make([]*Point, 2)
	errs := make([]error, 2)
	for i, name := range []string{"a", "b"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			points[i], errs[i] = v.Backup(ctx, name, []DiskSource{{Name: "vda", Src: &MemSource{Data: data}}}, BackupOptions{})
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	before, want := packBytes(t, v), packBytes(t, fresh)
	rep, err := v.GC(ctx, GCOptions{})
	if err != nil {
		t.Fatal(err)
	}
	after := packBytes(t, v)
	t.Logf("packs: %d after both backups, %d after gc, %d for one copy; %+v", before, after, want, rep)
	if float64(after) > 1.05*float64(want) {
		t.Errorf("after gc the vault is %.2fx one copy (want at most 1.05x)", float64(after)/float64(want))
	}
	for _, p := range points {
		if got := restoreAll(t, v, p, ""); !bytes.Equal(got, data) {
			t.Errorf("%s restores differently", p.Name())
		}
	}
}

// TestBackupsOfOneResourceTakeTurns starts backups of the same resource
// at once: they run one after the other, each the parent of the next,
// and a backup canceled while it waits leaves no point.
func TestBackupsOfOneResourceTakeTurns(t *testing.T) {
	ctx := context.Background()
	v := TestVault(t, Config{BlockSize: 64 << 10})
	data := poolDisk(rand.New(rand.NewSource(5)), blockPool(6, 64, 64<<10), 64)
	var wg sync.WaitGroup
	points := make([]*Point, 3)
	errs := make([]error, 3)
	for i := range points {
		wg.Add(1)
		go func() {
			defer wg.Done()
			points[i], errs[i] = v.Backup(ctx, "vm", []DiskSource{{Name: "vda", Src: &MemSource{Data: data}}}, BackupOptions{})
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	ids, err := v.PointIDs("vm")
	if err != nil || len(ids) != 3 {
		t.Fatalf("points %v, %v", ids, err)
	}
	fulls := 0
	parents := map[string]bool{}
	for _, p := range points {
		if p.Full() {
			fulls++
		} else {
			parents[p.Parent] = true
		}
	}
	if fulls != 1 || len(parents) != 2 {
		t.Errorf("want one full point and a chain of two incrementals on distinct parents: %d full, parents %v", fulls, parents)
	}

	// A backup waiting for another gives up when its context ends.
	started := make(chan struct{})
	release := make(chan struct{})
	go func() {
		_, err := v.Backup(ctx, "vm", []DiskSource{{Name: "vda", Src: &MemSource{Data: data}}}, BackupOptions{
			Progress: func(done, total int64) {
				select {
				case <-started:
				default:
					close(started)
					<-release
				}
			},
		})
		errs[0] = err
		close(release)
	}()
	<-started
	cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := v.Backup(cctx, "vm", []DiskSource{{Name: "vda", Src: &MemSource{Data: data}}}, BackupOptions{}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("waiting backup with an expired context: %v", err)
	}
	release <- struct{}{}
	<-release
	if errs[0] != nil {
		t.Fatal(errs[0])
	}
	if ids, _ := v.PointIDs("vm"); len(ids) != 4 {
		t.Errorf("%d points, want 4", len(ids))
	}
}

// TestCancelledGCLeavesNoUnrecordedPack cancels gc's context just as it
// drops an empty pack's record: the object goes too, so the packs in
// storage stay exactly what the index counts (no later gc would see an
// object without a record).
func TestCancelledGCLeavesNoUnrecordedPack(t *testing.T) {
	v := TestVault(t, Config{BlockSize: 64 << 10})
	data := make([]byte, 1<<20)
	rand.New(rand.NewSource(4)).Read(data)
	p, err := v.Backup(context.Background(), "vm", []DiskSource{{Name: "vda", Src: &MemSource{Data: data}}}, BackupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var ids []index.PackID
	if err := v.idx.Packs(func(id index.PackID, _ index.PackInfo) error { ids = append(ids, id); return nil }); err != nil || len(ids) == 0 {
		t.Fatalf("packs: %v %v", ids, err)
	}
	if err := v.Delete([]*Point{p}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, id := range ids {
		if err := v.deletePack(ctx, id); err != nil {
			t.Fatalf("delete pack %s with gc cancelled: %v", id, err)
		}
	}
	if n := packBytes(t, v); n != 0 {
		t.Fatalf("%d bytes of packs left in storage without a record", n)
	}
}

package snapshot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/cairn-backup/cairn/chunkstore"
	"github.com/cairn-backup/cairn/chunkstore/storage"
)

// memWriter is an io.WriterAt over a byte slice.
type memWriter []byte

func (m memWriter) WriteAt(p []byte, off int64) (int, error) { return copy(m[off:], p), nil }

func disk(seed int64, size int) []byte {
	r := rand.New(rand.NewSource(seed))
	b := make([]byte, size)
	// Text-like, compressible data with zero stretches, like a filesystem.
	words := []string{"alpha ", "beta ", "gamma ", "delta\n", "epsilon "}
	for off := 0; off < size; {
		if r.Intn(8) == 0 {
			off += r.Intn(64 << 10) // leave zeros
			continue
		}
		if r.Intn(4) == 0 { // some incompressible data
			n := min(r.Intn(4096), size-off)
			r.Read(b[off : off+n])
			off += n
			continue
		}
		w := words[r.Intn(len(words))]
		off += copy(b[off:], w)
	}
	return b
}

func restoreAll(t *testing.T, v *Vault, p *Point, name string) []byte {
	t.Helper()
	d, err := pickDisk(p, name)
	if err != nil {
		t.Fatal(err)
	}
	out := make(memWriter, d.Size)
	if err := v.Restore(context.Background(), p, name, out, RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestBackupRestoreIncrementalDelete(t *testing.T) {
	v := TestVault(t, Config{BlockSize: 16 << 10})
	ctx := context.Background()
	data := disk(1, 3<<20+1234) // not a multiple of the block size
	src := &MemSource{Data: data, Holes: [][2]int64{{1 << 20, 2 << 20}}}
	clear(data[1<<20 : 2<<20])
	p1, err := v.Backup(ctx, "web01", []DiskSource{{Name: "vda", Src: src}}, BackupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !p1.Full() || p1.Disks[0].Allocated == 0 || p1.Added == 0 {
		t.Fatalf("first point: %+v", p1)
	}

	// Change ~2% of the disk in scattered places.
	data2 := bytes.Clone(data)
	r := rand.New(rand.NewSource(2))
	var changedBlocks int
	for i := 0; i < 4; i++ {
		off := r.Intn(len(data2) - 4096)
		if off >= 1<<20 && off < 2<<20 {
			continue
		}
		r.Read(data2[off : off+4096])
		changedBlocks += 2 // a 4 KiB write touches at most 2 blocks
	}
	src2 := &MemSource{Data: data2, Holes: src.Holes}
	p2, err := v.Backup(ctx, "web01", []DiskSource{{Name: "vda", Src: src2}}, BackupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p2.Full() || p2.Parent != p1.ID {
		t.Fatalf("second point parent = %q", p2.Parent)
	}
	if max := int64(changedBlocks * 16 << 10); p2.Changed() == 0 || p2.Changed() > max {
		t.Errorf("changed = %d, want (0, %d]", p2.Changed(), max)
	}
	// The increment costs about the changed blocks plus one map page,
	// not a full copy.
	if p2.Added > p1.Added/4 {
		t.Errorf("incremental added %d bytes, full added %d", p2.Added, p1.Added)
	}
	if got := restoreAll(t, v, p1, ""); !bytes.Equal(got, data) {
		t.Fatal("point 1 restores differently")
	}
	if err := v.Delete([]*Point{p1}); err != nil {
		t.Fatal(err)
	}
	if got := restoreAll(t, v, p2, "vda"); !bytes.Equal(got, data2) {
		t.Fatal("point 2 restores differently after deleting point 1")
	}
	if _, err := v.Resolve("web01@" + p1.ID); !errors.Is(err, ErrNoPoint) {
		t.Fatalf("deleted point still resolves: %v", err)
	}

	// ReadAt and NextData agree with the source.
	dr, err := v.OpenDisk(p2, "")
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 10000)
	for i := 0; i < 50; i++ {
		off := r.Int63n(int64(len(data2)))
		n, err := dr.ReadAt(buf, off)
		if err != nil && n != len(data2)-int(off) {
			t.Fatalf("ReadAt %d: %v", off, err)
		}
		if !bytes.Equal(buf[:n], data2[off:off+int64(n)]) {
			t.Fatalf("ReadAt %d differs", off)
		}
	}
	s, e, err := dr.NextData(1 << 20)
	if err != nil || s < 2<<20 || e <= s || !chunkstore.IsZero(data2[1<<20:s]) {
		t.Fatalf("NextData over the hole = %d,%d,%v", s, e, err)
	}
}

func TestMultiDiskAndIDs(t *testing.T) {
	v := TestVault(t, Config{BlockSize: 64 << 10, Compression: "lz4"})
	ctx := context.Background()
	a, b := disk(3, 1<<20), disk(4, 700<<10)
	disks := []DiskSource{{Name: "vda", Src: &MemSource{Data: a}}, {Name: "vdb", Src: &MemSource{Data: b}}}
	var pts []*Point
	for i := 0; i < 3; i++ {
		p, err := v.Backup(ctx, "srv", disks, BackupOptions{})
		if err != nil {
			t.Fatal(err)
		}
		pts = append(pts, p)
	}
	if pts[1].Added > 4096 {
		t.Errorf("unchanged backup added %d bytes", pts[1].Added)
	}
	if _, err := v.OpenDisk(pts[0], ""); err == nil {
		t.Error("two-disk point opened without a disk name")
	}
	if got := restoreAll(t, v, pts[2], "vdb"); !bytes.Equal(got, b) {
		t.Fatal("vdb differs")
	}
	latest, err := v.Resolve("srv@latest")
	if err != nil || latest.ID != pts[2].ID {
		t.Fatalf("latest = %v, %v", latest, err)
	}
	if _, err := v.Resolve("srv@2026"); !errors.Is(err, ErrAmbiguous) {
		t.Fatalf("ambiguous prefix: %v", err)
	}
	if p, err := v.Resolve("srv@" + pts[1].ID[:15]); err != nil || p.ID != pts[1].ID {
		t.Fatalf("unique prefix: %v %v", p, err)
	}
	if _, err := v.Resolve("nosuch@latest"); !errors.Is(err, ErrNoPoint) {
		t.Fatalf("unknown resource: %v", err)
	}
	if _, err := v.Backup(ctx, "bad name", disks, BackupOptions{}); !errors.Is(err, ErrBadName) {
		t.Fatalf("bad name: %v", err)
	}
}

func TestSameSecondGetsSuffix(t *testing.T) {
	v := TestVault(t, Config{})
	v.clock = func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) }
	src := &MemSource{Data: disk(5, 100<<10)}
	var ids []string
	for i := 0; i < 11; i++ {
		p, err := v.Backup(context.Background(), "r", []DiskSource{{Name: "d", Src: src}}, BackupOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, p.ID)
	}
	if ids[0] != "20260102T030405Z" || ids[1] != "20260102T030405Z-2" || ids[10] != "20260102T030405Z-11" {
		t.Fatalf("ids = %v", ids)
	}
	got, _ := v.PointIDs("r")
	for i := range ids {
		if got[i] != ids[i] {
			t.Fatalf("order = %v", got)
		}
	}
	if p, err := v.Resolve("r@latest"); err != nil || p.ID != ids[10] {
		t.Fatalf("latest = %v %v", p, err)
	}
	if p, err := v.Resolve("r@20260102T030405Z"); err != nil || p.ID != ids[0] {
		t.Fatalf("exact id beats prefix: %v %v", p, err)
	}
}

// A point deleted in the second it was made does not lend its name to
// the next point of that second, across a reopen too: its name stays
// bound to its bytes (a mount's inodes, a script's notes).
func TestDeletedIDNotReused(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := Init(dir, Config{}, now); err != nil {
		t.Fatal(err)
	}
	open := func() *Vault {
		v, err := Open(dir, Options{Clock: func() time.Time { return now }})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	v := open()
	defer func() { v.Close() }()
	backup := func(resource string, seed int64) *Point {
		t.Helper()
		p, err := v.Backup(ctx, resource, []DiskSource{{Name: "d", Src: &MemSource{Data: disk(seed, 64<<10)}}}, BackupOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	var ids []string
	for i := int64(0); i < 3; i++ {
		p := backup("r", i)
		ids = append(ids, p.ID)
		if err := v.Delete([]*Point{p}); err != nil {
			t.Fatal(err)
		}
		if i == 1 {
			v.Close()
			v = open()
		}
	}
	ids = append(ids, backup("other", 9).ID) // another resource: its own names
	now = now.Add(time.Second)
	ids = append(ids, backup("r", 10).ID) // a new second starts again
	want := []string{"20260102T030405Z", "20260102T030405Z-2", "20260102T030405Z-3", "20260102T030405Z", "20260102T030406Z"}
	if fmt.Sprint(ids) != fmt.Sprint(want) {
		t.Fatalf("ids %v, want %v", ids, want)
	}
}

func TestHugeSparseDiskReadsNothing(t *testing.T) {
	v := TestVault(t, Config{BlockSize: 1 << 20})
	src := &countingSource{size: 64 << 30, data: map[int64]byte{5 << 30: 7, 40<<30 + 3: 9}}
	p, err := v.Backup(context.Background(), "big", []DiskSource{{Name: "d", Src: src}}, BackupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if src.read > 2<<20 {
		t.Errorf("read %d bytes of a 64 GiB disk with 2 data bytes", src.read)
	}
	if p.Disks[0].Allocated != 2<<20 {
		t.Errorf("allocated = %d", p.Disks[0].Allocated)
	}
	dr, _ := v.OpenDisk(p, "")
	b := make([]byte, 1)
	if _, err := dr.ReadAt(b, 40<<30+3); err != nil || b[0] != 9 {
		t.Fatalf("byte at 40 GiB = %v %v", b, err)
	}
}

// countingSource is a sparse disk with a few non-zero bytes, each in its
// own 1 MiB data range.
type countingSource struct {
	size int64
	data map[int64]byte
	read int64
}

func (c *countingSource) Size() int64 { return c.size }
func (c *countingSource) ReadAt(p []byte, off int64) (int, error) {
	clear(p)
	for o, b := range c.data {
		if o >= off && o < off+int64(len(p)) {
			p[o-off] = b
		}
	}
	c.read += int64(len(p))
	return len(p), nil
}
func (c *countingSource) NextData(off int64) (int64, int64, error) {
	best := c.size
	for o := range c.data {
		s := o &^ (1<<20 - 1)
		if s+1<<20 > off && s < best {
			best = s
		}
	}
	if best == c.size {
		return c.size, c.size, nil
	}
	return max(best, off), best + 1<<20, nil
}

func TestVerifyNamesDamagedPoints(t *testing.T) {
	dir := t.TempDir()
	if err := Init(dir, Config{BlockSize: 64 << 10}, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := Init(dir, Config{}, time.Now()); !errors.Is(err, ErrAlreadyVault) {
		t.Fatalf("second init: %v", err)
	}
	v, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	ctx := context.Background()
	a := disk(6, 1<<20)
	pa, err := v.Backup(ctx, "a", []DiskSource{{Name: "d", Src: &MemSource{Data: a}}}, BackupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Backup(ctx, "b", []DiskSource{{Name: "d", Src: &MemSource{Data: disk(7, 1<<20)}}}, BackupOptions{}); err != nil {
		t.Fatal(err)
	}
	// Damage one block only point a uses.
	damageBlock(t, v, &pa.Disks[0], 3)

	rep, err := v.Verify(ctx, VerifyOptions{})
	if err != nil || !rep.OK() {
		t.Fatalf("structural verify should pass: %v %+v", err, rep.Problems)
	}
	rep, err = v.Verify(ctx, VerifyOptions{Data: true})
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK() || len(rep.DamagedPoints) != 1 || rep.DamagedPoints[0] != pa.Name() {
		t.Fatalf("verify --data: damaged=%v problems=%+v", rep.DamagedPoints, rep.Problems)
	}
	out := make(memWriter, 1<<20)
	if err := v.Restore(ctx, pa, "", out, RestoreOptions{}); !errors.Is(err, chunkstore.ErrCorrupt) {
		t.Fatalf("restore of damaged point: %v", err)
	}
}

// TestIncompressibleBlocks backs up random data, which is stored raw,
// then compressible data through the same buffers; the cleanup's
// verify --data checks every stored block against its hash.
func TestIncompressibleBlocks(t *testing.T) {
	v := TestVault(t, Config{BlockSize: 64 << 10})
	data := make([]byte, 4<<20)
	rand.New(rand.NewSource(9)).Read(data[:2<<20])
	copy(data[2<<20:], disk(10, 2<<20))
	p, err := v.Backup(context.Background(), "r", []DiskSource{{Name: "d", Src: &MemSource{Data: data}}}, BackupOptions{Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	if got := restoreAll(t, v, p, ""); !bytes.Equal(got, data) {
		t.Fatal("restore differs")
	}
}

// damageableVault opens a new vault of bs-byte blocks for a test that
// damages it: not TestVault, whose verify at cleanup would find the
// damage.
func damageableVault(t testing.TB, bs int) *Vault {
	t.Helper()
	dir := t.TempDir()
	if err := Init(dir, Config{BlockSize: bs}, time.Now()); err != nil {
		t.Fatal(err)
	}
	v, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	return v
}

// damageBlock overwrites four bytes inside the stored payload of block i
// of disk d, in its pack file.
func damageBlock(t testing.TB, v *Vault, d *Disk, i int64) {
	t.Helper()
	h, err := v.blockHash(d, i)
	if err != nil || h.IsZero() {
		t.Fatalf("block %d: hash %s, %v", i, h, err)
	}
	damageBlob(t, v, h)
}

// A DiskReader read by several workers a little out of order (the
// qcow2 export's) returns the disk's bytes and loads the blocks after
// the reads into the cache before anyone asks for them.
func TestOutOfOrderWorkersReadAhead(t *testing.T) {
	v := TestVault(t, Config{BlockSize: 64 << 10})
	data := make([]byte, 4<<20)
	rand.New(rand.NewSource(3)).Read(data)
	clear(data[1<<20 : 2<<20]) // a hole
	p, err := v.Backup(context.Background(), "r", []DiskSource{{Name: "d", Src: &MemSource{Data: data}}}, BackupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dr, err := v.OpenDisk(p, "")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	const n = 16 << 10
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b := make([]byte, n)
			for off := int64(w) * n; off < 2<<20; off += 4 * n {
				if _, err := dr.ReadAt(b, off); err != nil || !bytes.Equal(b, data[off:off+n]) {
					errs <- fmt.Errorf("read at %d: %v", off, err)
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
	for _, off := range []int64{2 << 20, 2<<20 + 64<<10, 2<<20 + 128<<10} {
		deadline := time.Now().Add(5 * time.Second)
		for !dr.Cached(off) {
			if time.Now().After(deadline) {
				t.Fatalf("block at %d was not loaded ahead", off)
			}
			time.Sleep(time.Millisecond)
		}
	}
}

// TestCloseWaitsForPrefetches loads blocks of a disk ahead of its reader,
// as read-ahead does, of damaged blocks held back by slow storage, and
// closes the vault: Close must wait for the loads, so
// that none fails to record the damage it meets on a closed index ("DB
// Closed"); a prefetch after Close does nothing.
func TestCloseWaitsForPrefetches(t *testing.T) {
	const bs = 64 << 10
	dir := t.TempDir()
	if err := Init(dir, Config{BlockSize: bs}, time.Now()); err != nil {
		t.Fatal(err)
	}
	v, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	data := disk(70, 1<<20)
	p, err := v.Backup(context.Background(), "vm", []DiskSource{{Name: "vda", Src: &MemSource{Data: data}}}, BackupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := int64(2); i < int64(len(data))/bs; i++ {
		damageBlock(t, v, &p.Disks[0], i) // fails on a hole
	}
	v.Close()

	st, err := storage.NewDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	faulty := storage.NewFaulty(st)
	slow := &inflight{Storage: faulty}
	var mu sync.Mutex
	var logged []string
	v, err = Open(dir, Options{Storage: slow, Logf: func(format string, args ...any) {
		mu.Lock()
		logged = append(logged, fmt.Sprintf(format, args...))
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	p, err = v.Resolve(p.Name())
	if err != nil {
		t.Fatal(err)
	}
	dr, err := v.OpenDisk(p, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dr.BlockHash(0); err != nil { // the map page, read now
		t.Fatal(err)
	}
	faulty.Add(storage.Rule{Op: storage.OpReadAt, Kind: storage.Packs, Fault: storage.FaultDelay(500 * time.Millisecond)})
	if _, err := dr.ReadAt(make([]byte, bs), 0); err != nil {
		t.Fatalf("read of sound block 0: %v", err)
	}
	// Loads ahead, as read-ahead's loaders run them, of damaged blocks.
	for i := int64(2); i < 6; i++ {
		go dr.Prefetch(i * bs)
	}
	time.Sleep(200 * time.Millisecond) // the loads ahead wait for storage now
	if slow.reads.Load() == 0 {
		t.Fatal("no load ahead of the read is running")
	}
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	if n := slow.reads.Load(); n != 0 {
		t.Errorf("Close returned with %d loads still reading storage", n)
	}
	calls := faulty.Calls(storage.OpReadAt)
	dr.Prefetch(bs)
	if n := faulty.Calls(storage.OpReadAt); n != calls {
		t.Errorf("a prefetch after Close read storage")
	}
	mu.Lock()
	defer mu.Unlock()
	for _, l := range logged {
		if strings.Contains(l, "recording that failed") {
			t.Error(l)
		}
	}
}

// inflight counts the ranged reads of its storage that are running.
type inflight struct {
	storage.Storage
	reads atomic.Int64
}

func (s *inflight) ReadAt(ctx context.Context, kind storage.Kind, name string, p []byte, off int64) error {
	s.reads.Add(1)
	defer s.reads.Add(-1)
	return s.Storage.ReadAt(ctx, kind, name, p, off)
}

// Stored and AppendStored hand out blocks as the vault keeps them: zstd
// frames that decode to the disk's bytes, incompressible blocks as they
// are, nothing for holes; a damaged block is an error naming its offset.
func TestAppendStored(t *testing.T) {
	const bs = 64 << 10
	v := damageableVault(t, bs)
	data := disk(3, 2<<20)
	clear(data[bs : 2*bs])                              // a hole
	rand.New(rand.NewSource(4)).Read(data[3*bs : 4*bs]) // incompressible
	p, err := v.Backup(context.Background(), "r", []DiskSource{{Name: "d", Src: &MemSource{Data: data}}}, BackupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r, err := v.OpenDisk(p, "d")
	if err != nil {
		t.Fatal(err)
	}
	dec, _ := zstd.NewReader(nil)
	defer dec.Close()
	kinds := map[string]int{}
	for i := int64(0); i < int64(len(data))/bs; i++ {
		want := data[i*bs : (i+1)*bs]
		codec, n, err := r.Stored(i)
		if err != nil {
			t.Fatal(err)
		}
		c2, got, err := r.AppendStored([]byte("prefix"), i)
		if err != nil || c2 != codec || string(got[:6]) != "prefix" || len(got)-6 != n {
			t.Fatalf("block %d: Stored %q %d, AppendStored %q %d bytes, %v", i, codec, n, c2, len(got)-6, err)
		}
		got = got[6:]
		kinds[codec]++
		switch codec {
		case "":
			if !chunkstore.IsZero(want) {
				t.Fatalf("block %d reported as a hole", i)
			}
		case "none":
			if !bytes.Equal(got, want) {
				t.Fatalf("block %d stored as it is differs", i)
			}
		case "zstd":
			if raw, err := dec.DecodeAll(got, nil); err != nil || !bytes.Equal(raw, want) {
				t.Fatalf("block %d: frame decodes to %d bytes, %v", i, len(raw), err)
			}
		default:
			t.Fatalf("block %d: codec %q", i, codec)
		}
	}
	if kinds[""] != 1 || kinds["none"] != 1 || kinds["zstd"] != len(data)/bs-2 {
		t.Fatalf("codecs %v", kinds)
	}
	damageBlock(t, v, r.Disk(), 5)
	if _, _, err := r.AppendStored(nil, 5); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("at offset %d", 5*bs)) {
		t.Fatalf("damaged block: %v", err)
	}
}

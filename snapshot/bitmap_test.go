package snapshot

import (
	"bytes"
	"context"
	"math/rand"
	"strings"
	"sync"
	"testing"

	"github.com/cairn-backup/cairn/index"
)

// readLog is a MemSource that records what is read of it.
type readLog struct {
	MemSource
	mu    sync.Mutex
	bytes int64
	offs  map[int64]bool // block-aligned offsets read
	bs    int64
}

func newReadLog(data []byte, holes [][2]int64, bs int64) *readLog {
	return &readLog{MemSource: MemSource{Data: data, Holes: holes}, offs: map[int64]bool{}, bs: bs}
}

func (r *readLog) ReadAt(p []byte, off int64) (int, error) {
	r.mu.Lock()
	r.bytes += int64(len(p))
	for o := off - off%r.bs; o < off+int64(len(p)); o += r.bs {
		r.offs[o] = true
	}
	r.mu.Unlock()
	return r.MemSource.ReadAt(p, off)
}

// dirtyOf reports ranges as a bitmap would.
func dirtyOf(ranges ...[2]int64) DirtyFunc {
	return func(ctx context.Context, fn func(start, end int64) error) error {
		for _, r := range ranges {
			if err := fn(r[0], r[1]); err != nil {
				return err
			}
		}
		return nil
	}
}

// bitmapFixture is a disk backed up in full with checkpoint c1, then
// changed in a few places that the returned ranges (the bitmap c1 would
// report) cover.
type bitmapFixture struct {
	v     *Vault
	bs    int64
	p1    *Point
	data2 []byte
	holes [][2]int64
	dirty [][2]int64
}

func newBitmapFixture(t *testing.T, v *Vault, bs int64) *bitmapFixture {
	t.Helper()
	const size = 4<<20 + 5000 // a partial last block
	data := disk(11, size)
	holes := [][2]int64{{1 << 20, 2 << 20}}
	clear(data[1<<20 : 2<<20])
	p1, err := v.Backup(context.Background(), "vm", []DiskSource{{Name: "vda", Path: "nbd://h/vda",
		Src: &MemSource{Data: data, Holes: holes}, Checkpoint: "c1"}}, BackupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if d := p1.Disks[0]; d.Checkpoint != "c1" || d.Bitmap != "" || d.Read != dataBlockBytes(size, holes, bs) {
		t.Fatalf("full point's disk: %+v", d)
	}
	f := &bitmapFixture{v: v, bs: bs, p1: p1, data2: bytes.Clone(data), holes: holes}
	rng := rand.New(rand.NewSource(3))
	write := func(off, n int) {
		rng.Read(f.data2[off : off+n])
		f.dirty = append(f.dirty, [2]int64{int64(off), int64(off + n)})
	}
	write(100, 10)       // inside block 0
	write(3<<20-7, 20)   // across a block boundary
	write(size-300, 300) // the partial last block
	write(1<<20+4096, 1) // data in the hole, which the source reports
	f.holes = [][2]int64{{1 << 20, 1<<20 + 4096}, {1<<20 + 8192, 2 << 20}}
	// A block rewritten with the same bytes is dirty but unchanged.
	f.dirty = append(f.dirty, [2]int64{int64(size - 2*bs - 10), int64(size - 2*bs)})
	sortRanges(f.dirty)
	return f
}

func sortRanges(r [][2]int64) {
	for i := range r {
		for j := i + 1; j < len(r); j++ {
			if r[j][0] < r[i][0] {
				r[i], r[j] = r[j], r[i]
			}
		}
	}
}

// dataBlockBytes counts the bytes of the blocks of a disk of size that
// are not wholly inside one of holes: what a full read reads.
func dataBlockBytes(size int64, holes [][2]int64, bs int64) int64 {
	var n int64
	for o := int64(0); o < size; o += bs {
		end := min(o+bs, size)
		hole := false
		for _, h := range holes {
			hole = hole || (h[0] <= o && end <= h[1])
		}
		if !hole {
			n += end - o
		}
	}
	return n
}

// dirtyBlocks lists the block offsets the ranges touch.
func dirtyBlocks(ranges [][2]int64, bs int64) map[int64]bool {
	out := map[int64]bool{}
	for _, r := range ranges {
		for o := r[0] - r[0]%bs; o < r[1]; o += bs {
			out[o] = true
		}
	}
	return out
}

// A backup from a trusted bitmap reads only the blocks the bitmap
// reports dirty, and gives the point a full read would: its parent plus
// those blocks.
func TestBitmapBackupReadsOnlyDirtyBlocks(t *testing.T) {
	const bs = 64 << 10
	v := TestVault(t, Config{BlockSize: bs})
	ctx := context.Background()
	f := newBitmapFixture(t, v, bs)
	src := newReadLog(f.data2, f.holes, bs)
	p2, err := v.Backup(ctx, "vm", []DiskSource{{Name: "vda", Path: "nbd://h/vda", Src: src,
		Bitmap: "c1", Dirty: dirtyOf(f.dirty...), Checkpoint: "c2"}}, BackupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d := p2.Disks[0]
	if d.Bitmap != "c1" || d.BitmapUnused != "" || d.Checkpoint != "c2" || d.Base != "vda" {
		t.Fatalf("disk of the bitmap point: %+v", d)
	}
	want := dirtyBlocks(f.dirty, bs)
	var wantRead int64
	for o := range want {
		wantRead += min(bs, int64(len(f.data2))-o)
	}
	for o := range src.offs {
		if !want[o] {
			t.Errorf("read the block at %d, which the bitmap calls clean", o)
		}
	}
	if len(src.offs) != len(want) || src.bytes != wantRead || d.Read != wantRead {
		t.Errorf("read %d blocks, %d bytes (recorded %d); want %d blocks, %d bytes", len(src.offs), src.bytes, d.Read, len(want), wantRead)
	}
	if got := restoreAll(t, v, p2, "vda"); !bytes.Equal(got, f.data2) {
		t.Fatal("the bitmap point restores differently from the disk")
	}
	// The same disk read in full gives the same block map and counts.
	full, err := v.Backup(ctx, "other", []DiskSource{{Name: "vda", Src: &MemSource{Data: f.data2, Holes: f.holes}}}, BackupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if fd := full.Disks[0]; !equalPages(fd.Pages, d.Pages) || fd.Allocated != d.Allocated {
		t.Errorf("bitmap point: allocated %d, pages %v; full read: %d, %v", d.Allocated, d.Pages, fd.Allocated, fd.Pages)
	}
	// Blocks 0, 16 (data in the hole), 47, 48 and the partial last one
	// hold new bytes; block 62, rewritten alike, did not change.
	if want := 4*bs + int64(len(f.data2))%bs; d.Changed != want {
		t.Errorf("changed = %d, want %d", d.Changed, want)
	}

	// The chain goes on from the new checkpoint; c1 is no longer trusted.
	data3 := bytes.Clone(f.data2)
	data3[2<<20+5] ^= 0xff
	src3 := newReadLog(data3, f.holes, bs)
	p3, err := v.Backup(ctx, "vm", []DiskSource{{Name: "vda", Path: "nbd://h/vda", Src: src3,
		Bitmap: "c2", Dirty: dirtyOf([2]int64{2<<20 + 5, 2<<20 + 6}), Checkpoint: "c3"}}, BackupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p3.Disks[0].Bitmap != "c2" || src3.bytes != bs || p3.Disks[0].Changed != bs {
		t.Fatalf("third point: %+v, read %d", p3.Disks[0], src3.bytes)
	}
	if got := restoreAll(t, v, p3, "vda"); !bytes.Equal(got, data3) {
		t.Fatal("the third point restores differently")
	}
	if got := restoreAll(t, v, f.p1, "vda"); bytes.Equal(got, data3) {
		t.Fatal("the first point changed")
	}
}

func equalPages(a, b []index.Hash) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// A bitmap that cannot be shown to describe the changes since the
// parent is not used: the disk is read in full, the point says why, and
// it restores as the disk is.
func TestBitmapFallsBackToAFullRead(t *testing.T) {
	const bs = 64 << 10
	cases := []struct {
		name   string
		before func(t *testing.T, f *bitmapFixture) // more points between
		ds     func(f *bitmapFixture, src Source) DiskSource
		why    string
	}{
		{name: "not offered", why: "does not offer it",
			ds: func(f *bitmapFixture, src Source) DiskSource {
				return DiskSource{Name: "vda", Src: src, Bitmap: "c1"}
			}},
		{name: "wrong checkpoint", why: "recorded checkpoint c1 for disk vda, not c0",
			ds: func(f *bitmapFixture, src Source) DiskSource {
				return DiskSource{Name: "vda", Src: src, Bitmap: "c0", Dirty: dirtyOf(f.dirty...)}
			}},
		{name: "a point between without checkpoint", why: "recorded no checkpoint for disk vda",
			before: func(t *testing.T, f *bitmapFixture) {
				if _, err := f.v.Backup(context.Background(), "vm", []DiskSource{{Name: "vda",
					Src: &MemSource{Data: f.data2, Holes: f.holes}}}, BackupOptions{}); err != nil {
					t.Fatal(err)
				}
			},
			ds: func(f *bitmapFixture, src Source) DiskSource {
				return DiskSource{Name: "vda", Src: src, Bitmap: "c1", Dirty: dirtyOf(f.dirty...)}
			}},
		{name: "bitmap older than the latest point", why: "recorded checkpoint c2 for disk vda, not c1",
			before: func(t *testing.T, f *bitmapFixture) {
				if _, err := f.v.Backup(context.Background(), "vm", []DiskSource{{Name: "vda", Src: &MemSource{Data: f.data2, Holes: f.holes},
					Bitmap: "c1", Dirty: dirtyOf(f.dirty...), Checkpoint: "c2"}}, BackupOptions{}); err != nil {
					t.Fatal(err)
				}
			},
			ds: func(f *bitmapFixture, src Source) DiskSource {
				return DiskSource{Name: "vda", Src: src, Bitmap: "c1", Dirty: dirtyOf(f.dirty...)}
			}},
		{name: "another disk", why: "has no disk vdb",
			ds: func(f *bitmapFixture, src Source) DiskSource {
				return DiskSource{Name: "vdb", Src: src, Bitmap: "c1", Dirty: dirtyOf(f.dirty...)}
			}},
		{name: "size changed", why: "size went from",
			ds: func(f *bitmapFixture, src Source) DiskSource {
				m := src.(*readLog)
				m.Data = append(m.Data, make([]byte, bs)...)
				return DiskSource{Name: "vda", Src: src, Bitmap: "c1", Dirty: dirtyOf(f.dirty...)}
			}},
		{name: "zeros where the bitmap says clean", why: "reads as zeros now",
			ds: func(f *bitmapFixture, src Source) DiskSource {
				m := src.(*readLog)
				clear(m.Data[3<<20+bs : 3<<20+2*bs])
				m.Holes = append(m.Holes, [2]int64{3<<20 + bs, 3<<20 + 2*bs})
				return DiskSource{Name: "vda", Src: src, Bitmap: "c1", Dirty: dirtyOf(f.dirty...)}
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := TestVault(t, Config{BlockSize: bs})
			f := newBitmapFixture(t, v, bs)
			if c.before != nil {
				c.before(t, f)
			}
			src := newReadLog(bytes.Clone(f.data2), f.holes, bs)
			ds := c.ds(f, src)
			ds.Checkpoint = "c9"
			p, err := v.Backup(context.Background(), "vm", []DiskSource{ds}, BackupOptions{})
			if err != nil {
				t.Fatal(err)
			}
			d := p.Disks[0]
			if d.Bitmap != "" || !strings.HasPrefix(d.BitmapUnused, "bitmap "+ds.Bitmap+" not used: ") ||
				!strings.Contains(d.BitmapUnused, c.why) || d.Checkpoint != "c9" {
				t.Fatalf("disk: bitmap %q, unused %q, checkpoint %q; want unused to say %q", d.Bitmap, d.BitmapUnused, d.Checkpoint, c.why)
			}
			if want := dataBlockBytes(src.Size(), src.Holes, bs); d.Read != want || src.bytes != want {
				t.Errorf("a full read read %d bytes (recorded %d), want %d", src.bytes, d.Read, want)
			}
			if got := restoreAll(t, v, p, ds.Name); !bytes.Equal(got, src.Data) {
				t.Fatal("the point restores differently from the disk")
			}
		})
	}
}

// A clean block whose stored copy is known damaged is read from the
// source again, which heals it; a dirty block that is now a hole is
// recorded as one without a read.
func TestBitmapBackupRereadsDamagedBlocks(t *testing.T) {
	const bs = 64 << 10
	v := damageableVault(t, bs)
	ctx := context.Background()
	f := newBitmapFixture(t, v, bs)
	damageBlock(t, v, &f.p1.Disks[0], 40)
	if rep, err := v.Verify(ctx, VerifyOptions{Data: true}); err != nil || rep.OK() {
		t.Fatalf("verify did not find the damage: %v", err)
	}
	// The block at 3 MiB + 2 blocks becomes zeros, and the bitmap says so.
	zero := [2]int64{3<<20 + 2*bs, 3<<20 + 3*bs}
	clear(f.data2[zero[0]:zero[1]])
	src := newReadLog(f.data2, append(append([][2]int64{}, f.holes...), zero), bs)
	dirty := append(append([][2]int64{}, f.dirty...), zero)
	sortRanges(dirty)
	p2, err := v.Backup(ctx, "vm", []DiskSource{{Name: "vda", Src: src, Bitmap: "c1", Dirty: dirtyOf(dirty...)}}, BackupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !src.offs[40*bs] {
		t.Error("the damaged clean block was not read again")
	}
	if src.offs[zero[0]] {
		t.Error("a dirty block that is now a hole was read")
	}
	if p2.Disks[0].Bitmap != "c1" {
		t.Fatalf("disk: %+v", p2.Disks[0])
	}
	if got := restoreAll(t, v, p2, "vda"); !bytes.Equal(got, f.data2) {
		t.Fatal("the point restores differently")
	}
	if d, _ := v.Damage(f.p1); d != nil {
		t.Errorf("the parent is still damaged: %+v", d)
	}
}

// A bitmap reporting ranges out of order or past the end fails the
// backup: nothing is committed.
func TestBitmapBadRangesFail(t *testing.T) {
	const bs = 64 << 10
	v := TestVault(t, Config{BlockSize: bs})
	f := newBitmapFixture(t, v, bs)
	size := int64(len(f.data2))
	for _, r := range [][][2]int64{{{5000, 6000}, {100, 200}}, {{size - 10, size + 1}}, {{10, 10}}} {
		_, err := v.Backup(context.Background(), "vm", []DiskSource{{Name: "vda", Src: &MemSource{Data: f.data2},
			Bitmap: "c1", Dirty: dirtyOf(r...)}}, BackupOptions{})
		if err == nil || !strings.Contains(err.Error(), "bad dirty range") {
			t.Errorf("ranges %v: %v", r, err)
		}
	}
	if ids := mustIDs(t, v, "vm"); len(ids) != 1 {
		t.Errorf("points after failed backups: %v", ids)
	}
}

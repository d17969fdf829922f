package chunkstore

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/chunkstore/storage"
	"github.com/cairn-backup/cairn/index"
)

// onePack writes n blocks into one pack and returns their hashes in pack
// order, the pack's ID and its file.
func onePack(t *testing.T, s *Store, dir string, n int) ([]Hash, index.PackID, string) {
	t.Helper()
	w := s.NewPackWriter(context.Background(), 0)
	var hashes []Hash
	for i := 0; i < n; i++ {
		h, _ := put(t, w, CodecZstd, testBlock(int64(i), 64<<10, i%2 == 0))
		hashes = append(hashes, h)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	loc, err := s.idx.Block(hashes[0])
	if err != nil {
		t.Fatal(err)
	}
	return hashes, loc.Pack, filepath.Join(dir, loc.Pack.String()[:2], PackName(loc.Pack))
}

func TestPackIndexFromTrailerOrHeaders(t *testing.T) {
	ctx := context.Background()
	s, dir := newTestStore(t)
	hashes, id, path := onePack(t, s, dir, 20)
	st := s.Storage()
	info, err := st.Stat(ctx, storage.Packs, PackName(id))
	if err != nil {
		t.Fatal(err)
	}
	check := func(got []BlobInfo, n int) {
		t.Helper()
		if len(got) != n {
			t.Fatalf("%d blobs, want %d", len(got), n)
		}
		for i, b := range got {
			loc, err := s.idx.Block(b.Hash)
			if err != nil || b.Hash != hashes[i] || b.location(id) != loc {
				t.Fatalf("blob %d: %+v, index %+v (%v)", i, b, loc, err)
			}
		}
	}
	// The trailer: what the writer indexed, blob for blob.
	got, _, err := readTrailer(ctx, st, PackName(id), info.Size)
	if err != nil {
		t.Fatal(err)
	}
	check(got, 20)
	// The same from the headers.
	got, err = scanHeaders(ctx, st, PackName(id), info.Size)
	if err != nil {
		t.Fatal(err)
	}
	check(got, 20)

	// A pack cut inside its 12th blob: its trailer is gone, the scan finds
	// the 11 blobs before the cut and says the rest is damaged.
	loc, _ := s.idx.Block(hashes[11])
	if err := os.Truncate(path, int64(loc.Offset)+100); err != nil {
		t.Fatal(err)
	}
	got, err = ReadPackIndex(ctx, st, PackName(id), int64(loc.Offset)+100)
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("truncated pack: %v, want ErrCorrupt", err)
	}
	check(got, 11)
}

// TestVersion1Pack reads a pack as cairn wrote them before the trailer:
// version 1 in the header, blobs to the end.
func TestVersion1Pack(t *testing.T) {
	ctx := context.Background()
	s, dir := newTestStore(t)
	hashes, id, path := onePack(t, s, dir, 4)
	b, _ := os.ReadFile(path)
	last, _ := s.idx.Block(hashes[3])
	b = b[:last.Offset+uint64(last.Length)]
	b[9] = 1 // version 1
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := ReadPackIndex(ctx, s.Storage(), PackName(id), int64(len(b)))
	if err != nil || len(got) != 4 {
		t.Fatalf("version 1 pack: %d blobs, %v", len(got), err)
	}
	n := 0
	if pc, err := s.CheckPack(ctx, id, func(c BlobCheck) { n++ }); err != nil || n != 4 || pc.TrailerErr != nil {
		t.Fatalf("CheckPack of a version 1 pack (which has no trailer): %d, %v, %v", n, err, pc.TrailerErr)
	}
	for _, h := range hashes {
		if _, err := s.Load(h, nil); err != nil {
			t.Fatal(err)
		}
	}
}

func TestPackIndexWithDamagedTrailer(t *testing.T) {
	ctx := context.Background()
	s, dir := newTestStore(t)
	_, id, path := onePack(t, s, dir, 5)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, cut := range []int{10, footerSize + 30} {
		if err := os.WriteFile(path, b[:len(b)-cut], 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := ReadPackIndex(ctx, s.Storage(), PackName(id), int64(len(b)-cut))
		if err != nil || len(got) != 5 {
			t.Fatalf("trailer cut by %d: %d blobs, %v", cut, len(got), err)
		}
		var n int
		pc, err := s.CheckPack(ctx, id, func(c BlobCheck) {
			if c.Err != nil {
				t.Errorf("blob %s: %v", c.Hash, c.Err)
			}
			n++
		})
		if err != nil || n != 5 {
			t.Fatalf("CheckPack with the trailer cut by %d: %d blobs, %v", cut, n, err)
		}
		if pc.TrailerErr == nil || !strings.Contains(pc.TrailerErr.Error(), "trailer") {
			t.Errorf("CheckPack with the trailer cut by %d does not note it: %v", cut, pc.TrailerErr)
		}
	}
}

// A flipped bit anywhere in a trailer's footer, its flags and reserved
// word included, is noticed: the blobs still check, and the trailer is
// noted damaged.
func TestEveryFooterBitIsChecked(t *testing.T) {
	ctx := context.Background()
	s, dir := newTestStore(t)
	_, id, path := onePack(t, s, dir, 3)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := len(b) - footerSize; i < len(b); i++ {
		d := bytes.Clone(b)
		d[i] ^= 1 << (i % 8)
		if err := os.WriteFile(path, d, 0o600); err != nil {
			t.Fatal(err)
		}
		n := 0
		pc, err := s.CheckPack(ctx, id, func(c BlobCheck) {
			if c.Err == nil {
				n++
			}
		})
		if err != nil || n != 3 || pc.TrailerErr == nil {
			t.Errorf("footer byte %d flipped: %d blobs whole, %v, trailer %v", i-(len(b)-footerSize), n, err, pc.TrailerErr)
		}
	}
}

// TestDamageIsRecorded reads a damaged block: the read fails, the copy is
// recorded as damaged so a backup stores the block again, and storing it
// again makes it readable.
func TestDamageIsRecorded(t *testing.T) {
	ctx := context.Background()
	s, dir := newTestStore(t)
	hashes, _, path := onePack(t, s, dir, 3)
	loc, _ := s.idx.Block(hashes[1])
	f, _ := os.OpenFile(path, os.O_RDWR, 0)
	f.WriteAt([]byte{0xde, 0xad}, int64(loc.Offset)+blobHeaderSize+5)
	f.Close()

	if _, err := s.Load(hashes[1], nil); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("load of a damaged block: %v", err)
	}
	w := s.NewPackWriter(ctx, 0)
	if ok, _ := w.Has(hashes[1]); ok {
		t.Fatal("a backup would refer to the damaged copy")
	}
	if ok, _ := w.Has(hashes[0]); !ok {
		t.Fatal("an intact block is not found")
	}
	if n := putAgain(t, w, 1); n == 0 {
		t.Fatal("the damaged block was not stored again")
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(hashes[1], nil); err != nil {
		t.Fatalf("block stored again: %v", err)
	}
	if _, err := s.idx.Damaged(hashes[1]); !errors.Is(err, index.ErrNotFound) {
		t.Fatalf("damage still recorded: %v", err)
	}
}

func putAgain(t *testing.T, w *PackWriter, i int) int64 {
	t.Helper()
	_, n := put(t, w, CodecZstd, testBlock(int64(i), 64<<10, i%2 == 0))
	return n
}

// TestMissingPackIsNotDeduplicated removes a pack: a backup stores its
// blocks again instead of referring to data that is gone.
func TestMissingPackIsNotDeduplicated(t *testing.T) {
	ctx := context.Background()
	s, dir := newTestStore(t)
	hashes, _, path := onePack(t, s, dir, 2)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	w := s.NewPackWriter(ctx, 0)
	defer w.Abort()
	if ok, err := w.Has(hashes[0]); ok || err != nil {
		t.Fatalf("Has of a block in a missing pack: %v, %v", ok, err)
	}
	if _, err := s.Load(hashes[0], nil); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("load from a missing pack: %v, want ErrCorrupt", err)
	}
}

// TestReadFollowsAMovedBlock reads a block while compaction moves it to
// a new pack and deletes the old one: the read, which looked the block
// up in the old pack, finds it in the new one.
func TestReadFollowsAMovedBlock(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	idx, err := index.Open(filepath.Join(dir, "index"), index.Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	defer idx.Close()
	st, err := storage.NewDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	faulty := storage.NewFaulty(st)
	s := New(faulty, idx, Options{})
	w := s.NewPackWriter(ctx, 0)
	raw := testBlock(11, 64<<10, true)
	h, _ := put(t, w, CodecZstd, raw)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	old, _ := idx.Block(h)
	// The read of the old pack waits while the block moves.
	faulty.Add(storage.Rule{Op: storage.OpReadAt, Kind: storage.Packs, Name: PackName(old.Pack), Times: 1,
		Fault: storage.FaultDelay(300 * time.Millisecond)})
	got := make(chan error, 1)
	go func() {
		b, err := s.Load(h, nil)
		if err == nil && !bytes.Equal(b, raw) {
			err = errors.New("wrong bytes")
		}
		got <- err
	}()
	time.Sleep(50 * time.Millisecond)
	cw := s.NewPackWriter(ctx, 0)
	codec, stored, err := s.AppendStoredAt(h, old, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cw.Copy(Blob{Kind: KindData, Hash: h, RawLen: len(raw), Codec: codec, Stored: stored}); err != nil {
		t.Fatal(err)
	}
	if err := cw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := st.Delete(ctx, storage.Packs, PackName(old.Pack)); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatalf("read of a block moved meanwhile: %v", err)
	}
	if _, err := idx.Damaged(h); !errors.Is(err, index.ErrNotFound) {
		t.Fatal("a moved block was recorded as damaged")
	}
}

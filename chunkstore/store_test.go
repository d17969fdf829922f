package chunkstore

import (
	"bytes"
	"context"
	"errors"
	"math/rand"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/cairn-backup/cairn/chunkstore/storage"
	"github.com/cairn-backup/cairn/index"
)

// newTestStore returns a store in a temporary directory and its pack dir.
func newTestStore(t testing.TB) (*Store, string) {
	t.Helper()
	dir := t.TempDir()
	idx, err := index.Open(filepath.Join(dir, "index"), index.Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	st, err := storage.NewDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	s := New(st, idx, Options{CacheSize: 1 << 20})
	t.Cleanup(func() { s.Close(); st.Close(); idx.Close() })
	return s, filepath.Join(dir, "packs")
}

func testBlock(seed int64, n int, compressible bool) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewSource(seed))
	if compressible {
		words := []string{"cairn ", "vault ", "point ", "block ", "disk\n"}
		var buf bytes.Buffer
		for buf.Len() < n {
			buf.WriteString(words[r.Intn(len(words))])
		}
		copy(b, buf.Bytes())
	} else {
		r.Read(b)
	}
	return b
}

func put(t testing.TB, w *PackWriter, c Codec, raw []byte) (Hash, int64) {
	t.Helper()
	h := Sum(raw)
	codec, stored := Compress(c, raw, nil)
	n, err := w.Add(Blob{Kind: KindData, Hash: h, RawLen: len(raw), Codec: codec, Stored: stored})
	if err != nil {
		t.Fatal(err)
	}
	return h, n
}

func TestRoundTripAllCodecs(t *testing.T) {
	s, _ := newTestStore(t)
	w := s.NewPackWriter(context.Background(), 256<<10) // small packs: several seals
	blocks := map[Hash][]byte{}
	for i, c := range []Codec{CodecZstd, CodecLZ4, CodecNone} {
		for j := 0; j < 20; j++ {
			raw := testBlock(int64(i*100+j), 64<<10, j%2 == 0)
			h, n := put(t, w, c, raw)
			if n == 0 {
				t.Fatalf("new block %d/%d reported as duplicate", i, j)
			}
			if j%2 == 0 && c != CodecNone && n >= int64(len(raw)) {
				t.Errorf("%v did not shrink compressible block: %d bytes", c, n)
			}
			blocks[h] = raw
		}
	}
	// The same block again, before and after sealing, adds nothing.
	for h, raw := range blocks {
		_, stored := Compress(CodecZstd, raw, nil)
		if n, err := w.Add(Blob{Kind: KindData, Hash: h, RawLen: len(raw), Codec: CodecZstd, Stored: stored}); err != nil || n != 0 {
			t.Fatalf("duplicate add: n=%d err=%v", n, err)
		}
		break
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for h, raw := range blocks {
		wg.Add(1)
		go func(h Hash, raw []byte) {
			defer wg.Done()
			got, err := s.Get(h)
			if err != nil || !bytes.Equal(got, raw) {
				t.Errorf("Get %s: err=%v equal=%v", h, err, bytes.Equal(got, raw))
			}
			got, err = s.Load(h, nil)
			if err != nil || !bytes.Equal(got, raw) {
				t.Errorf("Load %s: err=%v", h, err)
			}
		}(h, raw)
	}
	wg.Wait()
	var missing Hash
	missing[0] = 9
	if _, err := s.Get(missing); !errors.Is(err, ErrMissing) {
		t.Fatalf("missing block: %v", err)
	}
}

func TestIncompressibleStoredRaw(t *testing.T) {
	raw := testBlock(1, 4096, false)
	for _, c := range []Codec{CodecZstd, CodecLZ4} {
		if got, _ := Compress(c, raw, nil); got != CodecNone {
			t.Errorf("%v: random data stored as %v, want none", c, got)
		}
	}
}

// TestDamagedPackIsReportedNotReturned flips one byte inside a stored
// payload and checks every read path reports it.
func TestDamagedPackIsReportedNotReturned(t *testing.T) {
	s, dir := newTestStore(t)
	w := s.NewPackWriter(context.Background(), 0)
	raw := testBlock(7, 128<<10, true)
	h, _ := put(t, w, CodecZstd, raw)
	good, _ := put(t, w, CodecZstd, testBlock(8, 128<<10, true))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	loc, err := s.idx.Block(h)
	if err != nil {
		t.Fatal(err)
	}
	packs, _ := filepath.Glob(filepath.Join(dir, "*", "*.pack"))
	if len(packs) != 1 {
		t.Fatalf("packs: %v", packs)
	}
	f, err := os.OpenFile(packs[0], os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	pos := int64(loc.Offset) + blobHeaderSize + 10
	b := []byte{0}
	f.ReadAt(b, pos)
	b[0] ^= 0xff
	f.WriteAt(b, pos)
	f.Close()

	if _, err := s.Get(h); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Get of damaged block: %v, want ErrCorrupt", err)
	}
	if _, err := s.Get(good); err != nil {
		t.Fatalf("undamaged neighbour: %v", err)
	}
	var bad, ok int
	pc, err := s.CheckPack(context.Background(), loc.Pack, func(c BlobCheck) {
		if c.Err != nil {
			bad++
			if c.Hash != h {
				t.Errorf("wrong blob blamed: %s", c.Hash)
			}
		} else {
			ok++
		}
	})
	if err != nil || bad != 1 || ok != 1 || pc.TrailerErr != nil {
		t.Fatalf("CheckPack: err=%v bad=%d ok=%d trailer %v", err, bad, ok, pc.TrailerErr)
	}
}

func TestAbortLeavesNothingVisible(t *testing.T) {
	s, dir := newTestStore(t)
	w := s.NewPackWriter(context.Background(), 0)
	h, _ := put(t, w, CodecLZ4, testBlock(3, 4096, true))
	w.Abort()
	if ok, _ := s.Has(h); ok {
		t.Fatal("aborted block is indexed")
	}
	left, _ := filepath.Glob(filepath.Join(dir, "*", "*"))
	if len(left) != 0 {
		t.Fatalf("files left after abort: %v", left)
	}
}

func BenchmarkCompressZstd(b *testing.B) {
	raw := testBlock(1, 1<<20, true)
	b.SetBytes(int64(len(raw)))
	var dst []byte
	for i := 0; i < b.N; i++ {
		_, dst = Compress(CodecZstd, raw, dst)
	}
}

func BenchmarkSum(b *testing.B) {
	raw := testBlock(1, 1<<20, false)
	b.SetBytes(int64(len(raw)))
	for i := 0; i < b.N; i++ {
		Sum(raw)
	}
}

// BenchmarkLoadZstd reads back 256 KiB zstd blocks of machine code (this
// test binary): pread, CRC, decompression and BLAKE3, as a cold block
// read through a mount costs.
func BenchmarkLoadZstd(b *testing.B) {
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	code, err := os.ReadFile(exe)
	if err != nil {
		b.Fatal(err)
	}
	const bs = 256 << 10
	s, _ := newTestStore(b)
	w := s.NewPackWriter(context.Background(), 0)
	var hashes []Hash
	for off := 0; off+bs <= len(code) && len(hashes) < 16; off += bs {
		h, _ := put(b, w, CodecZstd, code[off:off+bs])
		hashes = append(hashes, h)
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(bs)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := s.Load(hashes[i%len(hashes)], nil); err != nil {
			b.Fatal(err)
		}
	}
}

// TestDamagedBlobHeaderIsCorrupt flips each bit of a blob's header that
// a check covers (all but the four pad bytes): every read fails with
// ErrCorrupt, so callers that skip or record damage see it as damage,
// and the copy is recorded damaged.
func TestDamagedBlobHeaderIsCorrupt(t *testing.T) {
	s, dir := newTestStore(t)
	w := s.NewPackWriter(context.Background(), 0)
	h, _ := put(t, w, CodecZstd, testBlock(9, 64<<10, true))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	loc, err := s.idx.Block(h)
	if err != nil {
		t.Fatal(err)
	}
	packs, _ := filepath.Glob(filepath.Join(dir, "*", "*.pack"))
	f, err := os.OpenFile(packs[0], os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	flip := func(pos int64, bit byte) {
		b := []byte{0}
		f.ReadAt(b, pos)
		b[0] ^= bit
		f.WriteAt(b, pos)
	}
	for off := int64(0); off < blobHeaderSize-4; off++ {
		for _, bit := range []byte{0x01, 0x10, 0x80} {
			pos := int64(loc.Offset) + off
			flip(pos, bit)
			_, err := s.Load(h, nil)
			flip(pos, bit)
			if !errors.Is(err, ErrCorrupt) {
				t.Errorf("header byte %d, bit %#x flipped: %v, want ErrCorrupt", off, bit, err)
			}
		}
	}
	if _, err := s.idx.Damaged(h); err != nil {
		t.Errorf("the damaged copy is not recorded: %v", err)
	}
	if _, err := s.Load(h, nil); err != nil {
		t.Fatalf("the block once mended: %v", err)
	}
}

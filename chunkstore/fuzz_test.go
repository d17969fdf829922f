package chunkstore

import (
	"context"
	"errors"
	"os"
	"testing"

	"github.com/cairn-backup/cairn/chunkstore/storage"
	"github.com/cairn-backup/cairn/index"
)

// FuzzPackIndex feeds arbitrary bytes to the pack reader as a pack: the
// trailer, or a scan of blob headers when it is unsound. It must return
// blobs inside the pack or an error, never panic, hang or allocate
// beyond its bounds; and reading a listed blob through the store gives
// its exact bytes or ErrCorrupt, never wrong bytes.
func FuzzPackIndex(f *testing.F) {
	for _, seed := range seedPacks(f) {
		f.Add(seed)
		f.Add(seed[:len(seed)/2])
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ctx := context.Background()
		st := storage.NewMem()
		id := index.PackID{1}
		name := PackName(id)
		if err := st.Put(ctx, storage.Packs, name, data); err != nil {
			t.Fatal(err)
		}
		blobs, err := ReadPackIndex(ctx, st, name, int64(len(data)))
		if err != nil && len(blobs) > 0 && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("blobs with an error that is not ErrCorrupt: %v", err)
		}
		if len(blobs) == 0 {
			return
		}
		s := New(st, fuzzIndex(t), Options{CacheSize: 1 << 20})
		defer s.Close()
		for _, b := range blobs {
			if b.Offset < 0 || b.Length <= 0 || b.Offset+b.Length > int64(len(data)) {
				t.Fatalf("blob %+v outside a pack of %d bytes", b, len(data))
			}
			got, err := s.LoadAt(b.Hash, b.location(id), nil)
			if err != nil {
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("load %+v: %v", b, err)
				}
				continue
			}
			if Sum(got) != b.Hash {
				t.Fatalf("load %+v returned bytes of another hash", b)
			}
		}
	})
}

var fuzzIdx *index.DB

// fuzzIndex is one in-memory index shared by the fuzz runs of a
// process: opening Badger costs more than a run.
func fuzzIndex(t *testing.T) *index.DB {
	if fuzzIdx == nil {
		idx, err := index.Open("", index.Options{Create: true, InMemory: true, Lean: true})
		if err != nil {
			t.Fatal(err)
		}
		fuzzIdx = idx
	}
	return fuzzIdx
}

// FuzzDecompress feeds arbitrary payloads to each codec: an error or
// exactly the raw length, never a panic or an overrun.
func FuzzDecompress(f *testing.F) {
	raw := testBlock(1, 4096, true)
	for _, c := range []Codec{CodecNone, CodecZstd, CodecLZ4} {
		codec, stored := Compress(c, raw, nil)
		f.Add(uint8(codec), stored, uint16(len(raw)))
	}
	f.Fuzz(func(t *testing.T, codec uint8, stored []byte, rawLen uint16) {
		dst := newBlockBuf(int(rawLen) + 1)
		_ = decompress(Codec(codec%4), stored, dst)
	})
}

// seedPacks writes small real packs (zstd, lz4, raw and map blobs) and
// returns their bytes.
func seedPacks(f *testing.F) [][]byte {
	f.Helper()
	dir := f.TempDir()
	idx, err := index.Open(dir+"/index", index.Options{Create: true, Lean: true})
	if err != nil {
		f.Fatal(err)
	}
	defer idx.Close()
	st, err := storage.NewDir(dir)
	if err != nil {
		f.Fatal(err)
	}
	defer st.Close()
	s := New(st, idx, Options{CacheSize: 1 << 20})
	defer s.Close()
	w := s.NewPackWriter(context.Background(), 0)
	for i, c := range []Codec{CodecZstd, CodecLZ4, CodecNone} {
		put(f, w, c, testBlock(int64(i), 4096, i != 2))
	}
	if err := w.Close(); err != nil {
		f.Fatal(err)
	}
	var out [][]byte
	err = st.List(context.Background(), storage.Packs, func(info storage.ObjectInfo) error {
		b, err := os.ReadFile(dir + "/packs/" + info.Name[:2] + "/" + info.Name)
		if err != nil {
			return err
		}
		out = append(out, b)
		return nil
	})
	if err != nil || len(out) == 0 {
		f.Fatalf("no seed pack: %v", err)
	}
	return out
}

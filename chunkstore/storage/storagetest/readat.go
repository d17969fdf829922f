package storagetest

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/cairn-backup/cairn/chunkstore/storage"
)

func testReadAt(t *testing.T, o open) {
	s := o(t)
	const size = 1000
	data := testData(5, size)
	mustPut(t, s, storage.Packs, "r.pack", data)
	mustCreate(t, s, storage.Packs, "w.pack", data)
	for _, c := range []struct {
		name string
		off  int64
		n    int
		err  error // nil: success; io.ErrUnexpectedEOF; errAny: any error
	}{
		{"start", 0, 100, nil},
		{"middle", 450, 100, nil},
		{"end", size - 100, 100, nil},
		{"whole", 0, size, nil},
		{"one byte at the end", size - 1, 1, nil},
		{"zero length at start", 0, 0, nil},
		{"zero length at the end", size, 0, nil},
		{"across the end", size - 10, 11, io.ErrUnexpectedEOF},
		{"at the end", size, 1, io.ErrUnexpectedEOF},
		{"past the end", size + 100, 10, io.ErrUnexpectedEOF},
		{"zero length past the end", size + 1, 0, io.ErrUnexpectedEOF},
		{"longer than the object", 0, size + 1, io.ErrUnexpectedEOF},
		{"negative offset", -1, 10, errAny},
		{"very negative offset", -1 << 62, 10, errAny},
		{"huge offset", 1<<63 - 5, 10, io.ErrUnexpectedEOF},
	} {
		for _, name := range []string{"r.pack", "w.pack"} {
			t.Run(c.name+"/"+name, func(t *testing.T) {
				p := make([]byte, c.n)
				err := s.ReadAt(t.Context(), storage.Packs, name, p, c.off)
				switch {
				case c.err == nil && err != nil:
					t.Fatalf("ReadAt %d bytes at %d: %v", c.n, c.off, err)
				case c.err == nil && !bytes.Equal(p, data[c.off:c.off+int64(c.n)]):
					t.Fatalf("ReadAt %d bytes at %d: wrong bytes (first difference at %d)", c.n, c.off, firstDiff(p, data[c.off:]))
				case c.err == errAny && err == nil:
					t.Fatalf("ReadAt %d bytes at %d: no error", c.n, c.off)
				case c.err != nil && c.err != errAny && !errors.Is(err, c.err):
					t.Fatalf("ReadAt %d bytes at %d: %v, want an error wrapping %v", c.n, c.off, err, c.err)
				}
			})
		}
	}
	t.Run("empty object", func(t *testing.T) {
		mustPut(t, s, storage.Points, "empty", nil)
		if err := s.ReadAt(t.Context(), storage.Points, "empty", nil, 0); err != nil {
			t.Errorf("zero bytes at 0: %v", err)
		}
		err := s.ReadAt(t.Context(), storage.Points, "empty", make([]byte, 1), 0)
		wantErr(t, "one byte at 0", err, io.ErrUnexpectedEOF)
	})
	t.Run("large object", func(t *testing.T) {
		big := testData(6, 2<<20+17)
		mustCreate(t, s, storage.Packs, "big.pack", big)
		p := make([]byte, 256<<10)
		for _, off := range []int64{0, 1, 256 << 10, 1<<20 + 12345, int64(len(big) - len(p))} {
			if err := s.ReadAt(t.Context(), storage.Packs, "big.pack", p, off); err != nil {
				t.Fatalf("ReadAt at %d: %v", off, err)
			}
			if !bytes.Equal(p, big[off:off+int64(len(p))]) {
				t.Fatalf("ReadAt at %d: wrong bytes", off)
			}
		}
	})
}

// errAny stands for "some error" in tables.
var errAny = errors.New("any error")

package storagetest

import (
	"bytes"
	"maps"
	"testing"

	"github.com/cairn-backup/cairn/chunkstore/storage"
)

func testWriter(t *testing.T, o open) {
	const name = "0123456789abcdef0123456789abcdef.pack"
	data := testData(7, 1<<20+5)
	create := func(t *testing.T, s storage.Storage) storage.Writer {
		t.Helper()
		w, err := s.Create(t.Context(), storage.Packs, name)
		if err != nil {
			t.Fatalf("Create: %v", err)
		}
		return w
	}
	t.Run("invisible before commit", func(t *testing.T) {
		s := o(t)
		w := create(t, s)
		wantAbsent(t, s, storage.Packs, name)
		writePieces(t, w, data)
		wantAbsent(t, s, storage.Packs, name)
		if err := w.Commit(t.Context()); err != nil {
			t.Fatalf("Commit: %v", err)
		}
		wantContent(t, s, storage.Packs, name, data)
		if got := listed(t, s, storage.Packs); len(got) != 1 || got[name] != int64(len(data)) {
			t.Errorf("List after commit: %v", got)
		}
	})
	t.Run("empty", func(t *testing.T) {
		s := o(t)
		w := create(t, s)
		if err := w.Commit(t.Context()); err != nil {
			t.Fatalf("Commit: %v", err)
		}
		wantContent(t, s, storage.Packs, name, []byte{})
	})
	t.Run("abort", func(t *testing.T) {
		s := o(t)
		w := create(t, s)
		writePieces(t, w, data)
		if err := w.Abort(); err != nil {
			t.Fatalf("Abort: %v", err)
		}
		wantAbsent(t, s, storage.Packs, name)
		if err := w.Abort(); err != nil {
			t.Errorf("second Abort: %v", err)
		}
		if _, err := w.Write([]byte("more")); err == nil {
			t.Error("Write after Abort: no error")
		}
		if err := w.Commit(t.Context()); err == nil {
			t.Error("Commit after Abort: no error")
		}
		wantAbsent(t, s, storage.Packs, name)
	})
	t.Run("after commit", func(t *testing.T) {
		s := o(t)
		w := create(t, s)
		writePieces(t, w, data)
		if err := w.Commit(t.Context()); err != nil {
			t.Fatalf("Commit: %v", err)
		}
		if err := w.Abort(); err != nil {
			t.Errorf("Abort after Commit: %v, want a no-op", err)
		}
		_, err := w.Write([]byte("more"))
		wantErr(t, "Write after Commit", err, storage.ErrClosed)
		wantErr(t, "second Commit", w.Commit(t.Context()), storage.ErrClosed)
		wantContent(t, s, storage.Packs, name, data)
	})
	t.Run("replaces on commit", func(t *testing.T) {
		s := o(t)
		old := []byte("old pack")
		mustPut(t, s, storage.Packs, name, old)
		w := create(t, s)
		writePieces(t, w, data)
		wantContent(t, s, storage.Packs, name, old)
		if err := w.Commit(t.Context()); err != nil {
			t.Fatalf("Commit: %v", err)
		}
		wantContent(t, s, storage.Packs, name, data)
	})
	t.Run("abort keeps the old object", func(t *testing.T) {
		s := o(t)
		old := []byte("old pack")
		mustPut(t, s, storage.Packs, name, old)
		w := create(t, s)
		writePieces(t, w, data)
		if err := w.Abort(); err != nil {
			t.Fatalf("Abort: %v", err)
		}
		wantContent(t, s, storage.Packs, name, old)
	})
	t.Run("two writers of one name", func(t *testing.T) {
		s := o(t)
		a, b := create(t, s), create(t, s)
		writePieces(t, a, data[:1000])
		writePieces(t, b, data[1000:3000])
		if err := a.Commit(t.Context()); err != nil {
			t.Fatalf("first Commit: %v", err)
		}
		if err := b.Commit(t.Context()); err != nil {
			t.Fatalf("second Commit: %v", err)
		}
		wantContent(t, s, storage.Packs, name, data[1000:3000])
	})
	t.Run("many open writers", func(t *testing.T) {
		s := o(t)
		var ws []storage.Writer
		for i := range 5 {
			w, err := s.Create(t.Context(), storage.Packs, string(rune('a'+i))+".pack")
			if err != nil {
				t.Fatal(err)
			}
			ws = append(ws, w)
		}
		for i, w := range ws {
			writePieces(t, w, bytes.Repeat([]byte{byte(i)}, 100*(i+1)))
		}
		if got := listed(t, s, storage.Packs); len(got) != 0 {
			t.Errorf("List with writers open: %v", got)
		}
		for i, w := range ws {
			if i%2 == 0 {
				err := w.Commit(t.Context())
				if err != nil {
					t.Fatal(err)
				}
			} else if err := w.Abort(); err != nil {
				t.Fatal(err)
			}
		}
		want := map[string]int64{"a.pack": 100, "c.pack": 300, "e.pack": 500}
		if got := listed(t, s, storage.Packs); !maps.Equal(got, want) {
			t.Errorf("List = %v, want %v", got, want)
		}
	})
}

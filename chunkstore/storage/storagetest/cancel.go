package storagetest

import (
	"context"
	"errors"
	"testing"

	"github.com/cairn-backup/cairn/chunkstore/storage"
)

func testCanceled(t *testing.T, o open) {
	canceled, cancel := context.WithCancel(t.Context())
	cancel()
	t.Run("every call", func(t *testing.T) {
		s := o(t)
		mustPut(t, s, storage.Points, "p", []byte("old"))
		for _, c := range calls() {
			for _, name := range []string{"p", "absent"} {
				err := c.do(canceled, s, storage.Points, name)
				if !errors.Is(err, context.Canceled) {
					t.Errorf("%s %s with a canceled ctx: %v, want context.Canceled", c.name, name, err)
				}
			}
		}
		wantContent(t, s, storage.Points, "p", []byte("old"))
		wantAbsent(t, s, storage.Points, "absent")
	})
	t.Run("commit", func(t *testing.T) {
		s := o(t)
		w, err := s.Create(t.Context(), storage.Packs, "c.pack")
		if err != nil {
			t.Fatal(err)
		}
		writePieces(t, w, testData(8, 5000))
		wantErr(t, "Commit with a canceled ctx", w.Commit(canceled), context.Canceled)
		wantAbsent(t, s, storage.Packs, "c.pack")
		if err := w.Abort(); err != nil {
			t.Errorf("Abort after a failed Commit: %v", err)
		}
	})
	t.Run("writer outlives its ctx", func(t *testing.T) {
		s := o(t)
		ctx, cancel := context.WithCancel(t.Context())
		w, err := s.Create(ctx, storage.Packs, "c.pack")
		if err != nil {
			t.Fatal(err)
		}
		writePieces(t, w, testData(9, 100))
		cancel()
		_, err = w.Write([]byte("more"))
		wantErr(t, "Write after Create's ctx is canceled", err, context.Canceled)
		wantErr(t, "Commit after Create's ctx is canceled", w.Commit(t.Context()), context.Canceled)
		wantAbsent(t, s, storage.Packs, "c.pack")
	})
}

func testClosed(t *testing.T, o open) {
	s := o(t)
	mustPut(t, s, storage.Points, "p", []byte("x"))
	w, err := s.Create(t.Context(), storage.Packs, "open.pack")
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Abort(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for _, c := range calls() {
		err := c.do(t.Context(), s, storage.Points, "p")
		if !errors.Is(err, storage.ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", c.name, err)
		}
	}
}

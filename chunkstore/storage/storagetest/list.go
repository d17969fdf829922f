package storagetest

import (
	"errors"
	"maps"
	"testing"

	"github.com/cairn-backup/cairn/chunkstore/storage"
)

func testList(t *testing.T, o open) {
	t.Run("by kind", func(t *testing.T) {
		s := o(t)
		want := map[storage.Kind]map[string]int64{
			storage.Config:   {"cairn.json": 3, "shared": 1},
			storage.Packs:    {"1a2b.pack": 10, "1a3c.pack": 20, "ff00.pack": 0, "shared": 2, "x": 5},
			storage.Points:   {"web01@20261121T100000Z": 7, "shared": 3},
			storage.Policies: {},
		}
		for kind, objs := range want {
			for name, size := range objs {
				mustPut(t, s, kind, name, testData(uint64(size), int(size)))
			}
		}
		w, err := s.Create(t.Context(), storage.Packs, "open.pack")
		if err != nil {
			t.Fatal(err)
		}
		defer w.Abort()
		writePieces(t, w, []byte("uncommitted"))
		for kind, objs := range want {
			if got := listed(t, s, kind); !maps.Equal(got, objs) {
				t.Errorf("List %s = %v, want %v", kind, got, objs)
			}
		}
	})
	t.Run("after delete", func(t *testing.T) {
		s := o(t)
		mustPut(t, s, storage.Points, "a", []byte("1"))
		mustPut(t, s, storage.Points, "b", []byte("22"))
		if err := s.Delete(t.Context(), storage.Points, "a"); err != nil {
			t.Fatal(err)
		}
		if got := listed(t, s, storage.Points); !maps.Equal(got, map[string]int64{"b": 2}) {
			t.Errorf("List = %v, want only b", got)
		}
	})
	t.Run("empty", func(t *testing.T) {
		s := o(t)
		for _, kind := range storage.Kinds() {
			if got := listed(t, s, kind); len(got) != 0 {
				t.Errorf("List %s of a new storage = %v", kind, got)
			}
		}
	})
	t.Run("callback error stops", func(t *testing.T) {
		s := o(t)
		for _, name := range []string{"a", "b", "c"} {
			mustPut(t, s, storage.Policies, name, nil)
		}
		calls := 0
		err := s.List(t.Context(), storage.Policies, func(storage.ObjectInfo) error {
			calls++
			return errStop
		})
		if !errors.Is(err, errStop) || calls != 1 {
			t.Errorf("List = %v after %d calls, want the callback's error after 1", err, calls)
		}
	})
}

// errStop is what a List callback returns to stop the listing.
var errStop = errors.New("stop listing")

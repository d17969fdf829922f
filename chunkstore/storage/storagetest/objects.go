package storagetest

import (
	"testing"

	"github.com/cairn-backup/cairn/chunkstore/storage"
)

type open = func(*testing.T) storage.Storage

func testPutGet(t *testing.T, o open) {
	for _, c := range []struct {
		name string
		kind storage.Kind
		size int
	}{
		{"empty", storage.Config, 0},
		{"small", storage.Points, 100},
		{"16MiB", storage.Packs, 16 << 20},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := o(t)
			want := testData(uint64(c.size), c.size)
			mustPut(t, s, c.kind, "obj-"+c.name, want)
			wantContent(t, s, c.kind, "obj-"+c.name, want)
		})
	}
}

func testPutReplaces(t *testing.T, o open) {
	s := o(t)
	mustPut(t, s, storage.Config, "cairn.json", testData(1, 1000))
	want := testData(2, 10) // shorter: no tail of the old object may stay
	mustPut(t, s, storage.Config, "cairn.json", want)
	wantContent(t, s, storage.Config, "cairn.json", want)
	if got := listed(t, s, storage.Config); len(got) != 1 || got["cairn.json"] != 10 {
		t.Errorf("List after replacing: %v", got)
	}
}

// testPutGetCopy checks that Put keeps no reference to the caller's slice
// and that Get returns one the caller owns.
func testPutGetCopy(t *testing.T, o open) {
	s := o(t)
	data := testData(3, 64)
	want := append([]byte(nil), data...)
	mustPut(t, s, storage.Points, "p", data)
	data[0] ^= 0xff
	got, err := s.Get(t.Context(), storage.Points, "p")
	if err != nil {
		t.Fatal(err)
	}
	got[1] ^= 0xff
	wantContent(t, s, storage.Points, "p", want)
}

func testMissing(t *testing.T, o open) {
	s := o(t)
	mustPut(t, s, storage.Packs, "present.pack", []byte("x"))
	for _, kind := range storage.Kinds() {
		for _, name := range []string{"absent.pack", "ab", "x"} {
			wantAbsent(t, s, kind, name)
		}
	}
}

func testDelete(t *testing.T, o open) {
	t.Run("committed", func(t *testing.T) {
		s := o(t)
		mustPut(t, s, storage.Packs, "aa.pack", []byte("pack"))
		mustPut(t, s, storage.Points, "aa.pack", []byte("same name, other kind"))
		mustCreate(t, s, storage.Packs, "ab.pack", testData(4, 1<<16))
		for _, name := range []string{"aa.pack", "ab.pack"} {
			if err := s.Delete(t.Context(), storage.Packs, name); err != nil {
				t.Fatalf("Delete %s: %v", name, err)
			}
			wantAbsent(t, s, storage.Packs, name)
		}
		wantContent(t, s, storage.Points, "aa.pack", []byte("same name, other kind"))
	})
	t.Run("missing", func(t *testing.T) {
		s := o(t)
		for _, kind := range storage.Kinds() {
			if err := s.Delete(t.Context(), kind, "never-there"); err != nil {
				t.Errorf("Delete of a missing %s object: %v, want nil", kind, err)
			}
		}
	})
	t.Run("twice", func(t *testing.T) {
		s := o(t)
		mustPut(t, s, storage.Policies, "daily", []byte("{}"))
		for i := range 2 {
			if err := s.Delete(t.Context(), storage.Policies, "daily"); err != nil {
				t.Fatalf("Delete #%d: %v", i+1, err)
			}
		}
		wantAbsent(t, s, storage.Policies, "daily")
	})
	t.Run("then put again", func(t *testing.T) {
		s := o(t)
		mustPut(t, s, storage.Points, "web01@20261121T100000Z", []byte("old"))
		if err := s.Delete(t.Context(), storage.Points, "web01@20261121T100000Z"); err != nil {
			t.Fatal(err)
		}
		mustPut(t, s, storage.Points, "web01@20261121T100000Z", []byte("new"))
		wantContent(t, s, storage.Points, "web01@20261121T100000Z", []byte("new"))
	})
}

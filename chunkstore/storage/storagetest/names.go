package storagetest

import (
	"context"
	"errors"
	"maps"
	"strings"
	"testing"

	"github.com/cairn-backup/cairn/chunkstore/storage"
)

// call is one Storage call made on an object, for the tables that check
// that every call refuses the same thing.
type call struct {
	name string
	do   func(ctx context.Context, s storage.Storage, kind storage.Kind, name string) error
}

// calls returns every call on a named object, and List (which ignores
// the name).
func calls() []call {
	return []call{
		{"Put", func(ctx context.Context, s storage.Storage, kind storage.Kind, name string) error {
			return s.Put(ctx, kind, name, []byte("x"))
		}},
		{"Create", func(ctx context.Context, s storage.Storage, kind storage.Kind, name string) error {
			w, err := s.Create(ctx, kind, name)
			if err == nil {
				w.Abort()
			}
			return err
		}},
		{"Get", func(ctx context.Context, s storage.Storage, kind storage.Kind, name string) error {
			_, err := s.Get(ctx, kind, name)
			return err
		}},
		{"ReadAt", func(ctx context.Context, s storage.Storage, kind storage.Kind, name string) error {
			return s.ReadAt(ctx, kind, name, make([]byte, 1), 0)
		}},
		{"Stat", func(ctx context.Context, s storage.Storage, kind storage.Kind, name string) error {
			_, err := s.Stat(ctx, kind, name)
			return err
		}},
		{"Delete", func(ctx context.Context, s storage.Storage, kind storage.Kind, name string) error {
			return s.Delete(ctx, kind, name)
		}},
		{"List", func(ctx context.Context, s storage.Storage, kind storage.Kind, name string) error {
			return s.List(ctx, kind, func(storage.ObjectInfo) error { return nil })
		}},
	}
}

func testNames(t *testing.T, o open) {
	t.Run("invalid", func(t *testing.T) {
		s := o(t)
		// An object under each name that strips or cleans to something
		// valid, so that a backend which cleans instead of refusing is
		// caught reading it.
		for _, n := range []string{"a", "b", "ab", "a.b", "x", "hidden", "x.pack"} {
			mustPut(t, s, storage.Packs, n, []byte("there"))
		}
		for _, name := range []string{
			"", ".", "..", ".hidden", "a/b", "/a", "a/", "../a", `a\b`, "a b", " a", "a\x00b", "a\nb",
			"ä", "a:b", "a*b", "a?b", "a%2fb", "x.tmp", "x.pack.tmp", strings.Repeat("a", storage.MaxNameLen+1),
		} {
			for _, c := range calls() {
				if c.name == "List" {
					continue
				}
				err := c.do(t.Context(), s, storage.Packs, name)
				if !errors.Is(err, storage.ErrInvalidName) {
					t.Errorf("%s %q: %v, want ErrInvalidName", c.name, name, err)
				}
			}
		}
		want := map[string]int64{"a": 5, "b": 5, "ab": 5, "a.b": 5, "x": 5, "hidden": 5, "x.pack": 5}
		if got := listed(t, s, storage.Packs); !maps.Equal(got, want) {
			t.Errorf("List after refused calls = %v, want %v", got, want)
		}
	})
	t.Run("valid", func(t *testing.T) {
		s := o(t)
		for _, name := range []string{
			"x", "ab", "cairn.json", "0123456789abcdef0123456789abcdef.pack", "web01@20261121T100000Z",
			"A-Z_a-z.0-9@x", "a..b", "-", "_", "@", "tmp", "x.tmpx", strings.Repeat("a", storage.MaxNameLen),
		} {
			for _, kind := range storage.Kinds() {
				data := []byte(string(kind) + "/" + name)
				mustPut(t, s, kind, name, data)
				wantContent(t, s, kind, name, data)
				if got, ok := listed(t, s, kind)[name]; !ok || got != int64(len(data)) {
					t.Errorf("List %s does not report %q", kind, name)
				}
				if err := s.Delete(t.Context(), kind, name); err != nil {
					t.Fatalf("Delete %s %q: %v", kind, name, err)
				}
				wantAbsent(t, s, kind, name)
			}
		}
	})
}

func testKinds(t *testing.T, o open) {
	s := o(t)
	mustPut(t, s, storage.Packs, "x", []byte("there"))
	for _, kind := range []storage.Kind{"", "index", "Packs", "pack", "packs/", "../packs", "keys"} {
		for _, c := range calls() {
			err := c.do(t.Context(), s, kind, "x")
			if !errors.Is(err, storage.ErrInvalidName) {
				t.Errorf("%s of kind %q: %v, want ErrInvalidName", c.name, kind, err)
			}
		}
	}
	wantContent(t, s, storage.Packs, "x", []byte("there"))
}

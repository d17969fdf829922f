package storagetest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/cairn-backup/cairn/chunkstore/storage"
)

// Run runs the whole suite against the backend that open returns. open is
// called once per subtest and must return a new, empty storage; the suite
// closes it.
func Run(t *testing.T, open func(t *testing.T) storage.Storage) {
	o := func(t *testing.T) storage.Storage {
		t.Helper()
		s := open(t)
		t.Cleanup(func() {
			if err := s.Close(); err != nil && !errors.Is(err, storage.ErrClosed) {
				t.Errorf("Close: %v", err)
			}
		})
		return s
	}
	for _, c := range []struct {
		name string
		test func(*testing.T, func(*testing.T) storage.Storage)
	}{
		{"PutGet", testPutGet},
		{"PutReplaces", testPutReplaces},
		{"PutGetCopy", testPutGetCopy},
		{"Missing", testMissing},
		{"ReadAt", testReadAt},
		{"Writer", testWriter},
		{"List", testList},
		{"Delete", testDelete},
		{"Names", testNames},
		{"Kinds", testKinds},
		{"Canceled", testCanceled},
		{"Closed", testClosed},
		{"Concurrent", testConcurrent},
	} {
		t.Run(c.name, func(t *testing.T) { c.test(t, o) })
	}
}

// testData returns n reproducible pseudo-random bytes.
func testData(seed uint64, n int) []byte {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	b := make([]byte, n)
	rand.NewChaCha8(key).Read(b)
	return b
}

func mustPut(t *testing.T, s storage.Storage, kind storage.Kind, name string, data []byte) {
	t.Helper()
	if err := s.Put(t.Context(), kind, name, data); err != nil {
		t.Fatalf("Put %s %s: %v", kind, name, err)
	}
}

// mustCreate streams data into a new object, in uneven pieces, and
// commits it.
func mustCreate(t *testing.T, s storage.Storage, kind storage.Kind, name string, data []byte) {
	t.Helper()
	w, err := s.Create(t.Context(), kind, name)
	if err != nil {
		t.Fatalf("Create %s %s: %v", kind, name, err)
	}
	writePieces(t, w, data)
	if err := w.Commit(t.Context()); err != nil {
		t.Fatalf("Commit %s %s: %v", kind, name, err)
	}
}

// writePieces writes data to w in pieces of growing sizes, so a backend
// that buffers is tested across its buffer's edges.
func writePieces(t *testing.T, w storage.Writer, data []byte) {
	t.Helper()
	for n := 1; len(data) > 0; n = n*7 + 3 {
		k := min(n, len(data))
		if m, err := w.Write(data[:k]); err != nil || m != k {
			t.Fatalf("Write %d bytes: wrote %d, %v", k, m, err)
		}
		data = data[k:]
	}
}

// wantContent checks that an object reads back as want through Get, Stat
// and ReadAt.
func wantContent(t *testing.T, s storage.Storage, kind storage.Kind, name string, want []byte) {
	t.Helper()
	got, err := s.Get(t.Context(), kind, name)
	if err != nil {
		t.Fatalf("Get %s %s: %v", kind, name, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("Get %s %s: %d bytes, not the %d stored (first difference at %d)", kind, name, len(got), len(want), firstDiff(got, want))
	}
	info, err := s.Stat(t.Context(), kind, name)
	if err != nil {
		t.Fatalf("Stat %s %s: %v", kind, name, err)
	}
	if info != (storage.ObjectInfo{Kind: kind, Name: name, Size: int64(len(want))}) {
		t.Fatalf("Stat %s %s = %+v, want size %d", kind, name, info, len(want))
	}
	buf := make([]byte, len(want))
	if err := s.ReadAt(t.Context(), kind, name, buf, 0); err != nil {
		t.Fatalf("ReadAt %s %s whole: %v", kind, name, err)
	}
	if !bytes.Equal(buf, want) {
		t.Fatalf("ReadAt %s %s whole: differs at %d", kind, name, firstDiff(buf, want))
	}
}

// wantAbsent checks that an object is not there for Get, ReadAt, Stat and
// List.
func wantAbsent(t *testing.T, s storage.Storage, kind storage.Kind, name string) {
	t.Helper()
	_, err := s.Get(t.Context(), kind, name)
	wantNotExist(t, "Get", err)
	err = s.ReadAt(t.Context(), kind, name, make([]byte, 1), 0)
	wantNotExist(t, "ReadAt", err)
	_, err = s.Stat(t.Context(), kind, name)
	wantNotExist(t, "Stat", err)
	if _, ok := listed(t, s, kind)[name]; ok {
		t.Fatalf("List %s reports absent %s", kind, name)
	}
}

func wantNotExist(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, storage.ErrNotExist) {
		t.Fatalf("%s of a missing object: %v, want ErrNotExist", what, err)
	}
}

// wantErr checks that err wraps target.
func wantErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Errorf("%s: %v, want an error wrapping %q", what, err, target)
	}
}

// listed returns the sizes of the objects List reports for kind, failing
// on a name reported twice or of another kind.
func listed(t *testing.T, s storage.Storage, kind storage.Kind) map[string]int64 {
	t.Helper()
	m := map[string]int64{}
	err := s.List(t.Context(), kind, func(info storage.ObjectInfo) error {
		if info.Kind != kind {
			t.Errorf("List %s reports %+v", kind, info)
		}
		if _, ok := m[info.Name]; ok {
			t.Errorf("List %s reports %s twice", kind, info.Name)
		}
		m[info.Name] = info.Size
		return nil
	})
	if err != nil {
		t.Fatalf("List %s: %v", kind, err)
	}
	return m
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

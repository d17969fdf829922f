package storage_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/chunkstore/storage"
)

// backends returns the storages a Faulty is tested over, by name.
func backends() map[string]func(t *testing.T) storage.Storage {
	return map[string]func(t *testing.T) storage.Storage{
		"Mem": func(t *testing.T) storage.Storage { return storage.NewMem() },
		"Dir": func(t *testing.T) storage.Storage { return newDir(t) },
	}
}

// newFaulty returns a Faulty over a new storage holding pack "a.pack"
// ("pack bytes") and point "p".
func newFaulty(t *testing.T, open func(t *testing.T) storage.Storage) *storage.Faulty {
	t.Helper()
	f := storage.NewFaulty(open(t))
	t.Cleanup(func() { f.Close() })
	for _, o := range []struct {
		kind storage.Kind
		name string
	}{{storage.Packs, "a.pack"}, {storage.Points, "p"}} {
		if err := f.Put(t.Context(), o.kind, o.name, []byte("pack bytes")); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// doOp makes one call of op on object kind/name; for Write and Commit it
// makes the writer first (and writes, before Commit).
func doOp(ctx context.Context, s storage.Storage, op storage.Op, kind storage.Kind, name string) error {
	switch op {
	case storage.OpPut:
		return s.Put(ctx, kind, name, []byte("new"))
	case storage.OpGet:
		_, err := s.Get(ctx, kind, name)
		return err
	case storage.OpReadAt:
		return s.ReadAt(ctx, kind, name, make([]byte, 4), 0)
	case storage.OpStat:
		_, err := s.Stat(ctx, kind, name)
		return err
	case storage.OpList:
		return s.List(ctx, kind, func(storage.ObjectInfo) error { return nil })
	case storage.OpDelete:
		return s.Delete(ctx, kind, name)
	}
	w, err := s.Create(ctx, kind, name)
	if err != nil {
		return err
	}
	defer w.Abort()
	if op == storage.OpCreate {
		return nil
	}
	if _, err := w.Write([]byte("new")); err != nil || op == storage.OpWrite {
		return err
	}
	return w.Commit(ctx)
}

var allOps = []storage.Op{
	storage.OpPut, storage.OpCreate, storage.OpWrite, storage.OpCommit, storage.OpGet,
	storage.OpReadAt, storage.OpStat, storage.OpList, storage.OpDelete,
}

// TestFaultyErr fails each op in turn and checks that only calls of that
// op fail, with the injected error.
func TestFaultyErr(t *testing.T) {
	for _, op := range allOps {
		t.Run(string(op), func(t *testing.T) {
			for _, other := range allOps {
				f := newFaulty(t, backends()["Mem"])
				f.Add(storage.Rule{Op: op, Fault: storage.FaultErr(syscall.EIO)})
				err := doOp(t.Context(), f, other, storage.Packs, "a.pack")
				fails := other == op ||
					op == storage.OpWrite && other == storage.OpCommit || // Commit writes first
					op == storage.OpCreate && (other == storage.OpWrite || other == storage.OpCommit)
				if fails && !errors.Is(err, syscall.EIO) {
					t.Errorf("%s with a rule failing %s: %v, want EIO", other, op, err)
				}
				if !fails && err != nil {
					t.Errorf("%s with a rule failing %s: %v", other, op, err)
				}
			}
		})
	}
}

func TestFaultyErrKinds(t *testing.T) {
	f := newFaulty(t, backends()["Mem"])
	id := f.Add(storage.Rule{Op: storage.OpGet})
	_, err := f.Get(t.Context(), storage.Packs, "a.pack")
	if !errors.Is(err, syscall.EIO) {
		t.Errorf("zero Fault: %v, want EIO", err)
	}
	f.Remove(id)
	f.Add(storage.Rule{Op: storage.OpPut, Fault: storage.FaultErr(syscall.ENOSPC)})
	err = f.Put(t.Context(), storage.Points, "p", []byte("new"))
	if !errors.Is(err, storage.ErrNoSpace) || !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("injected ENOSPC: %v, want ErrNoSpace and ENOSPC", err)
	}
	if got, _ := f.Get(t.Context(), storage.Points, "p"); string(got) != "pack bytes" {
		t.Errorf("a failed Put changed the object: %q", got)
	}
}

func TestFaultyMatch(t *testing.T) {
	f := newFaulty(t, backends()["Mem"])
	if err := f.Put(t.Context(), storage.Packs, "a.idx", nil); err != nil {
		t.Fatal(err)
	}
	f.Add(storage.Rule{Kind: storage.Packs, Name: "*.pack"})
	for _, c := range []struct {
		op   storage.Op
		kind storage.Kind
		name string
		fail bool
	}{
		{storage.OpGet, storage.Packs, "a.pack", true},
		{storage.OpStat, storage.Packs, "a.pack", true},
		{storage.OpGet, storage.Packs, "a.idx", false},
		{storage.OpGet, storage.Points, "p", false},
		{storage.OpList, storage.Packs, "", false}, // a name pattern never matches List
	} {
		if err := doOp(t.Context(), f, c.op, c.kind, c.name); (err != nil) != c.fail {
			t.Errorf("%s %s %s: %v, want failing %v", c.op, c.kind, c.name, err, c.fail)
		}
	}
}

func TestFaultySkipTimes(t *testing.T) {
	for _, c := range []struct {
		name        string
		skip, times int
		want        []bool // whether call i fails
	}{
		{"forever", 0, 0, []bool{true, true, true, true}},
		{"once", 0, 1, []bool{true, false, false, false}},
		{"skip 2 then once", 2, 1, []bool{false, false, true, false}},
		{"skip 1 then forever", 1, 0, []bool{false, true, true, true}},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFaulty(t, backends()["Mem"])
			id := f.Add(storage.Rule{Op: storage.OpGet, Skip: c.skip, Times: c.times})
			var got []bool
			for range c.want {
				_, err := f.Get(t.Context(), storage.Packs, "a.pack")
				got = append(got, err != nil)
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("failing calls %v, want %v", got, c.want)
			}
			fired := 0
			for _, w := range c.want {
				if w {
					fired++
				}
			}
			if f.Fired(id) != fired {
				t.Errorf("Fired = %d, want %d", f.Fired(id), fired)
			}
		})
	}
}

// TestFaultyOrder checks that the first rule that fires decides, and that
// removing rules restores the wrapped storage.
func TestFaultyOrder(t *testing.T) {
	f := newFaulty(t, backends()["Mem"])
	a := f.Add(storage.Rule{Op: storage.OpGet, Times: 1, Fault: storage.FaultErr(syscall.EIO)})
	b := f.Add(storage.Rule{Op: storage.OpGet, Fault: storage.FaultErr(syscall.EACCES)})
	get := func() error { _, err := f.Get(t.Context(), storage.Packs, "a.pack"); return err }
	if err := get(); !errors.Is(err, syscall.EIO) {
		t.Errorf("first call: %v, want the first rule's EIO", err)
	}
	if err := get(); !errors.Is(err, syscall.EACCES) {
		t.Errorf("second call: %v, want the second rule's EACCES", err)
	}
	f.Remove(b)
	f.Remove(a)
	if err := get(); err != nil {
		t.Errorf("after Remove: %v", err)
	}
	f.Add(storage.Rule{})
	f.Clear()
	if err := get(); err != nil {
		t.Errorf("after Clear: %v", err)
	}
}

// TestFaultyShortWrite checks that a short write passes on part of p,
// fails, and leaves nothing visible once the writer is aborted, as a
// caller does on a failed Write.
func TestFaultyShortWrite(t *testing.T) {
	for name, open := range backends() {
		t.Run(name, func(t *testing.T) {
			f := newFaulty(t, open)
			ctx := t.Context()
			f.Add(storage.Rule{Op: storage.OpWrite, Skip: 1, Times: 1, Fault: storage.FaultShortWrite(10, syscall.ENOSPC)})
			w, err := f.Create(ctx, storage.Packs, "b.pack")
			if err != nil {
				t.Fatal(err)
			}
			if n, err := w.Write(bytes.Repeat([]byte("1"), 5)); n != 5 || err != nil {
				t.Fatalf("first Write = %d, %v", n, err)
			}
			n, err := w.Write(bytes.Repeat([]byte("2"), 100))
			if n != 10 || !errors.Is(err, syscall.ENOSPC) || !errors.Is(err, storage.ErrNoSpace) {
				t.Fatalf("short Write = %d, %v; want 10, ENOSPC", n, err)
			}
			if err := w.Abort(); err != nil {
				t.Fatal(err)
			}
			wantNothingNew(t, f, storage.Packs, "b.pack")

			// The bytes a short write reports are the bytes written.
			w, err = f.Create(ctx, storage.Packs, "c.pack")
			if err != nil {
				t.Fatal(err)
			}
			f.Add(storage.Rule{Op: storage.OpWrite, Times: 1, Fault: storage.FaultShortWrite(1000, nil)})
			n, err = w.Write([]byte("abc"))
			if n != 2 || !errors.Is(err, io.ErrShortWrite) {
				t.Fatalf("short Write of 3 bytes = %d, %v; want 2 (never all), io.ErrShortWrite", n, err)
			}
			w.Write([]byte("c"))
			if err := w.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			if got, err := f.Get(ctx, storage.Packs, "c.pack"); string(got) != "abc" {
				t.Errorf("object = %q, %v; want the 2 bytes written, then the retried 1", got, err)
			}
		})
	}
}

func TestFaultyShortPut(t *testing.T) {
	for name, open := range backends() {
		t.Run(name, func(t *testing.T) {
			f := newFaulty(t, open)
			f.Add(storage.Rule{Op: storage.OpPut, Fault: storage.FaultShortWrite(3, syscall.ENOSPC)})
			if err := f.Put(t.Context(), storage.Points, "p", []byte("replacement")); !errors.Is(err, syscall.ENOSPC) {
				t.Errorf("Put: %v, want ENOSPC", err)
			}
			if err := f.Put(t.Context(), storage.Points, "q", []byte("new")); !errors.Is(err, syscall.ENOSPC) {
				t.Errorf("Put: %v, want ENOSPC", err)
			}
			f.Clear()
			if got, err := f.Get(t.Context(), storage.Points, "p"); string(got) != "pack bytes" {
				t.Errorf("replaced object = %q, %v; want the old one whole", got, err)
			}
			wantNothingNew(t, f, storage.Points, "q")
		})
	}
}

// TestFaultyCommit checks a failed commit: nothing becomes visible, not
// even a temporary, and Abort after it is a no-op.
func TestFaultyCommit(t *testing.T) {
	for name, open := range backends() {
		t.Run(name, func(t *testing.T) {
			f := newFaulty(t, open)
			f.Add(storage.Rule{Op: storage.OpCommit, Kind: storage.Packs, Fault: storage.FaultErr(syscall.EIO)})
			w, err := f.Create(t.Context(), storage.Packs, "b.pack")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.Write([]byte("all of it")); err != nil {
				t.Fatal(err)
			}
			if err := w.Commit(t.Context()); !errors.Is(err, syscall.EIO) {
				t.Fatalf("Commit: %v, want EIO", err)
			}
			if err := w.Abort(); err != nil {
				t.Errorf("Abort after a failed Commit: %v", err)
			}
			wantNothingNew(t, f, storage.Packs, "b.pack")
		})
	}
}

// wantNothingNew checks that the vault shows no trace of object name:
// not readable, not listed, and (for a directory) no file left, not even
// a temporary.
func wantNothingNew(t *testing.T, f *storage.Faulty, kind storage.Kind, name string) {
	t.Helper()
	if _, err := f.Stat(t.Context(), kind, name); !errors.Is(err, storage.ErrNotExist) {
		t.Errorf("Stat %s: %v, want ErrNotExist", name, err)
	}
	if slices.Contains(listNames(t, f, kind), name) {
		t.Errorf("List %s reports %s", kind, name)
	}
	if d, ok := f.Unwrap().(*storage.Dir); ok {
		if n, err := d.CleanTemp(t.Context()); n != 0 || err != nil {
			t.Errorf("CleanTemp = %d, %v: a temporary was left behind", n, err)
		}
	}
}

func TestFaultyDelay(t *testing.T) {
	const d = 30 * time.Millisecond
	t.Run("slow", func(t *testing.T) {
		f := newFaulty(t, backends()["Mem"])
		f.Add(storage.Rule{Op: storage.OpGet, Fault: storage.FaultDelay(d)})
		start := time.Now()
		got, err := f.Get(t.Context(), storage.Packs, "a.pack")
		if err != nil || string(got) != "pack bytes" {
			t.Errorf("delayed Get = %q, %v", got, err)
		}
		if took := time.Since(start); took < d {
			t.Errorf("delayed Get took %v, want at least %v", took, d)
		}
	})
	t.Run("canceled", func(t *testing.T) {
		f := newFaulty(t, backends()["Mem"])
		f.Add(storage.Rule{Fault: storage.FaultDelay(time.Hour)})
		ctx, cancel := context.WithTimeout(t.Context(), d)
		defer cancel()
		if err := f.Put(ctx, storage.Points, "q", []byte("late")); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Put delayed past its ctx: %v, want DeadlineExceeded", err)
		}
		f.Clear()
		wantNothingNew(t, f, storage.Points, "q")
	})
	t.Run("write honours Create's ctx", func(t *testing.T) {
		f := newFaulty(t, backends()["Mem"])
		ctx, cancel := context.WithCancel(t.Context())
		w, err := f.Create(ctx, storage.Packs, "b.pack")
		if err != nil {
			t.Fatal(err)
		}
		defer w.Abort()
		f.Add(storage.Rule{Op: storage.OpWrite, Fault: storage.FaultDelay(time.Hour)})
		time.AfterFunc(d, cancel)
		if _, err := w.Write([]byte("x")); !errors.Is(err, context.Canceled) {
			t.Errorf("delayed Write: %v, want Canceled", err)
		}
	})
}

func TestFaultyCalls(t *testing.T) {
	f := newFaulty(t, backends()["Mem"]) // 2 puts
	f.Add(storage.Rule{Op: storage.OpGet, Times: 1})
	for range 3 {
		f.Get(t.Context(), storage.Packs, "a.pack")
	}
	if err := doOp(t.Context(), f, storage.OpCommit, storage.Packs, "b.pack"); err != nil { // create, write, commit
		t.Fatal(err)
	}
	for op, want := range map[storage.Op]int{
		storage.OpPut: 2, storage.OpGet: 3, storage.OpCreate: 1, storage.OpWrite: 1,
		storage.OpCommit: 1, storage.OpList: 0, storage.AnyOp: 8,
	} {
		if got := f.Calls(op); got != want {
			t.Errorf("Calls(%q) = %d, want %d", op, got, want)
		}
	}
}

// TestFaultyRulesWhileInUse adds and removes rules while calls run (for
// -race): every call either succeeds or fails with the injected error.
func TestFaultyRulesWhileInUse(t *testing.T) {
	f := newFaulty(t, backends()["Mem"])
	ctx := t.Context()
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 200 {
				_, err := f.Get(ctx, storage.Packs, "a.pack")
				if err != nil && !errors.Is(err, syscall.EIO) {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Go(func() {
		for range 100 {
			id := f.Add(storage.Rule{Op: storage.OpGet, Times: 2})
			f.Fired(id)
			f.Remove(id)
		}
	})
	wg.Wait()
}

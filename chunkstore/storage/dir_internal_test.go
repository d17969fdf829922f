package storage

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
)

func TestWriteErrorNoSpace(t *testing.T) {
	for _, errno := range []syscall.Errno{syscall.ENOSPC, syscall.EDQUOT} {
		t.Run(errno.Error(), func(t *testing.T) {
			cause := &fs.PathError{Op: "write", Path: "/vault/packs/1a/1a2b.pack.1.tmp", Err: errno}
			err := writeError(Packs, "1a2b.pack", cause)
			for _, target := range []error{ErrNoSpace, errno} {
				if !errors.Is(err, target) {
					t.Errorf("%v does not wrap %v", err, target)
				}
			}
			want := "pack 1a2b.pack: storage is full: write /vault/packs/1a/1a2b.pack.1.tmp: " + errno.Error()
			if err.Error() != want {
				t.Errorf("message %q, want %q", err, want)
			}
		})
	}
	if err := writeError(Packs, "x", syscall.EIO); errors.Is(err, ErrNoSpace) {
		t.Errorf("EIO became %v", err)
	}
}

func TestReadErrorNotExist(t *testing.T) {
	err := readError(Points, "p", &fs.PathError{Op: "open", Path: "/vault/points/p", Err: syscall.ENOENT})
	if !errors.Is(err, ErrNotExist) || err.Error() != "point p: object does not exist" {
		t.Errorf("ENOENT became %q", err)
	}
	// A write's ENOENT is a missing directory, no missing object.
	err = writeError(Points, "p", &fs.PathError{Op: "open", Path: "/vault/points/p", Err: syscall.ENOENT})
	if errors.Is(err, ErrNotExist) {
		t.Errorf("a write's ENOENT became %q", err)
	}
}

// testPacks returns a Dir with n packs of 100 bytes each (pack i holds
// byte i) and a cache of max handles.
func testPacks(t *testing.T, n, max int) (*Dir, []string) {
	t.Helper()
	d, err := NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	d.files = newOpenFiles(max)
	var names []string
	for i := range n {
		name := fmt.Sprintf("%02x.pack", i)
		if err := d.Put(t.Context(), Packs, name, bytes.Repeat([]byte{byte(i)}, 100)); err != nil {
			t.Fatal(err)
		}
		names = append(names, name)
	}
	return d, names
}

func TestOpenFilesEviction(t *testing.T) {
	d, names := testPacks(t, 3, 2)
	p := make([]byte, 10)
	for _, name := range names {
		if err := d.ReadAt(t.Context(), Packs, name, p, 0); err != nil {
			t.Fatal(err)
		}
	}
	for i, name := range names {
		if got, want := d.files.cached(Packs, name), i > 0; got != want {
			t.Errorf("%s cached = %v, want %v (least recently used goes first)", name, got, want)
		}
	}
}

// TestOpenFilesEvictedInUse checks that a handle evicted, dropped or
// closed while a reader holds it stays open until that reader is done.
func TestOpenFilesEvictedInUse(t *testing.T) {
	for _, c := range []struct {
		name string
		out  func(d *Dir, names []string)
	}{
		{"evicted", func(d *Dir, names []string) {
			for _, n := range names[1:] {
				of, err := d.files.acquire(objectKey{Packs, n}, d.path(Packs, n))
				if err != nil {
					t.Fatal(err)
				}
				d.files.release(of)
			}
		}},
		{"dropped", func(d *Dir, names []string) { d.files.drop(Packs, names[0]) }},
		{"closed", func(d *Dir, names []string) { d.Close() }},
	} {
		t.Run(c.name, func(t *testing.T) {
			d, names := testPacks(t, 3, 2)
			of, err := d.files.acquire(objectKey{Packs, names[0]}, d.path(Packs, names[0]))
			if err != nil {
				t.Fatal(err)
			}
			c.out(d, names)
			if d.files.cached(Packs, names[0]) {
				t.Fatal("still cached")
			}
			if _, err := of.f.ReadAt(make([]byte, 1), 0); err != nil {
				t.Fatalf("read from a held handle: %v", err)
			}
			d.files.release(of)
			if _, err := of.f.ReadAt(make([]byte, 1), 0); !errors.Is(err, os.ErrClosed) {
				t.Fatalf("read after the last release: %v, want the handle closed", err)
			}
		})
	}
}

// TestOpenFilesConcurrent reads more packs than the cache holds from many
// goroutines, with deletes and replacements among them (run with -race).
func TestOpenFilesConcurrent(t *testing.T) {
	d, names := testPacks(t, 6, 3)
	ctx := t.Context()
	var wg sync.WaitGroup
	for g := range 6 {
		wg.Go(func() {
			p := make([]byte, 50)
			for i := range 200 {
				k := (g + i) % len(names)
				if k == 5 {
					continue // the churned one
				}
				if err := d.ReadAt(ctx, Packs, names[k], p, int64(i%50)); err != nil {
					t.Error(err)
					return
				}
				if p[0] != byte(k) || p[49] != byte(k) {
					t.Errorf("%s read as %d", names[k], p[0])
					return
				}
			}
		})
	}
	wg.Go(func() {
		p := make([]byte, 1)
		for i := range 20 {
			if err := d.Put(ctx, Packs, names[5], bytes.Repeat([]byte{byte(i)}, 100)); err != nil {
				t.Error(err)
				return
			}
			if err := d.ReadAt(ctx, Packs, names[5], p, 0); err != nil || p[0] != byte(i) {
				t.Errorf("ReadAt after Put #%d: %d, %v", i, p[0], err)
				return
			}
			if err := d.Delete(ctx, Packs, names[5]); err != nil {
				t.Error(err)
				return
			}
		}
	})
	wg.Wait()
}

// TestIsTemp checks which files CleanTemp may remove: this package's and
// older cairns' temporaries, and nothing else.
func TestIsTemp(t *testing.T) {
	for name, want := range map[string]bool{
		"cairn.json.tmp":                      true,
		"1a2b.pack.tmp":                       true,
		"1a2b.pack.1234567.tmp":               true,
		"cairn.json":                          false,
		"x.tmp.tmp":                           false,
		".swap.tmp":                           false,
		"a b.tmp":                             false,
		".tmp":                                false,
		strings.Repeat("a", 200) + ".tmp":     true,
		strings.Repeat("a", 200) + ".123.tmp": true,
		strings.Repeat("a", 200) + ".12x.tmp": false,
		strings.Repeat("a", 200) + "..tmp":    false,
	} {
		if got := isTemp(name); got != want {
			t.Errorf("isTemp(%q) = %v, want %v", name, got, want)
		}
	}
	// Every temporary Dir writes is one.
	d, err := NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	w, err := d.create(t.Context(), Packs, strings.Repeat("a", MaxNameLen))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	if base := filepath.Base(w.f.Name()); !isTemp(base) || len(base) > 255 {
		t.Errorf("temporary %q: isTemp %v, %d bytes", base, isTemp(base), len(base))
	}
}

package main

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// A temporary file left by a killed run is removed by the next run for
// the same output; one a running writer holds locked, one just created,
// and those of other outputs are kept.
func TestReplaceFileRemovesStaleTemps(t *testing.T) {
	dir := t.TempDir()
	old := time.Now().Add(-time.Minute)
	mk := func(name string, mtime time.Time) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
		return p
	}
	stale := mk(".disk.img.cairn-111", old)
	fresh := mk(".disk.img.cairn-222", time.Now())
	other := mk(".other.img.cairn-333", old)
	busy := mk(".disk.img.cairn-444", old)
	f, err := os.Open(busy)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}

	out := filepath.Join(dir, "disk.img")
	if err := replaceFile(out, func(f *os.File) error {
		// The file being written is locked against the same cleanup,
		// however old it looks.
		if err := os.Chtimes(f.Name(), old, old); err != nil {
			return err
		}
		removeStaleTemps(dir, "disk.img")
		if _, err := os.Stat(f.Name()); err != nil {
			t.Errorf("the file being written was removed: %v", err)
		}
		_, err := f.WriteString("complete")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(out); err != nil || string(b) != "complete" {
		t.Fatalf("output %q, %v", b, err)
	}
	for p, want := range map[string]bool{stale: false, fresh: true, other: true, busy: true} {
		if _, err := os.Stat(p); (err == nil) != want {
			t.Errorf("%s: exists %v, want %v", filepath.Base(p), err == nil, want)
		}
	}
}

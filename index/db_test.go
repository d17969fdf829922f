package index

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func openTemp(t testing.TB) *DB {
	t.Helper()
	db, err := Open(t.TempDir(), Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestBlocksRoundTrip(t *testing.T) {
	db := openTemp(t)
	var pack PackID
	pack[0] = 7
	var entries []BlockEntry
	for i := 0; i < 1000; i++ {
		var h Hash
		h[0], h[1] = byte(i>>8), byte(i)
		entries = append(entries, BlockEntry{h, Location{Pack: pack, Offset: uint64(i) * 100, Length: 90, RawLen: 4096}})
	}
	if err := db.CommitPack(pack, PackInfo{Size: 100000, Blobs: 1000}, entries); err != nil {
		t.Fatal(err)
	}
	loc, err := db.Block(entries[500].Hash)
	if err != nil || loc != entries[500].Location {
		t.Fatalf("Block = %+v, %v; want %+v", loc, err, entries[500].Location)
	}
	var missing Hash
	missing[5] = 1
	if _, err := db.Block(missing); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing block: err = %v", err)
	}
	n := 0
	var prev Hash
	err = db.Blocks(func(e BlockEntry) error {
		if n > 0 && string(e.Hash[:]) <= string(prev[:]) {
			t.Errorf("blocks out of order at %d", n)
		}
		prev = e.Hash
		n++
		return nil
	})
	if err != nil || n != 1000 {
		t.Fatalf("Blocks: n=%d err=%v", n, err)
	}
	var packs int
	db.Packs(func(id PackID, info PackInfo) error {
		packs++
		if id != pack || info.Blobs != 1000 {
			t.Errorf("pack %s %+v", id, info)
		}
		return nil
	})
	if packs != 1 {
		t.Fatalf("packs = %d", packs)
	}
}

func TestPointsByResource(t *testing.T) {
	db := openTemp(t)
	for _, k := range []PointKey{{"web", "2"}, {"web", "1"}, {"web01", "1"}, {"db", "9"}} {
		if err := db.PutPoint(k.Resource, k.ID, []byte(k.Resource+k.ID)); err != nil {
			t.Fatal(err)
		}
	}
	keys, err := db.PointKeys("web")
	if err != nil {
		t.Fatal(err)
	}
	// "web01" must not leak into "web": the 0x00 separator sorts first.
	if len(keys) != 2 || keys[0].ID != "1" || keys[1].ID != "2" {
		t.Fatalf("web points = %v", keys)
	}
	all, _ := db.PointKeys("")
	if len(all) != 4 || all[0].Resource != "db" {
		t.Fatalf("all points = %v", all)
	}
	m, err := db.Point("web01", "1")
	if err != nil || string(m) != "web011" {
		t.Fatalf("Point = %q, %v", m, err)
	}
	if err := db.DeletePoints([]PointKey{{"web", "1"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Point("web", "1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted point: %v", err)
	}
	if err := db.PutPoint("bad\x00name", "1", nil); err == nil {
		t.Fatal("resource with NUL accepted")
	}
}

func TestSecondOpenIsLocked(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(dir, Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := Open(dir, Options{Create: true}); !errors.Is(err, ErrLocked) {
		t.Fatalf("second open: %v, want ErrLocked", err)
	}
}

func TestHashText(t *testing.T) {
	var h Hash
	h[31] = 0xab
	g, err := ParseHash(h.String())
	if err != nil || g != h {
		t.Fatalf("ParseHash round trip: %v %v", g, err)
	}
	if _, err := ParseHash("zz"); err == nil {
		t.Fatal("bad hash accepted")
	}
}

// TestOpenAfterKillBeforeLogSized opens an index that a killed process
// left with an empty memtable log or value log, as Badger leaves one
// when killed between creating and sizing it: the first open must
// succeed, read-write or read-only, and an open while another process
// holds the index must not remove the empty log it may be sizing.
func TestOpenAfterKillBeforeLogSized(t *testing.T) {
	for _, name := range []string{"00099.mem", "000099.vlog"} {
		for _, ro := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s read-only=%v", name, ro), func(t *testing.T) {
				dir := t.TempDir()
				db, err := Open(dir, Options{Create: true})
				if err != nil {
					t.Fatal(err)
				}
				if err := db.PutPoint("r", "1", []byte("m")); err != nil {
					t.Fatal(err)
				}
				db.Close()
				empty := filepath.Join(dir, name)
				if err := os.WriteFile(empty, nil, 0o600); err != nil {
					t.Fatal(err)
				}
				db, err = Open(dir, Options{ReadOnly: ro})
				if err != nil {
					t.Fatalf("first open after the kill: %v", err)
				}
				if m, err := db.Point("r", "1"); err != nil || string(m) != "m" {
					t.Fatalf("point after reopen: %q, %v", m, err)
				}
				// While db holds the index, another open fails and
				// leaves files alone.
				if ro {
					db.Close()
					if db, err = Open(dir, Options{}); err != nil {
						t.Fatal(err)
					}
				}
				defer db.Close()
				if err := os.WriteFile(empty, nil, 0o600); err != nil {
					t.Fatal(err)
				}
				if _, err := Open(dir, Options{ReadOnly: ro}); err == nil {
					t.Fatal("a second open of a held index succeeded")
				}
				if _, err := os.Stat(empty); err != nil {
					t.Fatalf("an open that did not get the index removed %s: %v", name, err)
				}
			})
		}
	}
}

// TestIndexFileModes checks that files a looser umask left readable by
// others are made the owner's alone when the index opens.
func TestIndexFileModes(t *testing.T) {
	dir := t.TempDir()
	old := syscall.Umask(0)
	db, err := Open(dir, Options{Create: true})
	syscall.Umask(old)
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	db, err = Open(dir, Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		info, _ := e.Info()
		if info.Mode().IsRegular() && info.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s: mode %04o", e.Name(), info.Mode().Perm())
		}
	}
}

// TestOpenAfterKillWhileWritingTable opens an index that a process
// killed while it wrote a table (a flush or compaction) left with a
// table the MANIFEST never took in, empty or cut short: it is no part of
// the index, so the open succeeds, read-write or read-only.
func TestOpenAfterKillWhileWritingTable(t *testing.T) {
	for _, junk := range [][]byte{nil, bytes.Repeat([]byte{0x5a}, 5000)} {
		for _, ro := range []bool{false, true} {
			t.Run(fmt.Sprintf("%d bytes read-only=%v", len(junk), ro), func(t *testing.T) {
				dir := t.TempDir()
				db, err := Open(dir, Options{Create: true})
				if err != nil {
					t.Fatal(err)
				}
				if err := db.PutPoint("r", "1", []byte("m")); err != nil {
					t.Fatal(err)
				}
				db.Close()
				if err := os.WriteFile(filepath.Join(dir, "000999.sst"), junk, 0o600); err != nil {
					t.Fatal(err)
				}
				db, err = Open(dir, Options{ReadOnly: ro})
				if err != nil {
					t.Fatalf("first open after the kill: %v", err)
				}
				defer db.Close()
				if m, err := db.Point("r", "1"); err != nil || string(m) != "m" {
					t.Fatalf("point after reopen: %q, %v", m, err)
				}
			})
		}
	}
}

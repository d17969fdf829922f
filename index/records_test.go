package index

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestOpenMissingIsNotEmpty(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "index")
	if _, err := Open(dir, Options{}); !errors.Is(err, ErrMissing) {
		t.Fatalf("open of no index: %v, want ErrMissing", err)
	}
	if _, err := os.Stat(dir); err == nil {
		t.Fatal("a failed open created the index")
	}
	db, err := Open(dir, Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	os.Remove(filepath.Join(dir, "MANIFEST"))
	if _, err := Open(dir, Options{}); !errors.Is(err, ErrMissing) {
		t.Fatalf("open without MANIFEST: %v, want ErrMissing", err)
	}
}

// TestOpenDamagedTables truncates and flips bytes in the index's table
// files: every open or read fails with ErrCorrupt, and nothing panics.
func TestOpenDamagedTables(t *testing.T) {
	for _, damage := range []string{"truncate", "flip"} {
		t.Run(damage, func(t *testing.T) {
			dir := t.TempDir()
			db, err := Open(dir, Options{Create: true})
			if err != nil {
				t.Fatal(err)
			}
			var entries []BlockEntry
			for i := 0; i < 5000; i++ {
				var h Hash
				h[0], h[1], h[2] = byte(i>>16), byte(i>>8), byte(i)
				entries = append(entries, BlockEntry{h, Location{Offset: uint64(i), Length: 100, RawLen: 4096}})
			}
			if err := db.CommitPack(PackID{1}, PackInfo{Size: 1, Blobs: 1}, entries); err != nil {
				t.Fatal(err)
			}
			db.Close()
			ssts, _ := filepath.Glob(filepath.Join(dir, "*.sst"))
			if len(ssts) == 0 {
				t.Fatal("no table written")
			}
			for _, p := range ssts {
				b, _ := os.ReadFile(p)
				if damage == "truncate" {
					b = b[:len(b)/2]
				} else {
					b[len(b)/3] ^= 0x10
				}
				os.WriteFile(p, b, 0o600)
			}
			db, err = Open(dir, Options{})
			if err == nil {
				n := 0
				err = db.Blocks(func(BlockEntry) error { n++; return nil })
				db.Close()
				t.Logf("read %d of %d: %v", n, len(entries), err)
				if err == nil && n == len(entries) && damage == "flip" {
					t.Skip("the flipped byte fell in padding")
				}
			}
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("damaged tables: %v, want ErrCorrupt", err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is several lines: %q", err)
			}
		})
	}
}

// TestCheckTablesFindsRot rots a table that an open has verified, with
// its time kept as bit rot keeps it: the next open trusts the table, so
// CheckTables must find the damage, and the open after that refuses.
func TestCheckTablesFindsRot(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(dir, Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	var entries []BlockEntry
	for i := 0; i < 5000; i++ {
		var h Hash
		h[0], h[1], h[2] = byte(i>>16), byte(i>>8), byte(i)
		entries = append(entries, BlockEntry{h, Location{Offset: uint64(i), Length: 100, RawLen: 4096}})
	}
	if err := db.CommitPack(PackID{1}, PackInfo{Size: 1, Blobs: 1}, entries); err != nil {
		t.Fatal(err)
	}
	db.Close()
	db, err = Open(dir, Options{}) // verifies the new table
	if err != nil {
		t.Fatal(err)
	}
	if err := db.CheckTables(); err != nil {
		t.Fatalf("sound tables: %v", err)
	}
	db.Close()
	ssts, _ := filepath.Glob(filepath.Join(dir, "*.sst"))
	if len(ssts) == 0 {
		t.Fatal("no table written")
	}
	for _, p := range ssts {
		st, _ := os.Stat(p)
		b, _ := os.ReadFile(p)
		b[len(b)/3] ^= 0x10
		os.WriteFile(p, b, 0o600)
		os.Chtimes(p, st.ModTime(), st.ModTime())
	}
	db, err = Open(dir, Options{})
	if err != nil {
		t.Fatalf("the open checks a verified table again: %v", err)
	}
	err = db.CheckTables()
	db.Close()
	if !errors.Is(err, ErrCorrupt) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("CheckTables of a rotten table: %v, want ErrCorrupt on one line", err)
	}
	if _, err := Open(dir, Options{}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("open after CheckTables found rot: %v, want ErrCorrupt", err)
	}
}

func TestDamageAndSessionRecords(t *testing.T) {
	db := openTemp(t)
	if _, err := db.VaultID(); !errors.Is(err, ErrNotFound) {
		t.Fatalf("new index has a vault ID: %v", err)
	}
	if err := db.SetVaultID("abc"); err != nil {
		t.Fatal(err)
	}
	if id, err := db.VaultID(); id != "abc" || err != nil {
		t.Fatalf("vault ID %q, %v", id, err)
	}
	if open, _ := db.SessionOpen(); open {
		t.Fatal("session open on a new index")
	}
	db.BeginSession()
	if open, _ := db.SessionOpen(); !open {
		t.Fatal("no session after BeginSession")
	}
	db.EndSession()
	if open, _ := db.SessionOpen(); open {
		t.Fatal("session after EndSession")
	}

	h := Hash{9}
	loc := Location{Pack: PackID{2}, Offset: 16, Length: 100, RawLen: 4096}
	if err := db.MarkDamaged(h, loc, "checksum mismatch"); err != nil {
		t.Fatal(err)
	}
	dm, err := db.Damaged(h)
	if err != nil || dm.Location != loc || dm.Reason != "checksum mismatch" {
		t.Fatalf("Damaged = %+v, %v", dm, err)
	}
	// Storing the block again forgets the damage.
	good := Location{Pack: PackID{3}, Offset: 16, Length: 100, RawLen: 4096}
	if err := db.CommitPack(PackID{3}, PackInfo{Size: 200, Blobs: 1}, []BlockEntry{{h, good}}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Damaged(h); !errors.Is(err, ErrNotFound) {
		t.Fatalf("damage after the block was stored again: %v", err)
	}

	// Candidates come back grouped by hash, every copy.
	var cands []BlockEntry
	for i := 0; i < 3; i++ {
		for p := 0; p <= i; p++ {
			cands = append(cands, BlockEntry{Hash{byte(i)}, Location{Pack: PackID{byte(p)}, Offset: uint64(16 + i)}})
		}
	}
	if err := db.AddCandidates(cands); err != nil {
		t.Fatal(err)
	}
	var groups []int
	if err := db.EachCandidate(func(h Hash, locs []Location) error {
		groups = append(groups, len(locs))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(groups) != 3 || groups[0] != 1 || groups[1] != 2 || groups[2] != 3 {
		t.Fatalf("candidate groups %v, want [1 2 3]", groups)
	}
	if err := db.DropCandidates(); err != nil {
		t.Fatal(err)
	}
	n := 0
	db.EachCandidate(func(Hash, []Location) error { n++; return nil })
	if n != 0 {
		t.Fatalf("%d candidates left after DropCandidates", n)
	}
}

// TestOpenFailureIsOneClearLine damages the index so that Badger's own
// open fails (a table lost, the key registry or a value log altered):
// the error is ErrCorrupt and says what Badger found, on one line, and
// nothing else is logged (Badger logs its error, then panics while it
// cleans up).
func TestOpenFailureIsOneClearLine(t *testing.T) {
	for _, c := range []struct {
		name, want string
		damage     func(t *testing.T, dir string)
	}{
		{"table deleted", "file does not exist for table", func(t *testing.T, dir string) {
			ssts, _ := filepath.Glob(filepath.Join(dir, "*.sst"))
			if len(ssts) == 0 {
				t.Fatal("no table")
			}
			os.Remove(ssts[0])
		}},
		{"key registry altered", "Encryption key mismatch", func(t *testing.T, dir string) {
			b, _ := os.ReadFile(filepath.Join(dir, "KEYREGISTRY"))
			b[19] ^= 0x04
			os.WriteFile(filepath.Join(dir, "KEYREGISTRY"), b, 0o600)
		}},
		{"key registry truncated", "sanity text", func(t *testing.T, dir string) {
			os.Truncate(filepath.Join(dir, "KEYREGISTRY"), 7)
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			db, err := Open(dir, Options{Create: true})
			if err != nil {
				t.Fatal(err)
			}
			if err := db.SetVaultID("v"); err != nil {
				t.Fatal(err)
			}
			db.Close()
			c.damage(t, dir)
			var logged []string
			_, err = Open(dir, Options{Logf: func(f string, a ...any) { logged = append(logged, fmt.Sprintf(f, a...)) }})
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "nil pointer") ||
				strings.Contains(err.Error(), "\n") {
				t.Errorf("open: %v; want ErrCorrupt saying %q, on one line", err, c.want)
			}
			if len(logged) > 0 {
				t.Errorf("a failed open logged %q", logged)
			}
		})
	}
}

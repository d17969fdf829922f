package snapshot

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/index"
)

// FuzzPointRecord feeds arbitrary bytes to the point record decoder (the
// checksummed manifest storage holds, and the bare JSON of format 1): an
// error, or a point whose every disk has a block map of exactly the
// pages its size needs, so no read can index past it or allocate by a
// size the record made up; never a panic.
func FuzzPointRecord(f *testing.F) {
	p := &Point{Version: pointVersion, Resource: "web01", ID: "20261121T100000Z",
		Time: time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC), Parent: "20261120T100000Z",
		Disks: []Disk{{Name: "vda", Size: 3*PageEntries*4096 + 5, BlockSize: 4096, Pages: make([]index.Hash, 4), Base: "vda"},
			{Name: "vdb", Size: 0, BlockSize: 65536, Pages: []index.Hash{}}},
		Consistency: ConsistencyApplication, Trigger: "policy web01", Added: 123}
	rec, err := encodeRecord(p)
	if err != nil {
		f.Fatal(err)
	}
	legacy, _ := json.Marshal(p)
	f.Add(rec, false)
	f.Add(legacy, true)
	f.Fuzz(func(t *testing.T, b []byte, legacy bool) {
		q, err := decodeRecord(b, legacy)
		if err != nil {
			return
		}
		for _, d := range q.Disks {
			if d.Size < 0 || d.BlockSize < MinBlockSize || d.BlockSize > MaxBlockSize {
				t.Fatalf("disk %q: size %d, block size %d", d.Name, d.Size, d.BlockSize)
			}
			if n := d.Blocks(); n < 0 || int64(len(d.Pages)) != (n+PageEntries-1)/PageEntries {
				t.Fatalf("disk %q: %d blocks, %d pages", d.Name, n, len(d.Pages))
			}
			for pg := range d.Pages {
				if l := d.pageLen(pg); l <= 0 || l > PageEntries {
					t.Fatalf("disk %q page %d: %d entries", d.Name, pg, l)
				}
			}
		}
		if CheckName("resource", q.Resource) != nil {
			t.Fatalf("a record of resource %q decodes", q.Resource)
		}
		if !legacy {
			again, err := encodeRecord(q)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := decodeRecord(again, false); err != nil && !errors.Is(err, ErrBadRecord) {
				t.Fatalf("re-encoded record: %v", err)
			}
		}
	})
}

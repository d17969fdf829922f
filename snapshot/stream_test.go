package snapshot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/chunkstore"
)

// TestBlocksInOrder rebuilds a disk with holes, zero blocks and a short
// last block from Blocks and checks order, hole skipping and content.
func TestBlocksInOrder(t *testing.T) {
	v := TestVault(t, Config{BlockSize: 16 << 10})
	ctx := context.Background()
	size := PageEntries*16<<10*3 + 5000 // three map pages and a short block
	data := disk(3, size)
	// A whole map page of holes, so Blocks skips a zero page.
	clear(data[PageEntries*16<<10 : 2*PageEntries*16<<10])
	src := &MemSource{Data: data, Holes: [][2]int64{{PageEntries * 16 << 10, 2 * PageEntries * 16 << 10}}}
	p, err := v.Backup(ctx, "r", []DiskSource{{Name: "d", Src: src}}, BackupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, size)
	last, stored := int64(-1), int64(0)
	err = v.Blocks(ctx, p, "", func(off int64, b []byte) error {
		if off <= last {
			return fmt.Errorf("offset %d after %d", off, last)
		}
		if bytes.Count(b, []byte{0}) == len(b) {
			return fmt.Errorf("zero block at %d delivered", off)
		}
		last = off
		stored += int64(len(b))
		copy(got[off:], b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("blocks differ from the source")
	}
	if stored != p.Disks[0].Allocated {
		t.Errorf("delivered %d bytes, point has %d allocated", stored, p.Disks[0].Allocated)
	}

	stop := errors.New("stop")
	n := 0
	err = v.Blocks(ctx, p, "d", func(int64, []byte) error {
		if n++; n == 3 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || n != 3 {
		t.Errorf("fn error: %v after %d calls", err, n)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := v.Blocks(cctx, p, "d", func(int64, []byte) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
	if err := v.Blocks(ctx, p, "nope", func(int64, []byte) error { return nil }); err == nil {
		t.Error("unknown disk accepted")
	}
}

// TestBlocksDamaged checks a damaged block stops the stream with an error
// naming its offset, after the blocks before it were delivered.
func TestBlocksDamaged(t *testing.T) {
	dir := t.TempDir()
	if err := Init(dir, Config{BlockSize: 64 << 10}, time.Now()); err != nil {
		t.Fatal(err)
	}
	v, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	ctx := context.Background()
	p, err := v.Backup(ctx, "a", []DiskSource{{Name: "d", Src: &MemSource{Data: disk(6, 1<<20)}}}, BackupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	damageBlock(t, v, &p.Disks[0], 5)

	var last int64 = -1
	err = v.Blocks(ctx, p, "", func(off int64, _ []byte) error { last = off; return nil })
	if !errors.Is(err, chunkstore.ErrCorrupt) || !strings.Contains(err.Error(), fmt.Sprintf("offset %d", 5*64<<10)) {
		t.Fatalf("damaged block: %v", err)
	}
	if last >= 5*64<<10 {
		t.Errorf("delivered offset %d at or past the damage", last)
	}
}

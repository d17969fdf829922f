package snapshot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand"
	"strings"
	"testing"

	"github.com/cairn-backup/cairn/chunkstore"
	"github.com/klauspost/compress/zstd"
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
	v := damageableVault(t, 64<<10)
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

// TestStoredBlocks rebuilds a disk from its blocks as stored: zstd frames
// decode to the block, a block kept as it is comes as it is, holes are
// skipped, the short last block is short; a damaged block stops the walk
// at its offset before any of its bytes are delivered.
func TestStoredBlocks(t *testing.T) {
	const bs = 64 << 10
	v := damageableVault(t, bs)
	ctx := context.Background()
	size := 20*bs + 5000
	data := disk(7, size)
	clear(data[2*bs : 4*bs])                            // holes
	rand.New(rand.NewSource(4)).Read(data[5*bs : 6*bs]) // incompressible
	p, err := v.Backup(ctx, "r", []DiskSource{{Name: "d", Src: &MemSource{Data: data}}}, BackupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dec, _ := zstd.NewReader(nil)
	defer dec.Close()
	got := make([]byte, size)
	kinds := map[string]int{}
	last := int64(-1)
	err = v.StoredBlocks(ctx, p, "d", func(off int64, codec string, payload []byte) error {
		if off <= last || off%bs != 0 {
			return fmt.Errorf("offset %d after %d", off, last)
		}
		last = off
		kinds[codec]++
		b := payload
		if codec == "zstd" {
			if b, err = dec.DecodeAll(payload, nil); err != nil {
				return fmt.Errorf("block at %d: %w", off, err)
			}
		}
		if want := min(bs, int64(size)-off); int64(len(b)) != want {
			return fmt.Errorf("block at %d holds %d bytes, want %d", off, len(b), want)
		}
		copy(got[off:], b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("stored blocks do not rebuild the disk")
	}
	nonZero := 0
	for off := 0; off < size; off += bs {
		if !chunkstore.IsZero(data[off:min(off+bs, size)]) {
			nonZero++
		}
	}
	if kinds["none"] != 1 || kinds["zstd"] != nonZero-1 || len(kinds) != 2 {
		t.Errorf("codecs %v, want one block kept as it is and %d zstd", kinds, nonZero-1)
	}

	damageBlock(t, v, &p.Disks[0], 9)
	last = -1
	err = v.StoredBlocks(ctx, p, "d", func(off int64, _ string, _ []byte) error { last = off; return nil })
	if !errors.Is(err, chunkstore.ErrCorrupt) || !strings.Contains(err.Error(), fmt.Sprintf("offset %d", 9*bs)) {
		t.Fatalf("damaged block: %v", err)
	}
	if last >= 9*bs {
		t.Errorf("delivered offset %d at or past the damage", last)
	}
}

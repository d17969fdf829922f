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
)

// Restore over damage: without SkipDamaged the first damaged block in
// disk order fails it, naming its offset; with it, a damaged block and
// an unreadable map page are left as zeros (written as zeros with
// WriteZeros), named exactly in the DamagedRestore, and every other byte
// is the disk's. Progress goes up in order and ends at the disk's size.
func TestRestoreSkipsDamage(t *testing.T) {
	const bs = 4 << 10
	v := damageableVault(t, bs)
	size := 2*PageEntries*bs + 5*bs + 100
	data := make([]byte, size)
	rand.New(rand.NewSource(5)).Read(data)
	clear(data[7*bs : 9*bs])  // holes
	clear(data[size-bs-100:]) // and at the end
	p, err := v.Backup(context.Background(), "r", []DiskSource{{Name: "d", Src: &MemSource{Data: data}}}, BackupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d := &p.Disks[0]
	damageBlock(t, v, d, 5)
	damageBlob(t, v, d.Pages[1])

	out := make(memWriter, size)
	err = v.Restore(context.Background(), p, "", out, RestoreOptions{})
	if !errors.Is(err, chunkstore.ErrCorrupt) || !strings.Contains(err.Error(), fmt.Sprintf("at offset %d", 5*bs)) {
		t.Fatalf("restore over damage: %v", err)
	}

	want := bytes.Clone(data)
	clear(want[5*bs : 6*bs])
	clear(want[PageEntries*bs : 2*PageEntries*bs])
	wantRanges := fmt.Sprint([][2]int64{{5 * bs, 6 * bs}, {PageEntries * bs, 2 * PageEntries * bs}})
	for _, zeros := range []bool{false, true} {
		out := make(memWriter, size)
		if zeros {
			for i := range out {
				out[i] = 0xa5
			}
		}
		last := int64(0)
		progress := func(done, total int64) {
			if done < last || total != int64(size) {
				t.Errorf("progress %d of %d after %d", done, total, last)
			}
			last = done
		}
		err := v.Restore(context.Background(), p, "", out, RestoreOptions{SkipDamaged: true, WriteZeros: zeros, Progress: progress})
		var dr *DamagedRestore
		if !errors.As(err, &dr) || fmt.Sprint(dr.Damage.Ranges) != wantRanges || dr.Damage.Bytes != (PageEntries+1)*bs {
			t.Fatalf("WriteZeros %v: %v, want ranges %s", zeros, err, wantRanges)
		}
		if !bytes.Equal(out, want) {
			t.Fatalf("WriteZeros %v: restored bytes differ", zeros)
		}
		if last != int64(size) {
			t.Fatalf("WriteZeros %v: progress ended at %d", zeros, last)
		}
	}
}

package snapshot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/cairn-backup/cairn/chunkstore"
)

// RestoreOptions tune a restore. The zero value means "default".
type RestoreOptions struct {
	// WriteZeros writes hole blocks as zeros, for targets that are not
	// known to read back zeros (block devices). Otherwise holes are
	// skipped and the target must already read as zeros there (a new or
	// truncated file, which stays sparse).
	WriteZeros bool
	// Progress is called with bytes of the disk done and its size.
	Progress func(done, total int64)
	// Workers reading and decompressing in parallel; GOMAXPROCS when 0.
	Workers int
	// SkipDamaged restores what can be read of a damaged point: a block
	// or map page that fails its checks is left as zeros (a hole, or
	// zeros with WriteZeros), and Restore ends with a *DamagedRestore
	// naming every range left so.
	SkipDamaged bool
}

// DamagedRestore is the error of a restore with SkipDamaged that left
// damaged ranges as zeros; everything else was restored.
type DamagedRestore struct {
	Point  string
	Damage DiskDamage
}

func (e *DamagedRestore) Error() string {
	s := fmt.Sprintf("%s disk %s: %d damaged range(s), %d bytes, left as zeros:", e.Point, e.Damage.Disk, len(e.Damage.Ranges), e.Damage.Bytes)
	for i, r := range e.Damage.Ranges {
		if i == 8 {
			s += fmt.Sprintf(" and %d more", len(e.Damage.Ranges)-i)
			break
		}
		s += fmt.Sprintf(" [%d, %d)", r[0], r[1])
	}
	return s
}

// damageRanges collects the block ranges a restore skipped.
type damageRanges struct {
	blocks []int64
}

func (d *damageRanges) add(first, n int64) {
	for i := first; i < first+n; i++ {
		d.blocks = append(d.blocks, i)
	}
}

// result merges the skipped blocks into byte ranges of disk dk.
func (d *damageRanges) result(dk *Disk) DiskDamage {
	slices.Sort(d.blocks)
	out := DiskDamage{Disk: dk.Name, Ranges: [][2]int64{}}
	bs := int64(dk.BlockSize)
	for _, b := range slices.Compact(d.blocks) {
		start, end := b*bs, min((b+1)*bs, dk.Size)
		if k := len(out.Ranges); k > 0 && out.Ranges[k-1][1] == start {
			out.Ranges[k-1][1] = end
		} else {
			out.Ranges = append(out.Ranges, [2]int64{start, end})
		}
		out.Bytes += end - start
	}
	return out
}

// Restore writes disk name of point p to w, from offset 0 to the disk's
// size. Every block is verified before it is written. It runs on the
// block pipeline (walk): the workers read, verify and write the blocks,
// and Progress is called in order of offset, from one goroutine.
func (v *Vault) Restore(ctx context.Context, p *Point, name string, w io.WriterAt, o RestoreOptions) error {
	d, err := pickDisk(p, name)
	if err != nil {
		return err
	}
	bs := int64(d.BlockSize)
	var zeros []byte
	if o.WriteZeros {
		zeros = make([]byte, bs)
	}
	write := func(data []byte, off int64) error {
		if _, err := w.WriteAt(data, off); err != nil {
			return fmt.Errorf("write at offset %d: %w", off, err)
		}
		return nil
	}
	// writeZeros writes n zero bytes at off, a block at a time.
	writeZeros := func(off, n int64) error {
		for ; n > 0; off, n = off+bs, n-bs {
			if err := write(zeros[:min(n, bs)], off); err != nil {
				return err
			}
		}
		return nil
	}
	var skipped damageRanges
	wk := walk{v: v, p: p, d: d, start: 0, end: d.Size, holes: o.WriteZeros, damaged: o.SkipDamaged, workers: o.Workers}
	wk.fetch = func(b *walkBlock) error {
		if b.h.IsZero() {
			return write(zeros[:b.n], b.off)
		}
		err := wk.load(b)
		if err != nil && o.SkipDamaged && isDamage(err) {
			b.damage = err
			if o.WriteZeros {
				return writeZeros(b.off, b.n)
			}
			return nil
		}
		if err != nil {
			return err
		}
		return write(b.data, b.off)
	}
	wk.emit = func(b *walkBlock) error {
		if b.damage != nil {
			skipped.add(b.i, (b.n+bs-1)/bs)
			if b.h.IsZero() && o.WriteZeros { // a map page that cannot be read: fetch did not run
				if err := writeZeros(b.off, b.n); err != nil {
					return err
				}
			}
		}
		if o.Progress != nil {
			o.Progress(b.off+b.n, d.Size)
		}
		return nil
	}
	if err := wk.run(ctx); err != nil {
		return err
	}
	if o.Progress != nil {
		o.Progress(d.Size, d.Size) // holes at the end
	}
	if len(skipped.blocks) > 0 {
		return &DamagedRestore{Point: p.Name(), Damage: skipped.result(d)}
	}
	return nil
}

// isDamage reports whether err is a block that failed its checks or has
// no copy, as opposed to a failure to write or a cancel.
func isDamage(err error) bool {
	return errors.Is(err, chunkstore.ErrCorrupt) || errors.Is(err, chunkstore.ErrMissing)
}

package snapshot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"sync"

	"github.com/cairn-backup/cairn/chunkstore"
	"github.com/cairn-backup/cairn/index"
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
	mu     sync.Mutex
	blocks []int64
}

func (d *damageRanges) add(first, n int64) {
	d.mu.Lock()
	for i := first; i < first+n; i++ {
		d.blocks = append(d.blocks, i)
	}
	d.mu.Unlock()
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
// size. Every block is verified before it is written.
func (v *Vault) Restore(ctx context.Context, p *Point, name string, w io.WriterAt, o RestoreOptions) error {
	d, err := pickDisk(p, name)
	if err != nil {
		return err
	}
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type job struct {
		i int64
		h index.Hash
	}
	jobs := make(chan job, 2*o.Workers)
	var (
		progMu sync.Mutex
		done   int64
	)
	var firstErr error
	var errOnce sync.Once
	setErr := func(err error) {
		errOnce.Do(func() { firstErr = err; cancel() })
	}
	report := func(n int64) {
		progMu.Lock()
		defer progMu.Unlock()
		done += n
		if o.Progress != nil {
			o.Progress(done, d.Size)
		}
	}
	bs := int64(d.BlockSize)
	var zeros []byte
	if o.WriteZeros {
		zeros = make([]byte, bs)
	}
	var skipped damageRanges
	var wg sync.WaitGroup
	for w0 := 0; w0 < o.Workers; w0++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf []byte
			for j := range jobs {
				if ctx.Err() != nil {
					continue
				}
				off := j.i * bs
				n := min(bs, d.Size-off)
				var data []byte
				if j.h.IsZero() {
					data = zeros[:n]
				} else {
					b, err := v.store.Load(j.h, buf)
					if err != nil {
						v.noteReadDamage(p, d, j.i, j.h, err)
						if o.SkipDamaged && isDamage(err) {
							skipped.add(j.i, 1)
							if o.WriteZeros {
								if _, err := w.WriteAt(zeros[:n], off); err != nil {
									setErr(fmt.Errorf("write at offset %d: %w", off, err))
								}
							}
							report(n)
							continue
						}
						setErr(fmt.Errorf("%s disk %s at offset %d: %w", p.Name(), d.Name, off, err))
						continue
					}
					if int64(len(b)) != n {
						setErr(fmt.Errorf("%s disk %s at offset %d: block is %d bytes, want %d", p.Name(), d.Name, off, len(b), n))
						continue
					}
					buf, data = b, b
				}
				if _, err := w.WriteAt(data, off); err != nil {
					setErr(fmt.Errorf("write at offset %d: %w", off, err))
					continue
				}
				report(n)
			}
		}()
	}
	c := newMapCursor(v, d)
	nb := d.Blocks()
	for i := int64(0); i < nb && ctx.Err() == nil; i++ {
		h, err := c.hash(i)
		if err != nil && o.SkipDamaged && isDamage(err) {
			// The whole map page is unreadable: its blocks are unknown.
			last := min(nb, (i/PageEntries+1)*PageEntries)
			skipped.add(i, last-i)
			if o.WriteZeros {
				for ; i < last; i++ {
					jobs <- job{i, index.Hash{}}
				}
			} else {
				report(min(last*bs, d.Size) - i*bs)
			}
			i = last - 1
			continue
		}
		if err != nil {
			setErr(fmt.Errorf("%s disk %s: %w", p.Name(), d.Name, err))
			break
		}
		if h.IsZero() && !o.WriteZeros {
			report(min(bs, d.Size-i*bs))
			continue
		}
		jobs <- job{i, h}
	}
	close(jobs)
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	if err := ctx.Err(); err != nil {
		return err
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

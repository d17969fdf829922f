package snapshot

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"sync"

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
	return ctx.Err()
}

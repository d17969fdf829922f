package snapshot

import (
	"context"
	"fmt"

	"github.com/cairn-backup/cairn/index"
)

// recountUsed sets the bytes the vault's packs take, from the index.
func (v *Vault) recountUsed() error {
	var n int64
	if err := v.idx.Packs(func(_ index.PackID, info index.PackInfo) error {
		n += info.Size
		return nil
	}); err != nil {
		return v.indexError(err)
	}
	v.used.Store(n)
	return nil
}

// Used returns the bytes the vault's packs take, those being written
// included.
func (v *Vault) Used() int64 { return v.used.Load() }

// budget is the capacity a vault's backups draw on.
type budget struct{ v *Vault }

func (b budget) Reserve(n int64) error {
	c := b.v.Config().Capacity
	if c <= 0 {
		b.v.used.Add(n)
		return nil
	}
	for {
		cur := b.v.used.Load()
		if cur+n > c {
			return fmt.Errorf("%w: %d of %d bytes used; free space with cairn prune and cairn gc, or raise it with cairn vault set --capacity",
				ErrCapacity, cur, c)
		}
		if b.v.used.CompareAndSwap(cur, cur+n) {
			return nil
		}
	}
}

func (b budget) Release(n int64) { b.v.used.Add(-n) }

// SetCapacity changes the vault's capacity (0: none), in storage.
func (v *Vault) SetCapacity(ctx context.Context, capacity int64) error {
	if v.readOnly {
		return v.readOnlyErr()
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	cfg := v.cfg
	cfg.Capacity = capacity
	if err := cfg.check(); err != nil {
		return err
	}
	if err := putConfig(ctx, v.st, cfg); err != nil {
		return err
	}
	v.cfg = cfg
	return nil
}

package snapshot

import (
	"context"
	"fmt"

	"github.com/cairn-backup/cairn/chunkstore/storage"
)

// SetPinned pins or unpins points: a pinned point is kept whatever
// retention rules say, and delete refuses it. The flag lives in the
// point's record, which is rewritten whole (atomically) in storage, then
// in the index.
func (v *Vault) SetPinned(points []*Point, pinned bool) error {
	if v.readOnly {
		return v.readOnlyErr()
	}
	ctx := context.Background()
	v.commitMu.Lock()
	defer v.commitMu.Unlock()
	for _, p := range points {
		cur, err := v.Point(p.Resource, p.ID)
		if err != nil {
			return err
		}
		if cur.Pinned == pinned {
			continue
		}
		cur.Pinned = pinned
		rec, err := encodeRecord(cur)
		if err != nil {
			return err
		}
		if err := v.st.Put(ctx, storage.Points, recordName(cur.Resource, cur.ID), rec); err != nil {
			return fmt.Errorf("%s: %w", cur.Name(), err)
		}
		if err := v.idx.PutPoint(cur.Resource, cur.ID, rec); err != nil {
			v.indexLags("the pin of "+cur.Name(), err)
		}
		p.Pinned = pinned
	}
	return nil
}

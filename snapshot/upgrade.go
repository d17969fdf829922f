package snapshot

import (
	"context"
	"fmt"

	"github.com/cairn-backup/cairn/chunkstore/storage"
	"github.com/cairn-backup/cairn/index"
)

// upgrade turns a format 1 vault, whose points live only in its index,
// into a format 2 one: every point's record is written to storage, the
// index caches the records, and the new config, written last, is the
// commit. A crash before that leaves a format 1 vault that the next open
// upgrades again (every step can be repeated); packs stay as they are,
// version 1 packs are read as ever.
func (v *Vault) upgrade(ctx context.Context) error {
	type rec struct {
		k index.PointKey
		b []byte
	}
	var recs []rec
	err := v.idx.Points("", func(k index.PointKey, m []byte) error {
		p, err := v.decodeIndexed(k.Resource, k.ID, m)
		if err != nil {
			return fmt.Errorf("point %s@%s: %w", k.Resource, k.ID, err)
		}
		b, err := encodeRecord(p)
		if err != nil {
			return err
		}
		recs = append(recs, rec{k, b})
		return nil
	})
	if err != nil {
		return v.indexError(err)
	}
	for _, r := range recs {
		if err := v.st.Put(ctx, storage.Points, recordName(r.k.Resource, r.k.ID), r.b); err != nil {
			return err
		}
		if err := v.idx.PutPoint(r.k.Resource, r.k.ID, r.b); err != nil {
			return err
		}
	}
	cfg := v.cfg
	cfg.Format, cfg.ID = FormatVersion, newVaultID()
	if err := v.idx.SetVaultID(cfg.ID); err != nil {
		return err
	}
	if err := putConfig(ctx, v.st, cfg); err != nil {
		return err
	}
	v.cfg = cfg
	v.logf("%s: upgraded to vault format %d: %d point records written to storage", v.dir, FormatVersion, len(recs))
	return nil
}

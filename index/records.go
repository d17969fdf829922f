package index

import (
	"errors"
	"fmt"

	badger "github.com/dgraph-io/badger/v4"
)

// VaultID returns the ID of the vault this index was built for, or
// ErrNotFound for an index that was never bound to one (a new or emptied
// index).
func (d *DB) VaultID() (string, error) {
	v, err := d.get([]byte{keyVault})
	return string(v), err
}

// SetVaultID binds the index to a vault.
func (d *DB) SetVaultID(id string) error {
	return d.update(func(txn *badger.Txn) error { return txn.Set([]byte{keyVault}, []byte(id)) })
}

// BeginSession marks the index as open for writing, durably. A session
// still marked at the next open means the writer stopped without
// EndSession (a crash): the index may lag storage.
func (d *DB) BeginSession() error {
	return d.update(func(txn *badger.Txn) error { return txn.Set([]byte{keySession}, []byte{1}) })
}

// EndSession clears the mark of BeginSession.
func (d *DB) EndSession() error {
	return d.update(func(txn *badger.Txn) error { return txn.Delete([]byte{keySession}) })
}

// SessionOpen reports whether a session was begun and never ended.
func (d *DB) SessionOpen() (bool, error) {
	_, err := d.get([]byte{keySession})
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// Damage is a known-damaged copy of a block.
type Damage struct {
	Hash     Hash
	Location Location // the copy that failed
	Reason   string
}

// MarkDamaged records that the copy of block h at loc failed its checks,
// so that backups store the block again instead of referring to it.
func (d *DB) MarkDamaged(h Hash, loc Location, reason string) error {
	v := append(loc.encode(), reason...)
	return d.update(func(txn *badger.Txn) error { return txn.Set(damageKey(h), v) })
}

// Damaged returns what is known damaged of block h, or ErrNotFound.
func (d *DB) Damaged(h Hash) (Damage, error) {
	v, err := d.get(damageKey(h))
	if err != nil {
		return Damage{}, err
	}
	return decodeDamage(h, v)
}

// ClearDamage forgets that block h was damaged.
func (d *DB) ClearDamage(h Hash) error {
	return d.update(func(txn *badger.Txn) error { return txn.Delete(damageKey(h)) })
}

// Damages calls fn for every block known damaged, in hash order.
func (d *DB) Damages(fn func(Damage) error) error {
	return d.scan([]byte{prefixDamage}, true, func(k, v []byte) error {
		var h Hash
		copy(h[:], k[1:])
		dm, err := decodeDamage(h, v)
		if err != nil {
			return err
		}
		return fn(dm)
	})
}

func decodeDamage(h Hash, v []byte) (Damage, error) {
	if len(v) < locationSize {
		return Damage{}, fmt.Errorf("%w: damage record of %d bytes", ErrCorrupt, len(v))
	}
	loc, err := decodeLocation(v[:locationSize])
	return Damage{Hash: h, Location: loc, Reason: string(v[locationSize:])}, err
}

// PutPointDamage records what is known damaged in a point (an encoding
// of package snapshot's); DeletePointDamage forgets it.
func (d *DB) PutPointDamage(resource, id string, v []byte) error {
	return d.update(func(txn *badger.Txn) error { return txn.Set(pointDamageKey(resource, id), v) })
}

// PointDamage returns what PutPointDamage recorded, or ErrNotFound.
func (d *DB) PointDamage(resource, id string) ([]byte, error) {
	return d.get(pointDamageKey(resource, id))
}

// DeletePointDamage forgets what is known damaged in a point.
func (d *DB) DeletePointDamage(resource, id string) error {
	return d.update(func(txn *badger.Txn) error { return txn.Delete(pointDamageKey(resource, id)) })
}

// PointDamages calls fn for every point with damage recorded.
func (d *DB) PointDamages(fn func(k PointKey, v []byte) error) error {
	return d.scan([]byte{prefixPointDamage}, true, func(k, v []byte) error {
		r, id, ok := splitPointKey(append([]byte{prefixPoint}, k[1:]...))
		if !ok {
			return fmt.Errorf("%w: point damage key %q", ErrCorrupt, k)
		}
		return fn(PointKey{r, id}, v)
	})
}

// PutBadRecord records a point record in storage that cannot be read,
// under its object name, so the point stays listed as damaged.
func (d *DB) PutBadRecord(name, reason string) error {
	return d.update(func(txn *badger.Txn) error {
		return txn.Set(append([]byte{prefixBadRecord}, name...), []byte(reason))
	})
}

// DeleteBadRecord forgets a bad point record.
func (d *DB) DeleteBadRecord(name string) error {
	return d.update(func(txn *badger.Txn) error {
		return txn.Delete(append([]byte{prefixBadRecord}, name...))
	})
}

// BadRecords calls fn for every bad point record, by name.
func (d *DB) BadRecords(fn func(name, reason string) error) error {
	return d.scan([]byte{prefixBadRecord}, true, func(k, v []byte) error {
		return fn(string(k[1:]), string(v))
	})
}

// Candidates collects block locations while an index is rebuilt, several
// per hash where storage holds copies in several packs. AddCandidates
// writes a batch of them; EachCandidate then hands them out grouped by
// hash, in hash order, without holding them all in memory.
func (d *DB) AddCandidates(entries []BlockEntry) error {
	return d.batchNoSync(func(wb *badger.WriteBatch) error {
		for _, e := range entries {
			if err := wb.Set(candidateKey(e.Hash, e.Location), e.Location.encode()); err != nil {
				return err
			}
		}
		return nil
	})
}

// EachCandidate calls fn once per hash with every location collected for
// it, ordered by pack and offset.
func (d *DB) EachCandidate(fn func(h Hash, locs []Location) error) error {
	var cur Hash
	var locs []Location
	err := d.scan([]byte{prefixCandidate}, true, func(k, v []byte) error {
		var h Hash
		copy(h[:], k[1:])
		if len(locs) > 0 && h != cur {
			if err := fn(cur, locs); err != nil {
				return err
			}
			locs = locs[:0]
		}
		cur = h
		loc, err := decodeLocation(v)
		if err != nil {
			return err
		}
		locs = append(locs, loc)
		return nil
	})
	if err == nil && len(locs) > 0 {
		err = fn(cur, locs)
	}
	return err
}

// DropCandidates deletes every collected candidate.
func (d *DB) DropCandidates() error { return d.dropPrefix([]byte{prefixCandidate}) }

// PutBlocks writes block locations in bulk (repair), syncing at the end.
func (d *DB) PutBlocks(entries []BlockEntry) error {
	return d.batchNoSync(func(wb *badger.WriteBatch) error {
		for _, e := range entries {
			if err := wb.Set(blockKey(e.Hash), e.Location.encode()); err != nil {
				return err
			}
		}
		return nil
	})
}

// PutPack writes a pack record (repair).
func (d *DB) PutPack(id PackID, info PackInfo) error {
	return d.update(func(txn *badger.Txn) error { return txn.Set(packKey(id), info.encode()) })
}

// batchNoSync is batch without the sync, for bulk loads that sync once
// at the end.
func (d *DB) batchNoSync(fn func(wb *badger.WriteBatch) error) (err error) {
	defer recoverBadger(&err)
	wb := d.db.NewWriteBatch()
	defer wb.Cancel()
	if err := fn(wb); err != nil {
		return err
	}
	return wb.Flush()
}

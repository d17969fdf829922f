package index

import (
	"fmt"
	"strings"

	badger "github.com/dgraph-io/badger/v4"
)

// Block returns the location of block h, or ErrNotFound.
func (d *DB) Block(h Hash) (Location, error) {
	v, err := d.get(blockKey(h))
	if err != nil {
		return Location{}, err
	}
	return decodeLocation(v)
}

// HasBlock reports whether block h is indexed.
func (d *DB) HasBlock(h Hash) (bool, error) {
	_, err := d.Block(h)
	if err == ErrNotFound {
		return false, nil
	}
	return err == nil, err
}

// BlockEntry pairs a hash with its location, for batch writes and scans.
type BlockEntry struct {
	Hash     Hash
	Location Location
}

// CommitPack records a durable pack and the locations of all its blobs in
// one batch, then syncs. Callers must have made the pack durable first. A
// block stored anew here is no longer known damaged: its new copy is the
// one the index points at.
func (d *DB) CommitPack(id PackID, info PackInfo, blocks []BlockEntry) error {
	err := d.batch(func(wb *badger.WriteBatch) error {
		for _, b := range blocks {
			if err := wb.Set(blockKey(b.Hash), b.Location.encode()); err != nil {
				return err
			}
			if err := wb.Delete(damageKey(b.Hash)); err != nil {
				return err
			}
		}
		return wb.Set(packKey(id), info.encode())
	})
	if err != nil {
		return fmt.Errorf("index pack %s: %w", id, err)
	}
	return nil
}

// DeleteBlocks removes block locations, for garbage collection and repair.
func (d *DB) DeleteBlocks(hashes []Hash) error {
	return d.batch(func(wb *badger.WriteBatch) error {
		for _, h := range hashes {
			if err := wb.Delete(blockKey(h)); err != nil {
				return err
			}
		}
		return nil
	})
}

// DropBlocks removes block locations and what is known damaged of them,
// for garbage collection.
func (d *DB) DropBlocks(hashes []Hash) error {
	return d.batch(func(wb *badger.WriteBatch) error {
		for _, h := range hashes {
			if err := wb.Delete(blockKey(h)); err != nil {
				return err
			}
			if err := wb.Delete(damageKey(h)); err != nil {
				return err
			}
		}
		return nil
	})
}

// DeletePackRecord removes a pack's record alone, for a pack whose
// blocks no location points into any more.
func (d *DB) DeletePackRecord(id PackID) error {
	return d.update(func(txn *badger.Txn) error { return txn.Delete(packKey(id)) })
}

// DeletePack removes a pack's record and every block location in it, for
// a pack that storage no longer holds.
func (d *DB) DeletePack(id PackID) error {
	var hashes []Hash
	if err := d.Blocks(func(e BlockEntry) error {
		if e.Location.Pack == id {
			hashes = append(hashes, e.Hash)
		}
		return nil
	}); err != nil {
		return err
	}
	return d.batch(func(wb *badger.WriteBatch) error {
		for _, h := range hashes {
			if err := wb.Delete(blockKey(h)); err != nil {
				return err
			}
		}
		return wb.Delete(packKey(id))
	})
}

// Blocks calls fn for every indexed block, in hash order. fn must not
// call back into d for writes.
func (d *DB) Blocks(fn func(BlockEntry) error) error {
	return d.scan([]byte{prefixBlock}, true, func(k, v []byte) error {
		var e BlockEntry
		copy(e.Hash[:], k[1:])
		loc, err := decodeLocation(v)
		if err != nil {
			return fmt.Errorf("block %s: %w", e.Hash, err)
		}
		e.Location = loc
		return fn(e)
	})
}

// Pack returns a committed pack's record, or ErrNotFound.
func (d *DB) Pack(id PackID) (PackInfo, error) {
	v, err := d.get(packKey(id))
	if err != nil {
		return PackInfo{}, err
	}
	return decodePackInfo(v)
}

// Packs calls fn for every committed pack, in ID order.
func (d *DB) Packs(fn func(PackID, PackInfo) error) error {
	return d.scan([]byte{prefixPack}, true, func(k, v []byte) error {
		var id PackID
		copy(id[:], k[1:])
		info, err := decodePackInfo(v)
		if err != nil {
			return fmt.Errorf("pack %s: %w", id, err)
		}
		return fn(id, info)
	})
}

// PutPoint stores a point's record and syncs.
func (d *DB) PutPoint(resource, id string, record []byte) error {
	return d.putPoint(resource, id, record, false)
}

// PutNewPoint stores the record of a point just made, as PutPoint, and
// notes its ID as the newest issued for resource (IssuedID), in one
// transaction. Deleting the point leaves that note.
func (d *DB) PutNewPoint(resource, id string, record []byte) error {
	return d.putPoint(resource, id, record, true)
}

func (d *DB) putPoint(resource, id string, record []byte, issued bool) error {
	if strings.IndexByte(resource, 0) >= 0 || resource == "" || id == "" {
		return fmt.Errorf("invalid point key %q@%q", resource, id)
	}
	if err := d.update(func(txn *badger.Txn) error {
		if err := txn.Set(pointKey(resource, id), record); err != nil || !issued {
			return err
		}
		return txn.Set(issuedIDKey(resource), []byte(id))
	}); err != nil {
		return fmt.Errorf("index point %s@%s: %w", resource, id, err)
	}
	return nil
}

// IssuedID returns the ID of the last point PutNewPoint stored for
// resource, whether or not it still exists, or ErrNotFound.
func (d *DB) IssuedID(resource string) (string, error) {
	b, err := d.get(issuedIDKey(resource))
	return string(b), err
}

// Point returns a point's record, or ErrNotFound.
func (d *DB) Point(resource, id string) ([]byte, error) {
	return d.get(pointKey(resource, id))
}

// DeletePoints removes point records, and what is known of their damage,
// in one transaction and syncs.
func (d *DB) DeletePoints(keys []PointKey) error {
	return d.update(func(txn *badger.Txn) error {
		for _, k := range keys {
			if err := txn.Delete(pointKey(k.Resource, k.ID)); err != nil {
				return err
			}
			if err := txn.Delete(pointDamageKey(k.Resource, k.ID)); err != nil {
				return err
			}
		}
		return nil
	})
}

// PointKey names a point.
type PointKey struct {
	Resource string
	ID       string
}

// Points calls fn for the points of resource (all resources when
// resource is ""), ordered by resource and then ID.
func (d *DB) Points(resource string, fn func(k PointKey, record []byte) error) error {
	return d.scan(pointPrefix(resource), true, func(k, v []byte) error {
		r, id, ok := splitPointKey(k)
		if !ok {
			return fmt.Errorf("%w: point key %q", ErrCorrupt, k)
		}
		return fn(PointKey{r, id}, v)
	})
}

// PointKeys lists point keys without reading records.
func (d *DB) PointKeys(resource string) ([]PointKey, error) {
	var keys []PointKey
	err := d.scan(pointPrefix(resource), false, func(k, _ []byte) error {
		r, id, ok := splitPointKey(k)
		if !ok {
			return fmt.Errorf("%w: point key %q", ErrCorrupt, k)
		}
		keys = append(keys, PointKey{r, id})
		return nil
	})
	return keys, err
}

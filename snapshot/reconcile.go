package snapshot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/cairn-backup/cairn/chunkstore"
	"github.com/cairn-backup/cairn/chunkstore/storage"
	"github.com/cairn-backup/cairn/index"
)

// reconcile brings the index up to date with storage after a writer
// stopped without closing the vault: storage wins. Point records the
// index lacks are added, points whose records storage no longer holds
// (after a Stat says so: a listing proves nothing absent) are dropped;
// packs committed but not indexed are indexed from their headers, and
// packs gone from storage take their block locations with them, so that
// backups store those blocks again.
func (v *Vault) reconcile(ctx context.Context) error {
	added, dropped, err := v.reconcilePoints(ctx)
	if err != nil {
		return err
	}
	indexed, lost, err := v.reconcilePacks(ctx)
	if err != nil {
		return err
	}
	if added+dropped+indexed+lost > 0 {
		v.logf("%s: the last writer stopped without closing; from storage: %d point(s) added, %d dropped, %d pack(s) indexed, %d gone",
			v.dir, added, dropped, indexed, lost)
	}
	return nil
}

func (v *Vault) reconcilePoints(ctx context.Context) (added, dropped int, err error) {
	stored := map[string]bool{}
	if err := v.st.List(ctx, storage.Points, func(o storage.ObjectInfo) error {
		stored[o.Name] = true
		return nil
	}); err != nil {
		return 0, 0, err
	}
	keys, err := v.idx.PointKeys("")
	if err != nil {
		return 0, 0, v.indexError(err)
	}
	indexed := map[string]bool{}
	for _, k := range keys {
		name := recordName(k.Resource, k.ID)
		indexed[name] = true
		if stored[name] {
			continue
		}
		if _, err := v.st.Stat(ctx, storage.Points, name); !errors.Is(err, storage.ErrNotExist) {
			if err != nil {
				return added, dropped, err
			}
			stored[name] = true // listed late; it is there
			continue
		}
		if err := v.idx.DeletePoints([]index.PointKey{k}); err != nil {
			return added, dropped, err
		}
		dropped++
	}
	for name := range stored {
		if indexed[name] {
			// A record rewritten (a pin) may not have reached the index.
			same, err := v.sameRecord(ctx, name)
			if err != nil || same {
				if err != nil {
					return added, dropped, err
				}
				continue
			}
		}
		ok, err := v.indexRecord(ctx, name)
		if err != nil {
			return added, dropped, err
		}
		if ok {
			added++
		}
	}
	return added, dropped, nil
}

// sameRecord reports whether the index holds the record storage holds.
func (v *Vault) sameRecord(ctx context.Context, name string) (bool, error) {
	resource, id, ok := splitRecordName(name)
	if !ok {
		return true, nil
	}
	b, err := v.st.Get(ctx, storage.Points, name)
	if errors.Is(err, storage.ErrNotExist) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	ib, err := v.idx.Point(resource, id)
	if err != nil {
		return false, nil
	}
	return bytes.Equal(b, ib), nil
}

// indexRecord reads a point record from storage into the index. A
// record that fails its checks is noted as bad (the point stays listed,
// damaged) and reported as not added.
func (v *Vault) indexRecord(ctx context.Context, name string) (bool, error) {
	resource, id, ok := splitRecordName(name)
	if !ok {
		return false, v.idx.PutBadRecord(name, "not the name of a point record")
	}
	b, err := v.st.Get(ctx, storage.Points, name)
	if err != nil {
		return false, err
	}
	p, err := decodeRecord(b, false)
	if err == nil && (p.Resource != resource || p.ID != id) {
		err = fmt.Errorf("%w: it holds %s", ErrBadRecord, p.Name())
	}
	if err != nil {
		return false, v.idx.PutBadRecord(name, err.Error())
	}
	if err := v.idx.DeleteBadRecord(name); err != nil {
		return false, err
	}
	return true, v.idx.PutPoint(resource, id, b)
}

func (v *Vault) reconcilePacks(ctx context.Context) (indexed, lost int, err error) {
	stored := map[index.PackID]int64{}
	if err := v.st.List(ctx, storage.Packs, func(o storage.ObjectInfo) error {
		if id, ok := packID(o.Name); ok {
			stored[id] = o.Size
		}
		return nil
	}); err != nil {
		return 0, 0, err
	}
	known := map[index.PackID]index.PackInfo{}
	if err := v.idx.Packs(func(id index.PackID, info index.PackInfo) error {
		known[id] = info
		return nil
	}); err != nil {
		return 0, 0, v.indexError(err)
	}
	for id, info := range known {
		size, ok := stored[id]
		if !ok {
			st, err := v.st.Stat(ctx, storage.Packs, chunkstore.PackName(id))
			if err == nil {
				size, ok = st.Size, true
			} else if !errors.Is(err, storage.ErrNotExist) {
				return indexed, lost, err
			}
		}
		switch {
		case !ok:
			if err := v.idx.DeletePack(id); err != nil {
				return indexed, lost, err
			}
			lost++
		case size != info.Size:
			if err := v.reindexPack(ctx, id, size); err != nil {
				return indexed, lost, err
			}
		}
	}
	for id, size := range stored {
		if _, ok := known[id]; ok {
			continue
		}
		if err := v.reindexPack(ctx, id, size); err != nil {
			return indexed, lost, err
		}
		indexed++
	}
	return indexed, lost, nil
}

// reindexPack indexes the blobs a pack's headers list: the blocks of a
// pack the index lacks, or of one storage holds in another size than
// indexed (a truncated pack keeps the blobs before the cut). A block the
// index finds in a usable copy elsewhere keeps that copy.
func (v *Vault) reindexPack(ctx context.Context, id index.PackID, size int64) error {
	blobs, err := chunkstore.ReadPackIndex(ctx, v.st, chunkstore.PackName(id), size)
	if err != nil && !errors.Is(err, chunkstore.ErrCorrupt) {
		return err
	}
	if err != nil {
		v.logf("%v", err)
	}
	var entries []index.BlockEntry
	have := map[index.Hash]bool{}
	for _, b := range blobs {
		loc := index.Location{Pack: id, Offset: uint64(b.Offset), Length: uint32(b.Length), RawLen: uint32(b.RawLen)}
		have[b.Hash] = true
		if old, err := v.idx.Block(b.Hash); err == nil && old.Pack != id {
			if ok, _ := v.store.Has(b.Hash); ok {
				continue
			}
		}
		entries = append(entries, index.BlockEntry{Hash: b.Hash, Location: loc})
	}
	// Locations in this pack that its headers no longer list go.
	var gone []index.Hash
	if err := v.idx.Blocks(func(e index.BlockEntry) error {
		if e.Location.Pack == id && !have[e.Hash] {
			gone = append(gone, e.Hash)
		}
		return nil
	}); err != nil {
		return err
	}
	if err := v.idx.DeleteBlocks(gone); err != nil {
		return err
	}
	return v.idx.CommitPack(id, index.PackInfo{Size: size, Blobs: int64(len(blobs))}, entries)
}

// packID reads a pack's ID from its storage name.
func packID(name string) (index.PackID, bool) {
	s, ok := strings.CutSuffix(name, ".pack")
	if !ok {
		return index.PackID{}, false
	}
	id, err := index.ParsePackID(s)
	return id, err == nil
}

package snapshot

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"

	"github.com/cairn-backup/cairn/chunkstore"
	"github.com/cairn-backup/cairn/index"
)

// VerifyOptions tune Verify.
type VerifyOptions struct {
	// Data reads every stored blob back and re-hashes it.
	Data bool
	// Progress is called with pack bytes checked and the total (Data
	// only).
	Progress func(done, total int64)
}

// Problem is one thing Verify found wrong.
type Problem struct {
	What   string   `json:"what"`
	Points []string `json:"points"` // points that cannot be fully read because of it
}

// VerifyReport is the outcome of Verify. The vault is healthy when
// Problems is empty; Notes are harmless findings.
type VerifyReport struct {
	Points         int       `json:"points"`
	Packs          int       `json:"packs"`
	Blocks         int64     `json:"blocks"`
	BytesChecked   int64     `json:"bytes_checked"`
	DataChecked    bool      `json:"data_checked"`
	Problems       []Problem `json:"problems"`
	Notes          []string  `json:"notes"`
	DamagedPoints  []string  `json:"damaged_points"`
	MissingBlocks  int64     `json:"missing_blocks"`
	DamagedBlocks  int64     `json:"damaged_blocks"`
	UnreadablePack int       `json:"unreadable_packs"`
}

// OK reports whether nothing is wrong.
func (r *VerifyReport) OK() bool { return len(r.Problems) == 0 }

// Verify checks that the index and the packs agree and that every block
// of every point is stored; with Data it also re-reads and re-hashes
// every blob. It reads only; it never changes the vault.
func (v *Vault) Verify(ctx context.Context, o VerifyOptions) (*VerifyReport, error) {
	// Lists are never nil, so JSON shows an empty one as [].
	rep := &VerifyReport{DataChecked: o.Data, Problems: []Problem{}, Notes: []string{}, DamagedPoints: []string{}}
	problem := func(format string, a ...any) {
		rep.Problems = append(rep.Problems, Problem{What: fmt.Sprintf(format, a...), Points: []string{}})
	}

	// 1. Packs: every indexed pack exists with its recorded size.
	onDisk := map[string]int64{}
	if err := v.be.List(func(name string, size int64) error {
		onDisk[name] = size
		return nil
	}); err != nil {
		return nil, fmt.Errorf("list packs: %w", err)
	}
	packs := map[index.PackID]index.PackInfo{}
	var totalPackBytes int64
	if err := v.idx.Packs(func(id index.PackID, info index.PackInfo) error {
		packs[id] = info
		name := id.String() + ".pack"
		size, ok := onDisk[name]
		switch {
		case !ok:
			problem("pack %s is missing", id)
		case size != info.Size:
			problem("pack %s is %d bytes, the index says %d", id, size, info.Size)
		}
		delete(onDisk, name)
		totalPackBytes += info.Size
		return nil
	}); err != nil {
		return nil, err
	}
	for name := range onDisk {
		rep.Notes = append(rep.Notes, fmt.Sprintf("pack %s is not indexed (left by an interrupted backup; garbage collection frees it)", name))
	}
	sort.Strings(rep.Notes)
	rep.Packs = len(packs)

	// 2. Block locations point inside known, intact packs.
	bad := map[index.Hash]string{} // block → what is wrong with it
	perPack := map[index.PackID]int64{}
	if err := v.idx.Blocks(func(e index.BlockEntry) error {
		rep.Blocks++
		info, ok := packs[e.Location.Pack]
		switch {
		case !ok:
			bad[e.Hash] = fmt.Sprintf("block %s is in unknown pack %s", e.Hash, e.Location.Pack)
		case int64(e.Location.Offset)+int64(e.Location.Length) > info.Size:
			bad[e.Hash] = fmt.Sprintf("block %s lies past the end of pack %s", e.Hash, e.Location.Pack)
		default:
			perPack[e.Location.Pack]++
		}
		return ctx.Err()
	}); err != nil {
		return nil, err
	}

	// 3. With Data: every blob decompresses and matches its hash, and
	// every indexed location is a good blob.
	if o.Data {
		if err := v.verifyData(ctx, packs, perPack, totalPackBytes, bad, rep, o.Progress); err != nil {
			return nil, err
		}
	}

	// 4. Every point's map pages and blocks are present and sound.
	points, err := v.Points("")
	if err != nil {
		return nil, err
	}
	rep.Points = len(points)
	affected := map[string][]string{} // problem → points
	for _, p := range points {
		damaged := false
		for di := range p.Disks {
			found, err := v.checkDisk(ctx, &p.Disks[di], bad, rep)
			if err != nil {
				return nil, err
			}
			for _, what := range found {
				affected[what] = append(affected[what], p.Name())
				damaged = true
			}
		}
		if damaged {
			rep.DamagedPoints = append(rep.DamagedPoints, p.Name())
		}
	}
	var whats []string
	for what := range bad {
		whats = append(whats, bad[what])
	}
	for what := range affected {
		if !slices.Contains(whats, what) {
			whats = append(whats, what)
		}
	}
	sort.Strings(whats)
	for _, what := range whats {
		rep.Problems = append(rep.Problems, Problem{What: what, Points: append([]string{}, affected[what]...)})
	}
	return rep, nil
}

// checkDisk returns the problems that make disk d unreadable, each once.
func (v *Vault) checkDisk(ctx context.Context, d *Disk, bad map[index.Hash]string, rep *VerifyReport) ([]string, error) {
	seen := map[string]bool{}
	var out []string
	note := func(what string) {
		if !seen[what] {
			seen[what] = true
			out = append(out, what)
		}
	}
	for p := range d.Pages {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if d.Pages[p].IsZero() {
			continue
		}
		if what, ok := bad[d.Pages[p]]; ok {
			note(what)
			continue
		}
		pg, err := v.page(d, p)
		if err != nil {
			what := fmt.Sprintf("map page %s: %v", d.Pages[p], errors.Unwrap(err))
			if errors.Is(err, chunkstore.ErrMissing) {
				rep.MissingBlocks++
				what = fmt.Sprintf("map page %s is missing", d.Pages[p])
			}
			note(what)
			continue
		}
		for off := 0; off < len(pg); off += hashSize {
			var h index.Hash
			copy(h[:], pg[off:])
			if h.IsZero() {
				continue
			}
			if what, ok := bad[h]; ok {
				note(what)
				continue
			}
			ok, err := v.idx.HasBlock(h)
			if err != nil {
				return nil, err
			}
			if !ok {
				what := fmt.Sprintf("block %s is missing", h)
				bad[h] = what
				rep.MissingBlocks++
				note(what)
			}
		}
	}
	return out, nil
}

func (v *Vault) verifyData(ctx context.Context, packs map[index.PackID]index.PackInfo, perPack map[index.PackID]int64,
	total int64, bad map[index.Hash]string, rep *VerifyReport, progress func(done, total int64)) error {
	ids := make([]index.PackID, 0, len(packs))
	for id := range packs {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return string(ids[i][:]) < string(ids[j][:]) })
	for _, id := range ids {
		if err := ctx.Err(); err != nil {
			return err
		}
		var good, damaged int64 // indexed blobs found in this pack
		var cbErr error
		err := v.store.CheckPack(id, func(c chunkstore.BlobCheck) {
			rep.BytesChecked += c.Length
			if progress != nil {
				progress(rep.BytesChecked, total)
			}
			loc, err := v.idx.Block(c.Hash)
			if errors.Is(err, index.ErrNotFound) {
				return // an unindexed copy; harmless
			}
			if err != nil {
				cbErr = err
				return
			}
			if loc.Pack != id || int64(loc.Offset) != c.Offset {
				return // another copy is the indexed one
			}
			if c.Err != nil {
				rep.DamagedBlocks++
				damaged++
				bad[c.Hash] = fmt.Sprintf("block %s in pack %s at offset %d is damaged: %v", c.Hash, id, c.Offset, c.Err)
				return
			}
			good++
		})
		if cbErr != nil {
			return cbErr
		}
		if err != nil {
			rep.UnreadablePack++
			rep.Problems = append(rep.Problems, Problem{What: err.Error(), Points: []string{}})
		}
		if good+damaged < perPack[id] {
			// Some index entries do not start a blob: find them.
			if err := v.idx.Blocks(func(e index.BlockEntry) error {
				if e.Location.Pack != id {
					return nil
				}
				if _, known := bad[e.Hash]; known {
					return nil
				}
				if _, err := v.store.Load(e.Hash, nil); err != nil {
					rep.DamagedBlocks++
					bad[e.Hash] = fmt.Sprintf("block %s in pack %s at offset %d is unreadable: %v", e.Hash, id, e.Location.Offset, err)
				}
				return nil
			}); err != nil {
				return err
			}
		}
	}
	return nil
}

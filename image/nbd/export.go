package nbd

import (
	"context"
	"io"
)

// Export is a disk the server serves, read-only: its bytes and its size.
// ReadAt must be safe for concurrent use; a read that cannot return the
// true bytes (a damaged block) must fail rather than return others: the
// client then gets an I/O error for that range, never wrong bytes.
//
// An Export may also implement, and the server then uses:
//   - DataFinder, to report holes: reads answer them with hole chunks
//     without reading, and base:allocation reports them as HOLE|ZERO;
//   - BlockSizer, whose block size becomes the preferred block size;
//   - Describer, for NBD_INFO_DESCRIPTION and NBD_OPT_LIST;
//   - Prefetcher, to act on NBD_CMD_CACHE;
//   - io.Closer: the server closes every Export that Lookup gave it once
//     done with it (the end of a connection, or of an NBD_OPT_INFO).
type Export interface {
	io.ReaderAt
	Size() int64
}

// DataFinder is an Export that knows where its data lies, in the shape
// of image.Source and snapshot.Source: NextData returns the first range
// [start, end) at or after off that may hold non-zero bytes, or
// (Size(), Size()) when none remains. Bytes outside every such range
// read as zeros.
type DataFinder interface {
	NextData(off int64) (start, end int64, err error)
}

// BlockSizer is an Export with a natural block size (a vault's block
// size): reads aligned to it are the efficient ones.
type BlockSizer interface {
	BlockSize() int64
}

// Describer is an Export with a description for people.
type Describer interface {
	Description() string
}

// Prefetcher is an Export that can load the block holding off ahead of
// a read (snapshot.DiskReader's Prefetch).
type Prefetcher interface {
	Prefetch(off int64)
}

// LookupFunc finds the export a client names; "" names the default
// export. It returns an error wrapping ErrUnknownExport when there is
// none of that name; any other error is reported to the client as the
// export being unavailable, and logged.
type LookupFunc func(ctx context.Context, name string) (Export, error)

// ExportInfo is one line of NBD_OPT_LIST.
type ExportInfo struct {
	Name        string
	Description string
}

// Extent is a run of an export's bytes with the flags one metadata
// context gives it: StateHole|StateZero for a hole of base:allocation,
// StateDirty for a dirty run of a qemu:dirty-bitmap context.
type Extent struct {
	Off, Len int64
	Flags    uint32
}

// End is the offset just past the extent.
func (e Extent) End() int64 { return e.Off + e.Len }

// preferredBlockSize is the power of two to advertise for e: its block
// size rounded down to a power of two within [512, MaxPayload], or 4 KiB.
func preferredBlockSize(e Export) uint32 {
	bs := int64(4096)
	if b, ok := e.(BlockSizer); ok && b.BlockSize() > 0 {
		bs = b.BlockSize()
	}
	bs = min(max(bs, 512), MaxPayload)
	p := uint32(512)
	for int64(p)*2 <= bs {
		p *= 2
	}
	return p
}

// allocationExtents describes [off, off+n) of e for base:allocation, in
// at most maxN extents: HOLE|ZERO for holes, 0 for data. Without a
// DataFinder everything is data.
func allocationExtents(e Export, off, n int64, maxN int) ([]Extent, error) {
	f, ok := e.(DataFinder)
	if !ok {
		return []Extent{{Off: off, Len: n}}, nil
	}
	end := off + n
	var out []Extent
	add := func(start, stop int64, flags uint32) {
		if k := len(out); k > 0 && out[k-1].Flags == flags && out[k-1].End() == start {
			out[k-1].Len += stop - start
			return
		}
		out = append(out, Extent{Off: start, Len: stop - start, Flags: flags})
	}
	for pos := off; pos < end && len(out) < maxN; {
		s, t, err := f.NextData(pos)
		if err != nil {
			return out, err
		}
		if s < pos || (s < end && t <= s) {
			// A finder that goes backwards or gives an empty range
			// would loop: call the rest data, which is always true.
			add(pos, end, 0)
			break
		}
		if s >= end {
			add(pos, end, StateHole|StateZero)
			break
		}
		if s > pos {
			add(pos, s, StateHole|StateZero)
		}
		if len(out) >= maxN {
			break
		}
		t = min(t, end)
		add(s, t, 0)
		pos = t
	}
	return out, nil
}

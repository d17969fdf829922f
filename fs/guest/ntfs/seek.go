package ntfs

import (
	"fmt"

	"github.com/cairn-backup/cairn/fs/guest"
)

var (
	_ guest.DataSeeker = (*FS)(nil)
	_ guest.Mapper     = (*FS)(nil)
)

// maxSeekUnits bounds the compression units one NextData call looks at;
// past it the answer errs towards data, which reads back correctly.
const maxSeekUnits = 1 << 16

// maxMapPieces bounds the runs or units one MapFile call maps.
const maxMapPieces = 256

// NextData returns the first range [start, end) at or after off that
// holds data of file ino, clipped to the file size; start and end are
// the size when none follows. Sparse runs, compression units with no
// cluster allocated and the part past the initialized size are holes;
// resident data is data throughout.
func (fs *FS) NextData(ino uint64, off int64) (int64, int64, error) {
	in, err := fs.userInode(ino)
	if err != nil {
		return 0, 0, err
	}
	s, size, err := fs.fileData(in)
	if err != nil {
		return 0, 0, err
	}
	if off < 0 {
		return 0, 0, fmt.Errorf("ntfs: MFT record %d: negative offset %d", ino, off)
	}
	if uint64(off) >= size {
		return int64(size), int64(size), nil
	}
	if s.resident {
		return off, int64(size), nil
	}
	if s.err != nil {
		return 0, 0, s.err
	}
	limit := min(size, s.initSize) // nothing past it is data
	pos := uint64(off)
	none := func() (int64, int64, error) { return int64(size), int64(size), nil }
	if pos >= limit {
		return none()
	}
	cs := fs.bt.clusterSize
	if s.flags&attrCompressed != 0 {
		ub := cs << s.cuShift
		if s.cuShift != stdCUShift || cs > maxCompressedClus {
			return off, int64(size), nil // reads will say what is wrong
		}
		u := pos / ub
		last := (limit - 1) / ub
		for n := 0; ; n++ {
			if u > last {
				return none()
			}
			if n >= maxSeekUnits {
				return int64(max(u*ub, pos)), int64(min((u+1)*ub, limit)), nil
			}
			k, _, err := fs.unitLayout(ino, s, u)
			if err != nil {
				return 0, 0, err
			}
			if k != unitHole {
				break
			}
			u++
		}
		start := max(u*ub, pos)
		e := u + 1
		for n := 0; e <= last && n < maxSeekUnits; n++ {
			k, _, err := fs.unitLayout(ino, s, e)
			if err != nil {
				return 0, 0, err
			}
			if k == unitHole {
				break
			}
			e++
		}
		return int64(start), int64(min(e*ub, limit)), nil
	}
	i := findRun(s.runs, pos/cs)
	if i < 0 {
		return 0, 0, corruptRecord(ino, "byte %d is not mapped", pos)
	}
	for i < len(s.runs) && s.runs[i].lcn == holeLCN {
		i++
	}
	if i == len(s.runs) || s.runs[i].vcn*cs >= limit {
		return none()
	}
	start := max(s.runs[i].vcn*cs, pos)
	j := i
	for j+1 < len(s.runs) && s.runs[j+1].lcn != holeLCN {
		j++
	}
	return int64(start), int64(min((s.runs[j].vcn+s.runs[j].n)*cs, limit)), nil
}

// MapFile appends the volume extents holding bytes [off, off+n) of file
// ino; see guest.Mapper. For a compressed file they are the clusters
// that hold the units covering the range, in their stored form; resident
// data and holes have none.
func (fs *FS) MapFile(dst []guest.Extent, ino uint64, off, n int64) ([]guest.Extent, error) {
	in, err := fs.userInode(ino)
	if err != nil {
		return dst, err
	}
	s, size, err := fs.fileData(in)
	if err != nil {
		return dst, err
	}
	if off < 0 || n < 0 {
		return dst, fmt.Errorf("ntfs: MFT record %d: negative range %d+%d", ino, off, n)
	}
	if s == nil || s.resident || s.err != nil || s.flags&attrEncrypted != 0 {
		return dst, nil
	}
	add := func(e guest.Extent) {
		if k := len(dst) - 1; k >= 0 && dst[k].Off+dst[k].Len == e.Off {
			dst[k].Len += e.Len
		} else {
			dst = append(dst, e)
		}
	}
	cs := fs.bt.clusterSize
	end := min(uint64(off)+uint64(n), size, s.initSize)
	pos := uint64(off)
	if s.flags&attrCompressed != 0 {
		if s.cuShift != stdCUShift || cs > maxCompressedClus {
			return dst, nil
		}
		ub := cs << s.cuShift
		for u, k := pos/ub, 0; u*ub < end && k < maxMapPieces; u, k = u+1, k+1 {
			_, pieces, err := fs.unitLayout(ino, s, u)
			if err != nil {
				return dst, err
			}
			for _, e := range pieces {
				add(e)
			}
		}
		return dst, nil
	}
	for k := 0; pos < end && k < maxMapPieces; k++ {
		i := findRun(s.runs, pos/cs)
		if i < 0 {
			return dst, corruptRecord(ino, "byte %d is not mapped", pos)
		}
		r := s.runs[i]
		within := pos - r.vcn*cs
		chunk := min(end-pos, r.n*cs-within)
		if r.lcn != holeLCN {
			add(guest.Extent{Off: int64(r.lcn*cs + within), Len: int64(chunk)})
		}
		pos += chunk
	}
	return dst, nil
}

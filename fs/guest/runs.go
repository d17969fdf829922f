package guest

// Run is what a block-mapped reader's map says of a file from one file
// block on: N blocks (at least 1) at volume block Phys, or blocks that
// read as zeros (Zero: a hole or an unwritten extent).
type Run struct {
	Phys, N uint64
	Zero    bool
}

// BlockMap maps file block lblk of one file to the run that starts there.
type BlockMap func(lblk uint64) (Run, error)

// NextDataRuns is DataSeeker.NextData for a file of size bytes (above
// off, which is not negative) in bs-byte blocks mapped by m. It maps at
// most maxRuns runs: past them it calls one block data (which reads back
// right), so a badly fragmented or damaged file costs bounded work per
// call, and end may then fall short of the next hole.
func NextDataRuns(m BlockMap, off int64, size, bs uint64, maxRuns int) (int64, int64, error) {
	last := (size - 1) / bs // last file block inside the file
	lblk := uint64(off) / bs
	runs := 0
	var r Run
	var err error
	// Skip holes up to the first data run.
	for {
		if lblk > last {
			return int64(size), int64(size), nil
		}
		if runs++; runs > maxRuns {
			// Too many holes: call one block data and let the caller
			// read it and ask again from there.
			return int64(max(lblk*bs, uint64(off))), int64(min((lblk+1)*bs, size)), nil
		}
		if r, err = m(lblk); err != nil {
			return 0, 0, err
		}
		if !r.Zero {
			break
		}
		lblk += r.N
	}
	start := max(lblk*bs, uint64(off))
	// Extend over the data runs that follow directly.
	end := lblk + r.N
	for end <= last && runs < maxRuns {
		runs++
		r, err := m(end)
		if err != nil {
			return 0, 0, err
		}
		if r.Zero {
			break
		}
		end += r.N
	}
	return int64(start), int64(min(end*bs, size)), nil
}

// AppendRunExtents is Mapper.MapFile for a file of size bytes in bs-byte
// blocks mapped by m: it appends to dst the volume extents of bytes
// [off, off+n), joining adjacent ones, and stops after maxRuns runs.
func AppendRunExtents(dst []Extent, m BlockMap, off, n int64, size, bs uint64, maxRuns int) ([]Extent, error) {
	pos := uint64(off)
	end := min(uint64(off)+uint64(n), size)
	for runs := 0; pos < end && runs < maxRuns; runs++ {
		r, err := m(pos / bs)
		if err != nil {
			return dst, err
		}
		within := pos % bs
		chunk := end - pos
		if r.N <= (chunk+within)/bs { // the run ends first; r.N is small here
			chunk = r.N*bs - within
		}
		if !r.Zero {
			e := Extent{Off: int64(r.Phys*bs + within), Len: int64(chunk)}
			if k := len(dst) - 1; k >= 0 && dst[k].Off+dst[k].Len == e.Off {
				dst[k].Len += e.Len
			} else {
				dst = append(dst, e)
			}
		}
		pos += chunk
	}
	return dst, nil
}

package ntfs

import (
	"math"
	"sort"
)

// holeLCN marks a run that is not allocated: sparse, or the unused tail
// of a compression unit.
const holeLCN = math.MaxUint64

// run maps n clusters from file cluster vcn to volume cluster lcn.
type run struct {
	vcn, lcn, n uint64
}

// decodeRuns appends to dst the runs of one extent's mapping pairs,
// starting at VCN lowVCN, and checks them against the volume's cluster
// count. It returns the VCN after the last run.
func decodeRuns(dst []run, mp []byte, lowVCN, totalClusters uint64) ([]run, uint64, bool) {
	vcn := lowVCN
	var lcn int64
	for i := 0; i < len(mp); {
		h := mp[i]
		if h == 0 {
			return dst, vcn, true
		}
		ls, os := int(h&0xF), int(h>>4)
		if ls == 0 || ls > 8 || os > 8 || i+1+ls+os > len(mp) {
			return dst, vcn, false
		}
		i++
		n := uint64(0)
		for k := ls - 1; k >= 0; k-- {
			n = n<<8 | uint64(mp[i+k])
		}
		i += ls
		if n == 0 || n > math.MaxInt64 || vcn+n < vcn || vcn+n > math.MaxInt64 {
			return dst, vcn, false
		}
		r := run{vcn: vcn, lcn: holeLCN, n: n}
		if os > 0 {
			d := int64(0)
			for k := os - 1; k >= 0; k-- {
				d = d<<8 | int64(mp[i+k])
			}
			// Sign-extend the delta from its stored width.
			if shift := 64 - 8*uint(os); shift > 0 {
				d = d << shift >> shift
			}
			i += os
			next := lcn + d
			if (d > 0 && next < lcn) || (d < 0 && next > lcn) || next < 0 {
				return dst, vcn, false
			}
			lcn = next
			if uint64(lcn) >= totalClusters || n > totalClusters-uint64(lcn) {
				return dst, vcn, false
			}
			r.lcn = uint64(lcn)
		}
		if k := len(dst) - 1; k >= 0 && dst[k].lcn == holeLCN && r.lcn == holeLCN && dst[k].vcn+dst[k].n == vcn {
			dst[k].n += n // merge adjacent holes
		} else {
			dst = append(dst, r)
		}
		vcn += n
	}
	return dst, vcn, false // no terminating zero byte
}

// findRun returns the index of the run holding vcn, or -1 when none
// does (past the mapped extents).
func findRun(runs []run, vcn uint64) int {
	i := sort.Search(len(runs), func(i int) bool { return runs[i].vcn+runs[i].n > vcn })
	if i < len(runs) && runs[i].vcn <= vcn {
		return i
	}
	return -1
}

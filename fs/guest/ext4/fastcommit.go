package ext4

import (
	"container/heap"
	"encoding/binary"
	"fmt"
	"slices"
	"sort"
	"syscall"

	"github.com/cairn-backup/cairn/fs/guest"
	"github.com/cairn-backup/cairn/fs/guest/lru"
)

// Fast commits (ext4's fast_commit feature) log, after the last full
// jbd2 transaction, the changes of files fsync'ed since, not as blocks
// but as tags: a range of a file mapped or unmapped, an inode's new
// fields, a name linked or unlinked. Recovery scans the fast-commit area
// after the log and applies the tags up to the last tail whose crc32c
// and transaction ID check out (ext4_fc_replay_scan), in order.
//
// This reader applies them in memory, as the kernel's and e2fsck's
// replay do on disk (fs/ext4/fast_commit.c, e2fsck/journal.c):
//   - INODE: the logged inode replaces the inode's fields, but i_block
//     (the extent tree root) stays as on disk, or empty if none is
//     there; an inline inode takes the logged i_block;
//   - ADD_RANGE, DEL_RANGE: a block is mapped as the newest range that
//     covers it says (as punching each range then adding the new extent
//     does), a block no range covers as the file's own tree says;
//   - CREAT, LINK: the name, in its directory, names the inode (an
//     entry of the same name goes first); UNLINK: the name goes if it
//     names that inode. Listings apply these over the blocks on disk.
//
// A tag the reader cannot apply (an inode out of range, a range on a
// file without extents) ends the replay there, logged, as an error ends
// the kernel's.

// Fast-commit tags (struct ext4_fc_tl: le16 tag, le16 length).
const (
	fcAddRange = 1
	fcDelRange = 2
	fcCreat    = 3
	fcLink     = 4
	fcUnlink   = 5
	fcInode    = 6
	fcPad      = 7
	fcTail     = 8
	fcHead     = 9
	fcTagLen   = 4
	maxNameLen = 255
	// maxFCBytes bounds the tag values a fast-commit scan keeps.
	maxFCBytes = 64 << 20
)

type fcTag struct {
	tag uint16
	val []byte
}

// fcValueLenOK is the kernel's ext4_fc_value_len_isvalid.
func (j *journal) fcValueLenOK(tag uint16, n int) bool {
	switch tag {
	case fcAddRange:
		return n == 16
	case fcDelRange:
		return n == 12
	case fcCreat, fcLink, fcUnlink:
		return n-8 >= 1 && n-8 <= maxNameLen
	case fcInode:
		return n-4 >= goodOldInodeSize && n-4 <= int(j.fs.sb.inodeSize)
	case fcPad:
		return true
	case fcTail:
		return n >= 8
	case fcHead:
		return n == 8
	}
	return false
}

// scanFastCommit is the fast-commit half of PASS_SCAN: it returns the
// tags up to the last valid tail of the area, for transaction tid. An
// error fails the whole recovery, as the kernel's does: a first tail
// that does not check out, an unknown tag before any valid tail,
// unknown features.
func (j *journal) scanFastCommit(tid uint32) ([]fcTag, error) {
	le := binary.LittleEndian
	var tags []fcTag
	valid := 0
	crc := uint32(0)
	end := int(j.bs) - 1 // the last byte of a block is never used
	stopOr := func(err error) error {
		if valid > 0 {
			return nil
		}
		return err
	}
	buf := make([]byte, j.bs)
	kept := 0
	for blk := j.fcFirst; blk <= j.fcLast && blk < j.total; blk++ {
		if err := j.read(blk, buf); err != nil {
			return nil, err
		}
		if blk == j.fcFirst && le.Uint16(buf) != fcHead {
			return nil, nil // no fast commit since the last full one
		}
		for cur := 0; cur <= end-fcTagLen; {
			tag, n := le.Uint16(buf[cur:]), int(le.Uint16(buf[cur+2:]))
			val := cur + fcTagLen
			if n > end-val || !j.fcValueLenOK(tag, n) {
				return tags[:valid], stopOr(journalErr("fast commit block %d: tag %d of %d bytes", blk, tag, n))
			}
			v := buf[val : val+n]
			switch tag {
			case fcAddRange:
				if le.Uint16(v[8:]) == 0 { // ee_len
					return tags[:valid], nil
				}
				fallthrough
			case fcDelRange, fcLink, fcUnlink, fcCreat, fcInode, fcPad:
				crc = crc32c(crc, buf[cur:val+n])
			case fcTail:
				crc = crc32c(crc, buf[cur:val+4])
				ok := le.Uint32(v) == tid && le.Uint32(v[4:]) == crc
				crc = 0
				if !ok {
					j.fs.logf("ext4: journal: fast commit tail in block %d does not check out; replay ends before it", blk)
					return tags[:valid], stopOr(journalErr("first fast commit fails its checksum"))
				}
				valid = len(tags) + 1
			case fcHead:
				if f := le.Uint32(v); f != 0 {
					return nil, journalErr("fast commit features %#x", f)
				}
				if le.Uint32(v[4:]) != tid {
					return tags[:valid], nil // an older transaction's
				}
				crc = crc32c(crc, buf[cur:val+n])
			default:
				return tags[:valid], stopOr(journalErr("fast commit block %d: unknown tag %d", blk, tag))
			}
			if kept += n + 16; kept > maxFCBytes {
				return nil, journalErr("fast commits of more than %d bytes", maxFCBytes)
			}
			tags = append(tags, fcTag{tag, slices.Clone(v)})
			cur = val + n
		}
	}
	return tags[:valid], nil
}

// fcState is what the fast commits change, over the blocks on disk.
type fcState struct {
	raw    map[uint64][]byte    // replayed on-disk inodes
	ranges map[uint64]*fcRanges // files whose mapping the tags edited
	dirOps map[uint64][]fcDirOp // entry changes per directory, in order
}

// fcRange is one ADD_RANGE (a mapping) or DEL_RANGE (a hole).
type fcRange struct {
	lblk, n   uint64
	pblk      uint64
	del       bool
	unwritten bool
}

// fcRanges are the range tags of one file, in order, and once all are
// known, segs: the logical blocks they cover, split where the newest
// range covering them changes. The newest covering range decides a
// block, as punching then adding each range in turn does (e2fsck's
// ext4_modify_extent_list); blocks no range covers map through the
// file's own tree.
type fcRanges struct {
	ops  []fcRange
	segs []fcSeg
}

type fcSeg struct {
	lblk, end uint64
	op        int // index in ops
}

type fcDirOp struct {
	link bool // else unlink
	name string
	ino  uint64
	ft   uint8
}

// replayed returns the on-disk bytes of inode ino as replayed, if a
// fast commit logged it. A nil state has none.
func (st *fcState) replayed(ino uint64) ([]byte, bool) {
	if st == nil {
		return nil, false
	}
	b, ok := st.raw[ino]
	return b, ok
}

// rangesOf returns the range tags of ino, if any.
func (st *fcState) rangesOf(ino uint64) *fcRanges {
	if st == nil {
		return nil
	}
	return st.ranges[ino]
}

// dirOpsOf returns the entry changes of directory ino.
func (st *fcState) dirOpsOf(ino uint64) []fcDirOp {
	if st == nil {
		return nil
	}
	return st.dirOps[ino]
}

// applyFastCommit applies tags to fs, whose volume already holds the
// replayed jbd2 blocks.
func (fs *FS) applyFastCommit(tags []fcTag) {
	fs.fc = &fcState{raw: map[uint64][]byte{}, ranges: map[uint64]*fcRanges{}, dirOps: map[uint64][]fcDirOp{}}
	// Nothing read while applying may stay cached: it saw a partial state.
	fs.inodes, fs.dirs = lru.New[uint64, *inode](0), lru.New[uint64, *dirListing](0)
	defer func() {
		for _, r := range fs.fc.ranges {
			r.flatten()
		}
		fs.inodes, fs.dirs = newInodeCache(), newDirCache()
	}()
	le := binary.LittleEndian
	for i, t := range tags {
		var err error
		switch t.tag {
		case fcInode:
			err = fs.fcInode(le.Uint32(t.val), t.val[4:])
		case fcAddRange:
			e := t.val[4:]
			n := uint64(le.Uint16(e[4:]))
			x := fcRange{lblk: uint64(le.Uint32(e)), pblk: uint64(le.Uint16(e[6:]))<<32 | uint64(le.Uint32(e[8:])), n: n}
			if n > initMaxLen {
				x.n, x.unwritten = n-initMaxLen, true
			}
			if !fs.checkRange(x.pblk, x.n) {
				err = corruptInode(uint64(le.Uint32(t.val)), "fast commit maps blocks %d+%d outside the filesystem", x.pblk, x.n)
				break
			}
			err = fs.fcAddRange(uint64(le.Uint32(t.val)), x)
		case fcDelRange:
			x := fcRange{lblk: uint64(le.Uint32(t.val[4:])), n: uint64(le.Uint32(t.val[8:])), del: true}
			err = fs.fcAddRange(uint64(le.Uint32(t.val)), x)
		case fcCreat, fcLink, fcUnlink:
			err = fs.fcDentry(t.tag, uint64(le.Uint32(t.val)), uint64(le.Uint32(t.val[4:])), string(t.val[8:]))
		}
		if err != nil {
			fs.logf("ext4: journal: fast commit tag %d of %d (type %d) not applied, replay ends: %v", i+1, len(tags), t.tag, err)
			return
		}
	}
}

// rawInode returns a copy of inode ino's on-disk bytes, as replayed so far.
func (fs *FS) rawInode(ino uint64) ([]byte, error) {
	if b, ok := fs.fc.replayed(ino); ok {
		return slices.Clone(b), nil
	}
	if ino == 0 || ino > uint64(fs.sb.inodesCount) {
		return nil, fmt.Errorf("ext4: inode %d out of range: %w", ino, guest.ErrCorrupt)
	}
	blk, off, err := fs.inodeLoc(ino)
	if err != nil {
		return nil, err
	}
	b, err := fs.block(blk)
	if err != nil {
		return nil, corruptInodeErr(ino, "inode table", err)
	}
	return slices.Clone(b[off : off+uint64(fs.sb.inodeSize)]), nil
}

func (fs *FS) fcInode(ino uint32, logged []byte) error {
	le := binary.LittleEndian
	raw, err := fs.rawInode(uint64(ino))
	if err != nil {
		return err
	}
	n := goodOldInodeSize
	if len(raw) > goodOldInodeSize {
		extra := int(le.Uint16(logged[0x80:]))
		if extra < 4 || goodOldInodeSize+extra > len(raw) || goodOldInodeSize+extra > len(logged) {
			return corruptInode(uint64(ino), "logged i_extra_isize %d", extra)
		}
		n += extra
	}
	// Everything but i_block (0x28..0x64), which keeps the tree on disk.
	copy(raw[:0x28], logged[:0x28])
	copy(raw[0x64:n], logged[0x64:n])
	flags := le.Uint32(raw[0x20:])
	switch {
	case flags&flagExtents != 0:
		if le.Uint16(raw[0x28:]) != extentMagic {
			clear(raw[0x28:0x64])
			le.PutUint16(raw[0x28:], extentMagic)
			le.PutUint16(raw[0x2C:], 4) // eh_max of the root in i_block
		}
	case flags&flagInlineData != 0:
		copy(raw[0x28:0x64], logged[0x28:0x64])
	}
	fs.fc.raw[uint64(ino)] = raw
	return nil
}

// fcAddRange records a range tag of ino.
func (fs *FS) fcAddRange(ino uint64, x fcRange) error {
	if ino == 0 || ino > uint64(fs.sb.inodesCount) {
		return fmt.Errorf("ext4: inode %d out of range: %w", ino, guest.ErrCorrupt)
	}
	if x.n == 0 {
		return nil
	}
	r := fs.fc.ranges[ino]
	if r == nil {
		r = &fcRanges{}
		fs.fc.ranges[ino] = r
	}
	r.ops = append(r.ops, x)
	return nil
}

// flatten computes segs from ops: a sweep over the ranges' ends, keeping
// the newest range covering each stretch.
func (r *fcRanges) flatten() {
	type event struct {
		at    uint64
		op    int
		start bool
	}
	evs := make([]event, 0, 2*len(r.ops))
	for i, o := range r.ops {
		evs = append(evs, event{o.lblk, i, true}, event{o.lblk + o.n, i, false})
	}
	sort.Slice(evs, func(a, b int) bool { return evs[a].at < evs[b].at })
	var active opHeap // newest range first
	ended := make([]bool, len(r.ops))
	r.segs = nil
	prev := uint64(0)
	for i := 0; i < len(evs); {
		at := evs[i].at
		if len(active) > 0 && prev < at {
			top := active[0]
			if k := len(r.segs) - 1; k >= 0 && r.segs[k].op == top && r.segs[k].end == prev {
				r.segs[k].end = at
			} else {
				r.segs = append(r.segs, fcSeg{prev, at, top})
			}
		}
		for ; i < len(evs) && evs[i].at == at; i++ {
			if evs[i].start {
				heap.Push(&active, evs[i].op)
			} else {
				ended[evs[i].op] = true
			}
		}
		for len(active) > 0 && ended[active[0]] {
			heap.Pop(&active)
		}
		prev = at
	}
}

// opHeap is a max-heap of range indices: the newest range on top.
type opHeap []int

func (h opHeap) Len() int           { return len(h) }
func (h opHeap) Less(a, b int) bool { return h[a] > h[b] }
func (h opHeap) Swap(a, b int)      { h[a], h[b] = h[b], h[a] }
func (h *opHeap) Push(x any)        { *h = append(*h, x.(int)) }
func (h *opHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// mapFC maps lblk of in through its replayed ranges, and through its own
// tree where none covers it.
func (fs *FS) mapFC(in *inode, r *fcRanges, lblk uint64) (run, error) {
	i := sort.Search(len(r.segs), func(i int) bool { return r.segs[i].end > lblk })
	if i < len(r.segs) && r.segs[i].lblk <= lblk {
		s, o := r.segs[i], r.ops[r.segs[i].op]
		n := s.end - lblk
		if o.del {
			return run{zero: true, n: n}, nil
		}
		return run{phys: o.pblk + (lblk - o.lblk), n: n, zero: o.unwritten}, nil
	}
	var d run
	var err error
	switch {
	case in.flags&flagExtents != 0:
		d, err = fs.mapExtent(in, lblk)
	case in.inline() || allZero(in.iblock[:]):
		d = run{zero: true, n: noMoreBlocks}
	default:
		d, err = fs.mapIndirect(in, lblk)
	}
	if err != nil {
		return run{}, err
	}
	if i < len(r.segs) {
		d.n = min(d.n, r.segs[i].lblk-lblk) // up to the next replayed range
	}
	return d, nil
}

func (fs *FS) fcDentry(tag uint16, parent, ino uint64, name string) error {
	if tag == fcUnlink {
		fs.fc.dirOps[parent] = append(fs.fc.dirOps[parent], fcDirOp{name: name, ino: ino})
		return nil
	}
	in, err := fs.inode(ino)
	if err != nil {
		return err
	}
	ft := uint8(0)
	for i, m := range fileTypes {
		if m != 0 && m == in.fileType() {
			ft = uint8(i)
		}
	}
	if ft == 0 {
		return corruptInode(ino, "linked with mode %o", in.mode)
	}
	if in.fileType() == syscall.S_IFDIR && ino == parent {
		return corruptInode(ino, "linked into itself")
	}
	fs.fc.dirOps[parent] = append(fs.fc.dirOps[parent], fcDirOp{link: true, name: name, ino: ino, ft: ft})
	return nil
}

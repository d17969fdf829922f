package ext4

import (
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
//   - ADD_RANGE, DEL_RANGE: the file's extents, read once from its tree,
//     are edited as a list: the range is punched, then the new extent
//     added; reads map through the list;
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
	// maxFCExtents bounds the extent list of one file under replay.
	maxFCExtents = 1 << 20
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
	for blk := j.fcFirst; blk <= j.fcLast && blk < j.total; blk++ {
		buf := make([]byte, j.bs)
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
			tags = append(tags, fcTag{tag, v})
			cur = val + n
		}
	}
	return tags[:valid], nil
}

// fcState is what the fast commits change, over the blocks on disk.
type fcState struct {
	raw     map[uint64][]byte     // replayed on-disk inodes
	extents map[uint64][]fcExtent // files whose mapping the tags edited
	dirOps  map[uint64][]fcDirOp  // entry changes per directory, in order
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

// extentsOf returns the replayed extents of ino, if the tags edited them.
func (st *fcState) extentsOf(ino uint64) ([]fcExtent, bool) {
	if st == nil {
		return nil, false
	}
	l, ok := st.extents[ino]
	return l, ok
}

// dirOpsOf returns the entry changes of directory ino.
func (st *fcState) dirOpsOf(ino uint64) []fcDirOp {
	if st == nil {
		return nil
	}
	return st.dirOps[ino]
}

type fcExtent struct {
	lblk, pblk, n uint64
	unwritten     bool
}

type fcDirOp struct {
	link bool // else unlink
	name string
	ino  uint64
	ft   uint8
}

// applyFastCommit applies tags to fs, whose volume already holds the
// replayed jbd2 blocks.
func (fs *FS) applyFastCommit(tags []fcTag) {
	fs.fc = &fcState{raw: map[uint64][]byte{}, extents: map[uint64][]fcExtent{}, dirOps: map[uint64][]fcDirOp{}}
	// Nothing read while applying may stay cached: it saw a partial state.
	fs.inodes, fs.dirs = lru.New[uint64, *inode](0), lru.New[uint64, *dirListing](0)
	defer func() { fs.inodes, fs.dirs = newInodeCache(), newDirCache() }()
	le := binary.LittleEndian
	for i, t := range tags {
		var err error
		switch t.tag {
		case fcInode:
			err = fs.fcInode(le.Uint32(t.val), t.val[4:])
		case fcAddRange:
			e := t.val[4:]
			n := uint64(le.Uint16(e[4:]))
			x := fcExtent{lblk: uint64(le.Uint32(e)), pblk: uint64(le.Uint16(e[6:]))<<32 | uint64(le.Uint32(e[8:])), n: n}
			if n > initMaxLen {
				x.n, x.unwritten = n-initMaxLen, true
			}
			err = fs.fcEditExtents(uint64(le.Uint32(t.val)), x, false)
		case fcDelRange:
			x := fcExtent{lblk: uint64(le.Uint32(t.val[4:])), n: uint64(le.Uint32(t.val[8:]))}
			err = fs.fcEditExtents(uint64(le.Uint32(t.val)), x, true)
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

// fcEditExtents punches x's range from ino's extent list and, unless
// del, adds x; as e2fsck's ext4_modify_extent_list.
func (fs *FS) fcEditExtents(ino uint64, x fcExtent, del bool) error {
	list, ok := fs.fc.extents[ino]
	if !ok {
		in, err := fs.inode(ino)
		if err != nil {
			return err
		}
		if list, err = fs.extentList(in); err != nil {
			return err
		}
	}
	if x.n == 0 {
		return nil
	}
	end := x.lblk + x.n // first block past the range
	var out []fcExtent
	for _, e := range list {
		eEnd := e.lblk + e.n
		if eEnd <= x.lblk || e.lblk >= end {
			out = append(out, e)
			continue
		}
		if e.lblk < x.lblk { // the part before the range
			out = append(out, fcExtent{e.lblk, e.pblk, x.lblk - e.lblk, e.unwritten})
		}
		if eEnd > end { // the part after
			off := end - e.lblk
			out = append(out, fcExtent{end, e.pblk + off, eEnd - end, e.unwritten})
		}
	}
	if !del {
		if !fs.checkRange(x.pblk, x.n) {
			return corruptInode(ino, "fast commit maps blocks %d+%d outside the filesystem", x.pblk, x.n)
		}
		out = append(out, x)
	}
	if len(out) > maxFCExtents {
		return corruptInode(ino, "more than %d extents", maxFCExtents)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].lblk < out[b].lblk })
	merged := out[:0]
	for _, e := range out {
		if k := len(merged) - 1; k >= 0 && merged[k].lblk+merged[k].n == e.lblk &&
			merged[k].pblk+merged[k].n == e.pblk && merged[k].unwritten == e.unwritten {
			merged[k].n += e.n
			continue
		}
		merged = append(merged, e)
	}
	fs.fc.extents[ino] = merged
	return nil
}

// extentList reads every extent of in's tree, in logical order.
func (fs *FS) extentList(in *inode) ([]fcExtent, error) {
	if in.flags&flagExtents == 0 {
		if in.inline() || allZero(in.iblock[:]) {
			return nil, nil
		}
		return nil, corruptInode(in.ino, "fast commit range on a file without extents")
	}
	var out []fcExtent
	for lblk := uint64(0); lblk < 1<<32; {
		if len(out) > maxFCExtents {
			return nil, corruptInode(in.ino, "more than %d extents", maxFCExtents)
		}
		r, err := fs.mapExtent(in, lblk)
		if err != nil {
			return nil, err
		}
		if r.n >= noMoreBlocks {
			break
		}
		if !r.zero || r.phys != 0 {
			out = append(out, fcExtent{lblk, r.phys, r.n, r.zero})
		}
		lblk += r.n
	}
	return out, nil
}

// mapFC maps lblk through a replayed extent list.
func mapFC(list []fcExtent, lblk uint64) run {
	i := sort.Search(len(list), func(i int) bool { return list[i].lblk+list[i].n > lblk })
	if i == len(list) {
		return run{zero: true, n: noMoreBlocks}
	}
	e := list[i]
	if lblk < e.lblk {
		return run{zero: true, n: e.lblk - lblk}
	}
	off := lblk - e.lblk
	return run{phys: e.pblk + off, n: e.n - off, zero: e.unwritten}
}

// fcBlocks is i_blocks of a file whose extents were replayed: its data,
// the tree blocks beyond the root and its xattr block, in 512-byte units.
func (fs *FS) fcBlocks(in *inode, list []fcExtent) uint64 {
	var n uint64
	for _, e := range list {
		n += e.n
	}
	if len(list) > 4 {
		per := uint64(fs.sb.blockSize-12) / 12
		n += (uint64(len(list)) + per - 1) / per
	}
	units := n * uint64(fs.sb.blockSize/512)
	if in.fileACL != 0 {
		units += fs.sb.clusterSize() / 512
	}
	return units
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

package ext4

import (
	"encoding/binary"
	"fmt"
	"io"

	"github.com/cairn-backup/cairn/fs/guest"
)

// A disk backed up while its filesystem was mounted holds committed
// transactions in the journal that were not yet written in place
// (needs_recovery). The kernel replays them before it mounts; so does
// this reader, in memory: replayJournal maps each filesystem block the
// journal rewrites to its newest committed copy, and journalOverlay
// serves those copies in place of the stale blocks. The volume itself is
// never written. Only the internal journal (jbd2) is read.
//
// The replay follows jbd2's recovery (fs/jbd2/recovery.c, which e2fsck
// shares) pass by pass, checksums included:
//   - the journal superblock must be one this reader understands and,
//     with checksums v2/v3, pass its own crc32c; otherwise nothing is
//     replayed;
//   - the scan ends at the first block that is not the next one of the
//     expected transaction; a transaction without its commit block is
//     not replayed;
//   - a commit block failing its checksum (crc32c with v2/v3, the crc32
//     of the transaction's blocks with the v1 "checksum" feature) ends
//     the log before that transaction, with or without async_commit,
//     unless its commit time is older than the previous commit's (a
//     stale block from an older log): then the log simply ends there;
//   - a descriptor or revoke block failing its checksum is either stale
//     (the commit that follows is older: the log ends there) or damage
//     (the commit is as new: recovery fails and nothing is replayed);
//   - revoke records apply to the blocks of their own and earlier
//     transactions;
//   - a logged block failing its tag checksum is skipped; the others
//     are replayed.
//
// A fast-commit area (fastcommit.go) is scanned after the log: its tags
// up to the last valid tail apply on top of the replayed blocks.

// jbd2 on-disk constants; every journal field is big-endian.
const (
	jbdMagic          = 0xC03B3998
	jbdDescriptor     = 1
	jbdCommit         = 2
	jbdSuperV1        = 3
	jbdSuperV2        = 4
	jbdRevoke         = 5
	jbdCompatChecksum = 0x1
	jbdFeatRevoke     = 0x1
	jbdFeat64bit      = 0x2
	jbdFeatAsync      = 0x4
	jbdFeatCsumV2     = 0x8
	jbdFeatCsumV3     = 0x10
	jbdFeatFastComm   = 0x20
	jbdKnownIncompat  = jbdFeatRevoke | jbdFeat64bit | jbdFeatAsync | jbdFeatCsumV2 | jbdFeatCsumV3 | jbdFeatFastComm
	jbdTagEscape      = 0x1
	jbdTagSameUUID    = 0x2
	jbdTagLast        = 0x8
	jbdCRC32          = 1 // commit block checksum type of the v1 feature
	jbdCRC32C         = 4 // superblock checksum type of v2/v3
	jbdMinBlocks      = 1024
	jbdDefaultFCs     = 256 // fast-commit blocks when the superblock says 0
)

// journalCopy is where the newest committed copy of a block lies.
type journalCopy struct {
	off     int64 // byte offset on the volume
	escaped bool  // its first four bytes were the journal magic, zeroed in the log
}

func journalErr(format string, args ...any) error {
	return fmt.Errorf("ext4: journal: %s: %w", fmt.Sprintf(format, args...), guest.ErrCorrupt)
}

// journal is an open jbd2 journal: its superblock, checked.
type journal struct {
	fs       *FS
	ino      uint64
	bs       int64
	total    int64 // blocks of the journal inode
	first    int64 // first log block
	last     int64 // end of the log: the fast-commit area or the end follows
	fcFirst  int64 // fast-commit area [fcFirst, fcLast], when fc is set
	fcLast   int64
	seq      uint32 // first transaction to replay
	start    int64  // its first block; 0: nothing to replay
	compat   uint32
	incompat uint32
	seed     uint32 // crc32c of the journal UUID, for v2/v3
	tagBytes int64
	tail     int64 // bytes of the checksum tail of descriptor and revoke blocks
}

func (j *journal) csumV23() bool     { return j.incompat&(jbdFeatCsumV2|jbdFeatCsumV3) != 0 }
func (j *journal) has(f uint32) bool { return j.incompat&f != 0 }

// read fills p with journal block i.
func (j *journal) read(i int64, p []byte) error {
	if i < 0 || i >= j.total {
		return journalErr("block %d outside the %d-block journal", i, j.total)
	}
	n, err := j.fs.ReadAt(j.ino, p, i*j.bs)
	if n != len(p) {
		if err == nil || err == io.EOF {
			err = journalErr("short read of block %d", i)
		}
		return err
	}
	return nil
}

// where returns the volume offset of journal block i.
func (j *journal) where(i int64) (int64, error) {
	ext, err := j.fs.MapFile(nil, j.ino, i*j.bs, j.bs)
	if err != nil {
		return 0, err
	}
	if len(ext) != 1 || ext[0].Len != j.bs {
		return 0, journalErr("block %d is not mapped to the volume", i)
	}
	return ext[0].Off, nil
}

// openJournal reads and checks the journal superblock as e2fsck's
// journal load does.
func (fs *FS) openJournal() (*journal, error) {
	ino := uint64(fs.sb.journalIno)
	in, err := fs.inode(ino)
	if err != nil {
		return nil, fmt.Errorf("ext4: journal inode %d: %w", ino, err)
	}
	j := &journal{fs: fs, ino: ino, bs: int64(fs.sb.blockSize)}
	j.total = int64(in.size / uint64(j.bs))
	be := binary.BigEndian
	buf := make([]byte, j.bs)
	if err := j.read(0, buf); err != nil {
		return nil, err
	}
	if be.Uint32(buf) != jbdMagic {
		return nil, journalErr("no superblock magic")
	}
	switch btype := be.Uint32(buf[4:]); btype {
	case jbdSuperV1:
		// Version 1 has no features.
	case jbdSuperV2:
		j.compat = be.Uint32(buf[0x24:])
		j.incompat = be.Uint32(buf[0x28:])
		if users := be.Uint32(buf[0x40:]); users > 1 {
			return nil, journalErr("shared by %d filesystems", users)
		}
		if ro := be.Uint32(buf[0x2C:]); ro != 0 {
			return nil, journalErr("unknown read-only features %#x", ro)
		}
	default:
		return nil, journalErr("superblock type %d", btype)
	}
	if j.incompat&^jbdKnownIncompat != 0 {
		return nil, journalErr("unknown features %#x", j.incompat&^jbdKnownIncompat)
	}
	if j.has(jbdFeatCsumV2) && j.has(jbdFeatCsumV3) || j.csumV23() && j.compat&jbdCompatChecksum != 0 {
		return nil, journalErr("several checksum versions")
	}
	if j.csumV23() {
		if buf[0x50] != jbdCRC32C {
			return nil, journalErr("checksum type %d", buf[0x50])
		}
		if crc32cSkip(^uint32(0), buf[:1024], 0xFC, 4) != be.Uint32(buf[0xFC:]) {
			return nil, journalErr("superblock checksum does not match")
		}
		j.seed = crc32c(^uint32(0), buf[0x30:0x40])
	}
	if int64(be.Uint32(buf[0xC:])) != j.bs {
		return nil, journalErr("block size %d, filesystem's %d", be.Uint32(buf[0xC:]), j.bs)
	}
	maxLen := int64(be.Uint32(buf[0x10:]))
	if maxLen > j.total {
		return nil, journalErr("%d blocks in a %d-block inode", maxLen, j.total)
	}
	j.total = maxLen
	j.first = int64(be.Uint32(buf[0x14:]))
	j.seq = be.Uint32(buf[0x18:])
	j.start = int64(be.Uint32(buf[0x1C:]))
	j.last = maxLen
	if j.has(jbdFeatFastComm) {
		nfc := int64(be.Uint32(buf[0x54:]))
		if nfc == 0 {
			nfc = jbdDefaultFCs
		}
		if maxLen-nfc < jbdMinBlocks {
			return nil, journalErr("%d fast-commit blocks in %d", nfc, maxLen)
		}
		j.fcLast = maxLen
		j.last = maxLen - nfc
		j.fcFirst = j.last + 1
	}
	if j.start != 0 && (j.first < 1 || j.first >= j.last || j.start < j.first || j.start >= j.last) {
		return nil, journalErr("log [%d, %d) starting at %d", j.first, j.last, j.start)
	}
	switch {
	case j.has(jbdFeatCsumV3):
		j.tagBytes = 16
	case j.has(jbdFeatCsumV2):
		j.tagBytes = 10
		if j.has(jbdFeat64bit) {
			j.tagBytes = 14
		}
	case j.has(jbdFeat64bit):
		j.tagBytes = 12
	default:
		j.tagBytes = 8
	}
	if j.csumV23() {
		j.tail = 4
	}
	return j, nil
}

// next returns the log block after i, wrapping at the end of the log.
func (j *journal) next(i int64) int64 {
	if i++; i >= j.last {
		return j.first + (i - j.last)
	}
	return i
}

// tag is one entry of a descriptor block.
type tag struct {
	block uint64
	flags uint32
	csum  []byte // the tag's checksum field (2 bytes with v2, 4 with v3)
}

// tags parses the tags of descriptor block b: jbd2's count_tags and the
// replay loop walk them the same way.
func (j *journal) tags(b []byte) []tag {
	be := binary.BigEndian
	var out []tag
	for off := int64(12); off+j.tagBytes <= j.bs-j.tail; {
		t := b[off:]
		var tg tag
		if j.tagBytes == 16 {
			tg = tag{block: uint64(be.Uint32(t)), flags: be.Uint32(t[4:]), csum: t[12:16]}
			if j.has(jbdFeat64bit) {
				tg.block |= uint64(be.Uint32(t[8:])) << 32
			}
		} else {
			tg = tag{block: uint64(be.Uint32(t)), flags: uint32(be.Uint16(t[6:])), csum: t[4:6]}
			if j.has(jbdFeat64bit) {
				tg.block |= uint64(be.Uint32(t[8:])) << 32
			}
		}
		out = append(out, tg)
		off += j.tagBytes
		if tg.flags&jbdTagSameUUID == 0 {
			off += 16
		}
		if tg.flags&jbdTagLast != 0 {
			break
		}
	}
	return out
}

// blockTailOK checks the crc32c tail of a descriptor or revoke block.
func (j *journal) blockTailOK(b []byte) bool {
	if !j.csumV23() {
		return true
	}
	return crc32cSkip(j.seed, b, len(b)-4, 4) == binary.BigEndian.Uint32(b[len(b)-4:])
}

// commitOK checks a commit block's crc32c (v2/v3).
func (j *journal) commitOK(b []byte) bool {
	if !j.csumV23() {
		return true
	}
	return crc32cSkip(j.seed, b, 16, 4) == binary.BigEndian.Uint32(b[16:])
}

// tagOK checks the checksum of logged block data of transaction seq.
func (j *journal) tagOK(tg tag, data []byte, seq uint32) bool {
	if !j.csumV23() {
		return true
	}
	var s [4]byte
	binary.BigEndian.PutUint32(s[:], seq)
	crc := crc32c(crc32c(j.seed, s[:]), data)
	if j.has(jbdFeatCsumV3) {
		return binary.BigEndian.Uint32(tg.csum) == crc
	}
	return binary.BigEndian.Uint16(tg.csum) == uint16(crc)
}

// scan is jbd2's PASS_SCAN: it returns the first transaction not to
// replay. An error means recovery fails as a whole.
func (j *journal) scan() (uint32, error) {
	be := binary.BigEndian
	buf := make([]byte, j.bs)
	data := make([]byte, j.bs)
	next, blk := j.seq, j.start
	var end uint32
	endSet := false
	crcSum := ^uint32(0) // the v1 checksum of the transaction so far
	needCheckTime := false
	var lastTime uint64
	// A log visits each of its blocks once: more means a damaged cycle.
	for visited := int64(0); visited <= j.total; visited++ {
		if err := j.read(blk, buf); err != nil {
			return 0, err
		}
		here := blk
		blk = j.next(blk)
		if be.Uint32(buf) != jbdMagic || be.Uint32(buf[8:]) != next {
			break
		}
		switch be.Uint32(buf[4:]) {
		case jbdDescriptor:
			if !j.blockTailOK(buf) {
				needCheckTime = true
				j.fs.logf("ext4: journal: descriptor block %d of transaction %d fails its checksum", here, next)
			}
			tags := j.tags(buf)
			visited += int64(len(tags))
			if j.compat&jbdCompatChecksum != 0 && !needCheckTime && !endSet {
				crcSum = crc32be(crcSum, buf)
				for range tags {
					if err := j.read(blk, data); err != nil {
						return 0, err
					}
					crcSum = crc32be(crcSum, data)
					blk = j.next(blk)
				}
			} else {
				for range tags {
					blk = j.next(blk)
				}
			}
			continue
		case jbdRevoke:
			if !j.blockTailOK(buf) {
				needCheckTime = true
				j.fs.logf("ext4: journal: revoke block %d of transaction %d fails its checksum", here, next)
			}
			continue
		case jbdCommit:
		default:
			// An unknown block type ends the log.
			if !endSet {
				end = next
			}
			return end, nil
		}
		// A commit block.
		commitTime := be.Uint64(buf[0x30:])
		if needCheckTime {
			if commitTime >= lastTime {
				return 0, journalErr("transaction %d fails its checksum", next)
			}
			// A stale block of an older log: the log ends here.
			if !endSet {
				end = next
			}
			return end, nil
		}
		bad := false
		if j.compat&jbdCompatChecksum != 0 {
			if endSet {
				return end, nil
			}
			found := be.Uint32(buf[16:])
			ctype, csize := buf[12], buf[13]
			if !(crcSum == found && ctype == jbdCRC32 && csize == 4 || ctype == 0 && csize == 0 && found == 0) {
				bad = true
			}
			crcSum = ^uint32(0)
		}
		if bad || !j.commitOK(buf) {
			if commitTime < lastTime {
				if !endSet {
					end = next
				}
				return end, nil
			}
			j.fs.logf("ext4: journal: commit block %d of transaction %d fails its checksum; replay ends before it", here, next)
			end, endSet = next, true
			if !j.has(jbdFeatAsync) {
				return end, nil
			}
		}
		lastTime = commitTime
		next++
	}
	if !endSet {
		end = next
	}
	return end, nil
}

// revokes is jbd2's PASS_REVOKE: for each revoked block, the newest
// transaction before end that revokes it.
func (j *journal) revokes(end uint32) (map[uint64]uint32, error) {
	be := binary.BigEndian
	buf := make([]byte, j.bs)
	revoked := map[uint64]uint32{}
	recSize := 4
	if j.has(jbdFeat64bit) {
		recSize = 8
	}
	next, blk := j.seq, j.start
	for visited := int64(0); next != end && visited <= j.total; visited++ {
		if err := j.read(blk, buf); err != nil {
			return nil, err
		}
		blk = j.next(blk)
		if be.Uint32(buf) != jbdMagic || be.Uint32(buf[8:]) != next {
			break
		}
		switch be.Uint32(buf[4:]) {
		case jbdDescriptor:
			if !j.blockTailOK(buf) {
				return nil, journalErr("descriptor of transaction %d fails its checksum", next)
			}
			tags := j.tags(buf)
			visited += int64(len(tags))
			for range tags {
				blk = j.next(blk)
			}
		case jbdRevoke:
			count := int(be.Uint32(buf[12:]))
			if count > int(j.bs-j.tail) {
				return nil, journalErr("revoke block of %d bytes", count)
			}
			for off := 16; off+recSize <= count; off += recSize {
				b := uint64(be.Uint32(buf[off:]))
				if recSize == 8 {
					b = be.Uint64(buf[off:])
				}
				if old, ok := revoked[b]; !ok || int32(next-old) > 0 {
					revoked[b] = next
				}
			}
		case jbdCommit:
			next++
		default:
			return revoked, nil
		}
	}
	return revoked, nil
}

// replayJournal reads the journal of fs, as it lies on the volume, and
// returns the blocks its committed transactions rewrite, and the
// fast-commit tags to apply over them. An empty map and no tags mean
// there is nothing to replay.
func (fs *FS) replayJournal() (map[uint64]journalCopy, []fcTag, error) {
	j, err := fs.openJournal()
	if err != nil {
		return nil, nil, err
	}
	if j.start == 0 {
		return nil, nil, nil // clean
	}
	end, err := j.scan()
	if err != nil {
		return nil, nil, err
	}
	var fc []fcTag
	if j.has(jbdFeatFastComm) && fs.sb.compat&compatFastCommit != 0 {
		// The fast-commit scan is part of PASS_SCAN: its errors fail
		// the whole recovery.
		if fc, err = j.scanFastCommit(end); err != nil {
			return nil, nil, err
		}
	}
	revoked, err := j.revokes(end)
	if err != nil {
		return nil, nil, err
	}

	// PASS_REPLAY: the newest copy of each block wins, unless revoked by
	// its own or a later transaction.
	be := binary.BigEndian
	buf := make([]byte, j.bs)
	data := make([]byte, j.bs)
	copies := map[uint64]journalCopy{}
	next, blk := j.seq, j.start
	for visited := int64(0); next != end && visited <= j.total; visited++ {
		if err := j.read(blk, buf); err != nil {
			return nil, nil, err
		}
		blk = j.next(blk)
		if be.Uint32(buf) != jbdMagic || be.Uint32(buf[8:]) != next {
			break
		}
		switch be.Uint32(buf[4:]) {
		case jbdDescriptor:
			if !j.blockTailOK(buf) {
				return nil, nil, journalErr("descriptor of transaction %d fails its checksum", next)
			}
			tags := j.tags(buf)
			visited += int64(len(tags))
			for _, tg := range tags {
				at := blk
				blk = j.next(blk)
				if rs, ok := revoked[tg.block]; ok && int32(rs-next) >= 0 {
					continue
				}
				if err := j.read(at, data); err != nil {
					return nil, nil, err
				}
				if !j.tagOK(tg, data, next) {
					fs.logf("ext4: journal: copy of block %d in transaction %d fails its checksum; not replayed", tg.block, next)
					continue
				}
				if tg.block >= fs.sb.blocksCount {
					return nil, nil, journalErr("rewrites block %d of a %d-block filesystem", tg.block, fs.sb.blocksCount)
				}
				loc, err := j.where(at)
				if err != nil {
					return nil, nil, err
				}
				copies[tg.block] = journalCopy{loc, tg.flags&jbdTagEscape != 0}
			}
		case jbdCommit:
			next++
		case jbdRevoke:
		default:
			return copies, fc, nil
		}
	}
	return copies, fc, nil
}

// journalOverlay reads the volume with the journal's committed copies in
// place of the blocks they rewrite.
type journalOverlay struct {
	r      io.ReaderAt
	bs     int64
	copies map[uint64]journalCopy
}

func (o *journalOverlay) ReadAt(p []byte, off int64) (int, error) {
	n, err := o.r.ReadAt(p, off)
	var blk []byte
	for b := off / o.bs; b*o.bs < off+int64(n); b++ {
		c, ok := o.copies[uint64(b)]
		if !ok {
			continue
		}
		if blk == nil {
			blk = make([]byte, o.bs)
		}
		if m, rerr := o.r.ReadAt(blk, c.off); m != len(blk) {
			if rerr == nil || rerr == io.EOF {
				rerr = journalErr("short read of the copy of block %d", b)
			}
			return 0, rerr
		}
		if c.escaped {
			binary.BigEndian.PutUint32(blk, jbdMagic)
		}
		// The part of block b inside [off, off+n).
		from := max(b*o.bs, off)
		to := min((b+1)*o.bs, off+int64(n))
		copy(p[from-off:to-off], blk[from-b*o.bs:])
	}
	return n, err
}

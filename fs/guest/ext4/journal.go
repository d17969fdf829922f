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
// never written. Only the internal journal (jbd2) is read; its checksums
// are not checked, the sequence numbers and commit blocks are.

// jbd2 on-disk constants; every journal field is big-endian.
const (
	jbdMagic         = 0xC03B3998
	jbdDescriptor    = 1
	jbdCommit        = 2
	jbdSuperV1       = 3
	jbdSuperV2       = 4
	jbdRevoke        = 5
	jbdFeatRevoke    = 0x1
	jbdFeat64bit     = 0x2
	jbdFeatAsync     = 0x4
	jbdFeatCsumV2    = 0x8
	jbdFeatCsumV3    = 0x10
	jbdFeatFastComm  = 0x20
	jbdKnownIncompat = jbdFeatRevoke | jbdFeat64bit | jbdFeatAsync | jbdFeatCsumV2 | jbdFeatCsumV3 | jbdFeatFastComm
	jbdTagEscape     = 0x1
	jbdTagSameUUID   = 0x2
	jbdTagLast       = 0x8
)

// journalCopy is where the newest committed copy of a block lies.
type journalCopy struct {
	off     int64 // byte offset on the volume
	escaped bool  // its first four bytes were the journal magic, zeroed in the log
}

type journalTag struct {
	fsBlock uint64
	seq     uint32 // the transaction that logged this copy
	copy    journalCopy
}

func journalErr(format string, args ...any) error {
	return fmt.Errorf("ext4: journal: %s: %w", fmt.Sprintf(format, args...), guest.ErrCorrupt)
}

// replayJournal reads the journal of fs, as it lies on the volume, and
// returns the blocks its committed transactions rewrite. An empty map
// means there is nothing to replay.
func (fs *FS) replayJournal() (map[uint64]journalCopy, error) {
	ino := uint64(fs.sb.journalIno)
	in, err := fs.inode(ino)
	if err != nil {
		return nil, fmt.Errorf("ext4: journal inode %d: %w", ino, err)
	}
	bs := int64(fs.sb.blockSize)
	nblocks := int64(in.size / uint64(bs))
	read := func(i int64, p []byte) error {
		if i < 0 || i >= nblocks {
			return journalErr("block %d outside the %d-block journal", i, nblocks)
		}
		n, err := fs.ReadAt(ino, p, i*bs)
		if n != len(p) {
			if err == nil || err == io.EOF {
				err = journalErr("short read of block %d", i)
			}
			return err
		}
		return nil
	}
	where := func(i int64) (int64, error) {
		ext, err := fs.MapFile(nil, ino, i*bs, bs)
		if err != nil {
			return 0, err
		}
		if len(ext) != 1 || ext[0].Len != bs {
			return 0, journalErr("block %d is not mapped to the volume", i)
		}
		return ext[0].Off, nil
	}

	be := binary.BigEndian
	buf := make([]byte, bs)
	if err := read(0, buf); err != nil {
		return nil, err
	}
	if be.Uint32(buf) != jbdMagic {
		return nil, journalErr("no superblock magic")
	}
	btype := be.Uint32(buf[4:])
	if btype != jbdSuperV1 && btype != jbdSuperV2 {
		return nil, journalErr("superblock type %d", btype)
	}
	if int64(be.Uint32(buf[0xC:])) != bs {
		return nil, journalErr("block size %d, filesystem's %d", be.Uint32(buf[0xC:]), bs)
	}
	maxLen := min(int64(be.Uint32(buf[0x10:])), nblocks)
	first := int64(be.Uint32(buf[0x14:]))
	seq := be.Uint32(buf[0x18:])
	start := int64(be.Uint32(buf[0x1C:]))
	var incompat uint32
	if btype == jbdSuperV2 {
		incompat = be.Uint32(buf[0x28:])
	}
	if start == 0 {
		return nil, nil // clean
	}
	if incompat&^jbdKnownIncompat != 0 {
		return nil, journalErr("unknown features %#x", incompat&^jbdKnownIncompat)
	}
	if first < 1 || first >= maxLen || start < first || start >= maxLen {
		return nil, journalErr("log [%d, %d) starting at %d", first, maxLen, start)
	}
	tagSize := int64(8)
	switch {
	case incompat&jbdFeatCsumV3 != 0:
		tagSize = 16
	case incompat&jbdFeatCsumV2 != 0:
		tagSize = 10
		if incompat&jbdFeat64bit != 0 {
			tagSize = 14
		}
	case incompat&jbdFeat64bit != 0:
		tagSize = 12
	}
	tail := int64(0) // descriptor and revoke blocks end in a checksum
	if incompat&(jbdFeatCsumV2|jbdFeatCsumV3) != 0 {
		tail = 4
	}
	recSize := int64(4)
	if incompat&jbdFeat64bit != 0 {
		recSize = 8
	}

	// One pass over the log: transactions count once their commit block
	// is seen with the expected sequence; the log ends at the first block
	// that is not the next one.
	next := func(i int64) int64 {
		if i++; i >= maxLen {
			return first
		}
		return i
	}
	var committed []journalTag
	revoked := map[uint64]uint32{} // fs block -> last transaction revoking it
	var pending []journalTag
	pendingRevokes := map[uint64]bool{}
	i := start
	for steps := int64(0); steps < maxLen; steps++ {
		if err := read(i, buf); err != nil {
			return nil, err
		}
		if be.Uint32(buf) != jbdMagic || be.Uint32(buf[8:]) != seq {
			break
		}
		switch be.Uint32(buf[4:]) {
		case jbdDescriptor:
			for off := int64(12); off+tagSize <= bs-tail; {
				t := buf[off:]
				var blk uint64
				var flags uint32
				if tagSize == 16 {
					blk, flags = uint64(be.Uint32(t)), be.Uint32(t[4:])
					if incompat&jbdFeat64bit != 0 {
						blk |= uint64(be.Uint32(t[8:])) << 32
					}
				} else {
					blk, flags = uint64(be.Uint32(t)), uint32(be.Uint16(t[6:]))
					if tagSize >= 12 {
						blk |= uint64(be.Uint32(t[8:])) << 32
					}
				}
				off += tagSize
				if flags&jbdTagSameUUID == 0 {
					off += 16
				}
				i = next(i)
				steps++
				loc, err := where(i)
				if err != nil {
					return nil, err
				}
				pending = append(pending, journalTag{blk, seq, journalCopy{loc, flags&jbdTagEscape != 0}})
				if flags&jbdTagLast != 0 {
					break
				}
			}
		case jbdRevoke:
			used := min(int64(be.Uint32(buf[12:])), bs-tail)
			for off := int64(16); off+recSize <= used; off += recSize {
				blk := uint64(be.Uint32(buf[off:]))
				if recSize == 8 {
					blk = be.Uint64(buf[off:])
				}
				pendingRevokes[blk] = true
			}
		case jbdCommit:
			committed = append(committed, pending...)
			for blk := range pendingRevokes {
				revoked[blk] = seq
			}
			pending, pendingRevokes = nil, map[uint64]bool{}
			seq++
		default:
			return nil, journalErr("block %d of unknown type %d", i, be.Uint32(buf[4:]))
		}
		i = next(i)
	}

	// Replay in order. A block revoked by its own or a later transaction
	// is not replayed from it (jbd2's revoke rule).
	copies := map[uint64]journalCopy{}
	for _, t := range committed {
		if rs, ok := revoked[t.fsBlock]; ok && int32(rs-t.seq) >= 0 {
			continue
		}
		if t.fsBlock >= fs.sb.blocksCount {
			return nil, journalErr("rewrites block %d of a %d-block filesystem", t.fsBlock, fs.sb.blocksCount)
		}
		copies[t.fsBlock] = t.copy
	}
	return copies, nil
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

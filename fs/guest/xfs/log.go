package xfs

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cairn-backup/cairn/fs/guest"
)

// A disk backed up while its XFS was mounted may hold transactions in
// the log that were not yet written in place; the kernel replays them
// before it mounts. This reader does not: checkLog only finds out,
// cheaply, whether the log ends in a clean unmount, and otherwise the
// filesystem reads as last checkpointed and LogErr says so.
//
// The log is a ring of 512-byte basic blocks. Every block starts with
// the cycle number of the pass that wrote it (a record header keeps it
// in its second word, after its magic), so the head is where the cycle
// number drops. The record just before the head is, on a clean log, a
// lone unmount record ending at the head.

const (
	logBB          = 512
	logRecMagic    = 0xFEEDBABE
	logVersion2    = 0x2
	logCycleSize   = 32 << 10 // bytes of log data one header's cycle table covers
	logUnmountFlag = 0x20     // XLOG_UNMOUNT_TRANS in an operation header
	// maxLogScan bounds the blocks read back from the head looking for
	// the last record header: records are at most 256 KiB plus headers.
	maxLogScan = 1024
)

// ErrLogDirty says the log holds changes to replay.
var ErrLogDirty = errors.New("the log holds changes that were never written in place (backed up while mounted); they are not replayed")

func (fs *FS) checkLog() error {
	if fs.sb.logStart == 0 {
		return errors.New("the log is on an external device: cannot tell whether it needs recovery")
	}
	start, _ := fs.sb.linear(fs.sb.logStart, uint64(fs.sb.logBlocks)) // checked by parseSuper
	base := start << fs.sb.blockLog
	nbb := uint64(fs.sb.logBlocks) << (fs.sb.blockLog - 9)
	buf := make([]byte, logBB)
	read := func(i uint64) ([]byte, error) {
		if err := fs.readRaw(buf, base+i*logBB); err != nil {
			return nil, fmt.Errorf("xfs: log block %d: %w", i, err)
		}
		return buf, nil
	}
	be := binary.BigEndian
	cycle := func(i uint64) (uint32, error) {
		b, err := read(i)
		if err != nil {
			return 0, err
		}
		if be.Uint32(b) == logRecMagic {
			return be.Uint32(b[4:]), nil
		}
		return be.Uint32(b), nil
	}
	first, err := cycle(0)
	if err != nil {
		return err
	}
	last, err := cycle(nbb - 1)
	if err != nil {
		return err
	}
	head := uint64(0) // the whole ring holds one cycle: the head wrapped to 0
	if first != last {
		// Blocks [0, head) carry cycle first, [head, nbb) the one before.
		lo, hi := uint64(0), nbb-1 // cycle(lo) == first, cycle(hi) == last
		for hi-lo > 1 {
			mid := lo + (hi-lo)/2
			c, err := cycle(mid)
			if err != nil {
				return err
			}
			if c == first {
				lo = mid
			} else {
				hi = mid
			}
		}
		head = hi
	}
	if first == 0 && last == 0 {
		return fmt.Errorf("xfs: log never written: %w", guest.ErrCorrupt)
	}
	wrap := func(i uint64) uint64 { return i % nbb }
	// The last record header before the head.
	rec := uint64(0)
	found := false
	for k := uint64(1); k <= min(maxLogScan, nbb); k++ {
		i := wrap(head + nbb - k)
		b, err := read(i)
		if err != nil {
			return err
		}
		if be.Uint32(b) == logRecMagic {
			rec, found = i, true
			break
		}
	}
	if !found {
		return fmt.Errorf("xfs: no log record before the log head at block %d: %w", head, guest.ErrCorrupt)
	}
	b, err := read(rec)
	if err != nil {
		return err
	}
	version := be.Uint32(b[8:])
	length := uint64(be.Uint32(b[12:]))
	ops := be.Uint32(b[40:])
	hblks := uint64(1)
	if version&logVersion2 != 0 {
		if size := uint64(be.Uint32(b[320:])); size > logCycleSize {
			hblks = (size + logCycleSize - 1) / logCycleSize
		}
	}
	if ops == 1 && wrap(rec+hblks+(length+logBB-1)/logBB) == head {
		op, err := read(wrap(rec + hblks))
		if err != nil {
			return err
		}
		if op[9]&logUnmountFlag != 0 {
			return nil // clean
		}
	}
	return ErrLogDirty
}

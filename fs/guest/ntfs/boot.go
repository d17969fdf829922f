package ntfs

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math/bits"

	"github.com/cairn-backup/cairn/fs/guest"
)

const (
	bootSize   = 512
	oemID      = "NTFS    "
	sectorSize = 512 // the unit of update sequence (fixup) protection, whatever the device sector

	maxClusterSize = 2 << 20 // Windows formats up to 2 MiB clusters
	minRecordSize  = 512
	maxRecordSize  = 64 << 10
)

// boot is the geometry the boot sector gives.
type boot struct {
	clusterSize   uint64
	recordSize    uint64 // MFT record size
	indexSize     uint64 // index block size from the boot sector (each $INDEX_ROOT says its own)
	totalClusters uint64
	mftLCN        uint64
	serial        uint64
}

func corruptBoot(format string, args ...any) error {
	return fmt.Errorf("ntfs: boot sector: %s: %w", fmt.Sprintf(format, args...), guest.ErrCorrupt)
}

// Probe reports whether r starts with an NTFS boot sector (its OEM ID),
// sound or damaged: a damaged one is still NTFS, and Open says how.
func Probe(r io.ReaderAt, size int64) bool {
	if size < bootSize {
		return false
	}
	var b [11]byte
	if _, err := r.ReadAt(b[:], 0); err != nil {
		return false
	}
	return string(b[3:11]) == oemID
}

// parseBoot checks the boot sector b against the volume size.
func parseBoot(b []byte, volSize int64) (boot, error) {
	le := binary.LittleEndian
	var bt boot
	if !bytes.Equal(b[3:11], []byte(oemID)) {
		return bt, fmt.Errorf("ntfs: no NTFS boot sector: %w", guest.ErrUnknown)
	}
	bps := uint64(le.Uint16(b[0x0B:]))
	if bps < 256 || bps > 4096 || bits.OnesCount64(bps) != 1 {
		return bt, corruptBoot("%d bytes per sector", bps)
	}
	spc := uint64(b[0x0D])
	if spc > 0x80 {
		// Large clusters: the byte is the negated power of two.
		shift := 256 - spc
		if shift > 20 {
			return bt, corruptBoot("sectors per cluster 2^%d", shift)
		}
		spc = 1 << shift
	}
	if spc == 0 || bits.OnesCount64(spc) != 1 {
		return bt, corruptBoot("%d sectors per cluster", spc)
	}
	bt.clusterSize = bps * spc
	if bt.clusterSize > maxClusterSize {
		return bt, corruptBoot("cluster of %d bytes", bt.clusterSize)
	}
	size := func(v int8, what string) (uint64, error) {
		var n uint64
		if v > 0 {
			n = uint64(v) * bt.clusterSize
		} else {
			if -int(v) >= 31 {
				return 0, corruptBoot("%s size 2^%d", what, -int(v))
			}
			n = 1 << uint(-int(v))
		}
		if n < minRecordSize || n > maxRecordSize || bits.OnesCount64(n) != 1 {
			return 0, corruptBoot("%s of %d bytes", what, n)
		}
		return n, nil
	}
	var err error
	if bt.recordSize, err = size(int8(b[0x40]), "MFT record"); err != nil {
		return bt, err
	}
	if bt.indexSize, err = size(int8(b[0x44]), "index block"); err != nil {
		return bt, err
	}
	sectors := le.Uint64(b[0x28:])
	bt.totalClusters = sectors / spc
	if bt.totalClusters == 0 {
		return bt, corruptBoot("%d sectors", sectors)
	}
	// The NTFS size may exceed what the volume holds (a truncated image):
	// reads past the end fail then, one file at a time.
	bt.mftLCN = le.Uint64(b[0x30:])
	if bt.mftLCN == 0 || bt.mftLCN >= bt.totalClusters {
		return bt, corruptBoot("$MFT at cluster %d of %d", bt.mftLCN, bt.totalClusters)
	}
	if bt.mftLCN*bt.clusterSize >= uint64(volSize) {
		return bt, corruptBoot("$MFT at byte %d, past the end of the %d-byte volume", bt.mftLCN*bt.clusterSize, volSize)
	}
	bt.serial = le.Uint64(b[0x48:])
	return bt, nil
}

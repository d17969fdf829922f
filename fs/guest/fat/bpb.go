package fat

import (
	"encoding/binary"
	"fmt"
	"io"

	"github.com/cairn-backup/cairn/fs/guest"
)

// Type is the FAT variant of a volume.
type Type int

const (
	FAT12 Type = 12
	FAT16 Type = 16
	FAT32 Type = 32
)

// layout is what the BIOS parameter block says about the volume, in bytes
// and clusters.
type layout struct {
	typ         Type
	sectorSize  int64
	clusterSize int64
	fatStart    int64 // byte offset of the FAT in use
	fatBytes    int64 // size of one FAT
	rootStart   int64 // FAT12/16: byte offset of the fixed root directory
	rootBytes   int64 // FAT12/16: its size
	rootCluster uint32
	dataStart   int64  // byte offset of cluster 2
	clusters    uint32 // count of data clusters: valid numbers are 2..clusters+1
}

// parseBPB checks the boot sector and derives the layout. It wraps
// guest.ErrUnknown when the sector is not a FAT boot sector at all, and
// guest.ErrCorrupt when it is one whose numbers do not hold together.
func parseBPB(r io.ReaderAt, size int64) (*layout, error) {
	var b [512]byte
	if n, err := r.ReadAt(b[:], 0); n < len(b) {
		return nil, fmt.Errorf("fat: read boot sector: %v: %w", err, guest.ErrUnknown)
	}
	le := binary.LittleEndian
	if b[0] != 0xEB && b[0] != 0xE9 {
		return nil, fmt.Errorf("fat: no jump instruction in boot sector: %w", guest.ErrUnknown)
	}
	bps := int64(le.Uint16(b[11:]))
	spc := int64(b[13])
	reserved := int64(le.Uint16(b[14:]))
	nfats := int64(b[16])
	rootEnts := int64(le.Uint16(b[17:]))
	total := int64(le.Uint16(b[19:]))
	media := b[21]
	fatSz := int64(le.Uint16(b[22:]))
	if total == 0 {
		total = int64(le.Uint32(b[32:]))
	}
	if fatSz == 0 {
		fatSz = int64(le.Uint32(b[36:]))
	}
	// These first checks decide whether this is a FAT boot sector at all.
	if (bps != 512 && bps != 1024 && bps != 2048 && bps != 4096) ||
		spc == 0 || spc&(spc-1) != 0 || (media != 0xF0 && media < 0xF8) || nfats == 0 {
		// A boot sector that names its FAT type is a damaged FAT volume.
		if string(b[54:57]) == "FAT" || string(b[82:87]) == "FAT32" {
			return nil, fmt.Errorf("fat: BPB of a FAT boot sector: %d bytes per sector, %d per cluster, media %#x, %d FATs: %w",
				bps, spc, media, nfats, guest.ErrCorrupt)
		}
		return nil, fmt.Errorf("fat: no BIOS parameter block: %w", guest.ErrUnknown)
	}
	corrupt := func(format string, args ...any) error {
		return fmt.Errorf("fat: "+format+": %w", append(args, guest.ErrCorrupt)...)
	}
	if reserved == 0 || fatSz == 0 || total == 0 || nfats > 4 {
		return nil, corrupt("BPB: reserved %d, FAT size %d, total sectors %d, FATs %d", reserved, fatSz, total, nfats)
	}
	rootSecs := (rootEnts*32 + bps - 1) / bps
	meta := reserved + nfats*fatSz + rootSecs
	if meta >= total {
		return nil, corrupt("BPB: %d metadata sectors in a volume of %d", meta, total)
	}
	clusters := (total - meta) / spc
	l := &layout{
		sectorSize:  bps,
		clusterSize: bps * spc,
		fatStart:    reserved * bps,
		fatBytes:    fatSz * bps,
		rootStart:   (reserved + nfats*fatSz) * bps,
		rootBytes:   rootEnts * 32,
		dataStart:   meta * bps,
	}
	var entryBits int64
	switch {
	case clusters < 4085:
		l.typ, entryBits = FAT12, 12
	case clusters < 65525:
		l.typ, entryBits = FAT16, 16
	default:
		l.typ, entryBits = FAT32, 32
	}
	if l.typ == FAT32 {
		if rootEnts != 0 || le.Uint16(b[22:]) != 0 {
			return nil, corrupt("FAT32 BPB with a fixed root directory or a 16-bit FAT size")
		}
		l.rootCluster = le.Uint32(b[44:]) & 0x0FFFFFFF
		if flags := le.Uint16(b[40:]); flags&0x80 != 0 {
			// Mirroring off: only the FAT numbered in the low bits is live.
			active := int64(flags & 0x0F)
			if active >= nfats {
				return nil, corrupt("active FAT %d of %d", active, nfats)
			}
			l.fatStart += active * l.fatBytes
		}
	} else if rootEnts == 0 {
		return nil, corrupt("%v BPB without root directory entries", l.typ)
	}
	// The FAT must map every cluster, and lie within the disk: that also
	// bounds the cluster count, and so every chain walk, by the disk size.
	if (clusters+2)*entryBits > l.fatBytes*8 {
		return nil, corrupt("FAT of %d bytes too small for %d clusters", l.fatBytes, clusters)
	}
	if l.fatStart+l.fatBytes > size || l.dataStart > size {
		return nil, corrupt("FAT or root directory past the end of the disk (%d bytes)", size)
	}
	if clusters < 1 || clusters > 0x0FFFFFF5 {
		return nil, corrupt("%d clusters", clusters)
	}
	l.clusters = uint32(clusters)
	if l.typ == FAT32 && !l.valid(l.rootCluster) {
		return nil, corrupt("root cluster %d out of range", l.rootCluster)
	}
	return l, nil
}

func (l *layout) valid(c uint32) bool { return c >= 2 && c <= l.clusters+1 }

func (l *layout) clusterOffset(c uint32) int64 {
	return l.dataStart + int64(c-2)*l.clusterSize
}

func (t Type) String() string { return fmt.Sprintf("FAT%d", int(t)) }

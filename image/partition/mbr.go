package partition

import (
	"encoding/binary"
	"fmt"
	"io"
)

const mbrSector = 512

// mbrEntry is one 16-byte partition entry of an MBR or EBR.
type mbrEntry struct {
	status byte
	kind   byte
	start  uint32 // LBA, relative as the table kind says
	count  uint32
}

func mbrEntries(sec []byte) [4]mbrEntry {
	var es [4]mbrEntry
	for i := range es {
		e := sec[446+16*i:]
		es[i] = mbrEntry{
			status: e[0],
			kind:   e[4],
			start:  binary.LittleEndian.Uint32(e[8:]),
			count:  binary.LittleEndian.Uint32(e[12:]),
		}
	}
	return es
}

func isExtended(kind byte) bool { return kind == 0x05 || kind == 0x0F || kind == 0x85 }

// readMBR parses sector 0 as an MBR, or reports no table when it is
// blank or the boot sector of a bare filesystem.
func readMBR(r io.ReaderAt, size int64, s0 []byte) (*Table, error) {
	if s0[510] != 0x55 || s0[511] != 0xAA {
		return &Table{}, nil
	}
	if isVolumeBootRecord(s0) {
		return &Table{}, nil
	}
	sectors := uint64(size / mbrSector)
	es := mbrEntries(s0)
	for i, e := range es {
		if e.status != 0 && e.status != 0x80 {
			return nil, fmt.Errorf("partition: MBR entry %d: status byte %#x: %w", i+1, e.status, ErrCorrupt)
		}
		if e.kind == 0 {
			continue
		}
		if e.start == 0 || e.count == 0 || uint64(e.start)+uint64(e.count) > sectors {
			return nil, fmt.Errorf("partition: MBR entry %d: sectors %d+%d outside the disk of %d: %w",
				i+1, e.start, e.count, sectors, ErrCorrupt)
		}
	}
	t := &Table{Kind: KindMBR, SectorSize: mbrSector}
	next := 5
	for i, e := range es {
		if e.kind == 0 {
			continue
		}
		t.Partitions = append(t.Partitions, mbrPartition(i+1, e, 0))
		if isExtended(e.kind) {
			if err := readLogical(r, t, &next, e, sectors); err != nil {
				return t, err
			}
		}
	}
	return t, nil
}

func mbrPartition(num int, e mbrEntry, base uint64) Partition {
	id := fmt.Sprintf("0x%02x", e.kind)
	return Partition{
		Number:    num,
		Start:     int64(base+uint64(e.start)) * mbrSector,
		Size:      int64(e.count) * mbrSector,
		Type:      mbrTypeName(e.kind, id),
		TypeID:    id,
		Bootable:  e.status == 0x80,
		Container: isExtended(e.kind),
	}
}

// readLogical follows the EBR chain of the extended partition ext. Each
// EBR's first entry is a logical partition relative to that EBR; its
// second links the next EBR, relative to the start of ext.
func readLogical(r io.ReaderAt, t *Table, next *int, ext mbrEntry, sectors uint64) error {
	extStart, extEnd := uint64(ext.start), uint64(ext.start)+uint64(ext.count)
	seen := map[uint64]bool{}
	ebr := extStart
	var sec [mbrSector]byte
	for hops := 0; ; hops++ {
		if hops >= MaxLogical {
			return fmt.Errorf("partition: more than %d EBRs in the extended partition: %w", MaxLogical, ErrCorrupt)
		}
		if seen[ebr] {
			return fmt.Errorf("partition: EBR chain loops at sector %d: %w", ebr, ErrCorrupt)
		}
		seen[ebr] = true
		if err := readFull(r, sec[:], int64(ebr)*mbrSector); err != nil {
			return err
		}
		if sec[510] != 0x55 || sec[511] != 0xAA {
			if ebr == extStart {
				return nil // an empty extended partition
			}
			return fmt.Errorf("partition: EBR at sector %d: no signature: %w", ebr, ErrCorrupt)
		}
		es := mbrEntries(sec[:])
		if l := es[0]; l.kind != 0 && l.count != 0 && !isExtended(l.kind) {
			s := ebr + uint64(l.start)
			if l.start == 0 || s+uint64(l.count) > extEnd || s+uint64(l.count) > sectors {
				return fmt.Errorf("partition: logical partition %d: sectors %d+%d outside the extended partition: %w",
					*next, s, l.count, ErrCorrupt)
			}
			t.Partitions = append(t.Partitions, mbrPartition(*next, l, ebr))
			*next++
		}
		link := es[1]
		if !isExtended(link.kind) {
			return nil
		}
		ebr = extStart + uint64(link.start)
		if ebr >= extEnd || ebr >= sectors {
			return fmt.Errorf("partition: EBR link to sector %d outside the extended partition: %w", ebr, ErrCorrupt)
		}
	}
}

// isVolumeBootRecord tells a FAT, exFAT or NTFS boot sector from an MBR:
// both end in 0x55AA, but a volume boot record starts with a jump and
// holds a BIOS parameter block.
func isVolumeBootRecord(s []byte) bool {
	if string(s[3:11]) == "NTFS    " || string(s[3:11]) == "EXFAT   " {
		return true
	}
	jump := (s[0] == 0xEB && s[2] == 0x90) || s[0] == 0xE9
	if !jump {
		return false
	}
	if string(s[54:57]) == "FAT" || string(s[82:87]) == "FAT32" {
		return saneBPB(s)
	}
	// Some formatters leave the type strings blank: fall back to the BPB
	// alone, but only when the partition entries do not look sane.
	return saneBPB(s) && !saneEntries(s)
}

func saneBPB(s []byte) bool {
	bps := binary.LittleEndian.Uint16(s[11:])
	spc := s[13]
	reserved := binary.LittleEndian.Uint16(s[14:])
	fats := s[16]
	media := s[21]
	return (bps == 512 || bps == 1024 || bps == 2048 || bps == 4096) &&
		spc != 0 && spc&(spc-1) == 0 && reserved >= 1 && fats >= 1 && fats <= 4 &&
		(media == 0xF0 || media >= 0xF8)
}

func saneEntries(s []byte) bool {
	any := false
	for _, e := range mbrEntries(s) {
		if e.status != 0 && e.status != 0x80 {
			return false
		}
		if e.kind != 0 {
			if e.start == 0 || e.count == 0 {
				return false
			}
			any = true
		}
	}
	return any
}

var mbrTypes = map[byte]string{
	0x01: "FAT12",
	0x04: "FAT16 <32M",
	0x05: "extended",
	0x06: "FAT16",
	0x07: "HPFS/NTFS/exFAT",
	0x0B: "W95 FAT32",
	0x0C: "W95 FAT32 (LBA)",
	0x0E: "W95 FAT16 (LBA)",
	0x0F: "extended",
	0x11: "Hidden FAT12",
	0x14: "Hidden FAT16 <32M",
	0x16: "Hidden FAT16",
	0x17: "Hidden HPFS/NTFS",
	0x1B: "Hidden W95 FAT32",
	0x1C: "Hidden W95 FAT32 (LBA)",
	0x1E: "Hidden W95 FAT16 (LBA)",
	0x27: "Hidden NTFS WinRE",
	0x42: "SFS",
	0x82: "Linux swap",
	0x83: "Linux filesystem",
	0x85: "extended",
	0x8E: "Linux LVM",
	0xA5: "FreeBSD",
	0xA6: "OpenBSD",
	0xA9: "NetBSD",
	0xAF: "HFS / HFS+",
	0xEE: "GPT protective",
	0xEF: "EFI System",
	0xFD: "Linux RAID",
}

func mbrTypeName(kind byte, id string) string {
	if n, ok := mbrTypes[kind]; ok {
		return n
	}
	return id
}

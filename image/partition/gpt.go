package partition

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"strings"
	"unicode/utf16"
)

var gptSignature = []byte("EFI PART")

// gptHeader holds the fields of a GPT header that reading needs.
type gptHeader struct {
	myLBA, altLBA         uint64
	firstUsable           uint64
	lastUsable            uint64
	entriesLBA            uint64
	numEntries, entrySize uint32
	entriesCRC            uint32
}

// readGPT looks for a GPT with 512- and 4096-byte sectors. found is false
// when nothing hints at a GPT (no protective MBR, no header signature), so
// the caller goes on with MBR.
func readGPT(r io.ReaderAt, size int64, s0 []byte) (t *Table, found bool, err error) {
	// Boot code of a bare FAT volume may hold 0xEE where an MBR has a type.
	protective := hasProtectiveMBR(s0) && !isVolumeBootRecord(s0)
	var firstErr error
	var sigAt []int
	for _, ss := range []int{512, 4096} {
		if size < int64(3*ss) {
			continue
		}
		t, sig, err := gptAt(r, size, ss, 1)
		if err == nil {
			return t, true, nil
		}
		if sig {
			sigAt = append(sigAt, ss)
			if firstErr == nil {
				firstErr = err
			}
		}
	}
	if !protective && len(sigAt) == 0 {
		return nil, false, nil
	}
	// The primary is damaged or missing: try the backup at the last LBA,
	// first with the sector size where a primary signature was seen.
	order := append(sigAt, 512, 4096)
	tried := map[int]bool{}
	for _, ss := range order {
		if tried[ss] || size < int64(3*ss) {
			continue
		}
		tried[ss] = true
		last := uint64(size/int64(ss)) - 1
		t, sig, err := gptAt(r, size, ss, last)
		if err == nil {
			t.Backup = true
			return t, true, nil
		}
		if sig && firstErr == nil {
			firstErr = err
		}
	}
	if firstErr == nil {
		firstErr = fmt.Errorf("partition: protective MBR but no GPT header: %w", ErrCorrupt)
	}
	// No usable GPT. As sgdisk does, fall back on the MBR's entries
	// other than 0xEE (a hybrid MBR that outlived its GPT); with none,
	// the disk has no partitions, as Linux reads it then.
	s := append([]byte(nil), s0...)
	for i := 0; i < 4; i++ {
		if s[446+16*i+4] == 0xEE {
			clear(s[446+16*i:][:16])
		}
	}
	if mt, err := readMBR(r, size, s); err == nil && len(mt.Partitions) > 0 {
		return mt, true, fmt.Errorf("%w (no usable GPT: showing the MBR's other %d partitions)", firstErr, len(mt.Partitions))
	}
	return &Table{}, true, fmt.Errorf("%w (no usable GPT and no other MBR partitions: no partitions)", firstErr)
}

// hasProtectiveMBR reports whether sector 0 is an MBR with a GPT
// protective (0xEE) entry.
func hasProtectiveMBR(s0 []byte) bool {
	if s0[510] != 0x55 || s0[511] != 0xAA {
		return false
	}
	for i := 0; i < 4; i++ {
		if s0[446+16*i+4] == 0xEE {
			return true
		}
	}
	return false
}

// gptAt reads and checks the GPT header at lba and its entries. sig tells
// whether a header signature was there at all.
func gptAt(r io.ReaderAt, size int64, ss int, lba uint64) (t *Table, sig bool, err error) {
	buf := make([]byte, ss)
	if err := readFull(r, buf, int64(lba)*int64(ss)); err != nil {
		return nil, false, err
	}
	if !bytes.Equal(buf[:8], gptSignature) {
		return nil, false, fmt.Errorf("partition: no GPT header at LBA %d: %w", lba, ErrCorrupt)
	}
	h, err := parseGPTHeader(buf, size, ss, lba)
	if err != nil {
		return nil, true, err
	}
	n := int64(h.numEntries) * int64(h.entrySize)
	entries := make([]byte, n)
	if err := readFull(r, entries, int64(h.entriesLBA)*int64(ss)); err != nil {
		return nil, true, err
	}
	if crc32.ChecksumIEEE(entries) != h.entriesCRC {
		return nil, true, fmt.Errorf("partition: GPT entries at LBA %d: bad CRC: %w", h.entriesLBA, ErrCorrupt)
	}
	t = &Table{Kind: KindGPT, SectorSize: ss, DiskGUID: guidString(buf[56:72])}
	for i := 0; i < int(h.numEntries); i++ {
		e := entries[i*int(h.entrySize):][:128]
		if allZero(e[:16]) {
			continue
		}
		first := binary.LittleEndian.Uint64(e[32:])
		last := binary.LittleEndian.Uint64(e[40:])
		if first > last || first < h.firstUsable || last > h.lastUsable {
			return nil, true, fmt.Errorf("partition: GPT entry %d: sectors %d-%d outside %d-%d: %w",
				i+1, first, last, h.firstUsable, h.lastUsable, ErrCorrupt)
		}
		typeID := guidString(e[:16])
		start := int64(first) * int64(ss)
		attrs := binary.LittleEndian.Uint64(e[48:])
		t.Partitions = append(t.Partitions, Partition{
			Number:   i + 1,
			Start:    start,
			Size:     clip(start, int64(last-first+1)*int64(ss), size),
			Type:     gptTypeName(typeID),
			TypeID:   typeID,
			Name:     utf16Name(e[56:128]),
			GUID:     guidString(e[16:32]),
			Bootable: attrs&(1<<2) != 0,
		})
	}
	return t, true, nil
}

func parseGPTHeader(buf []byte, size int64, ss int, lba uint64) (*gptHeader, error) {
	le := binary.LittleEndian
	hsize := le.Uint32(buf[12:])
	if hsize < 92 || int(hsize) > ss {
		return nil, fmt.Errorf("partition: GPT header at LBA %d: size %d: %w", lba, hsize, ErrCorrupt)
	}
	hdr := make([]byte, hsize)
	copy(hdr, buf)
	clear(hdr[16:20])
	if crc32.ChecksumIEEE(hdr) != le.Uint32(buf[16:]) {
		return nil, fmt.Errorf("partition: GPT header at LBA %d: bad CRC: %w", lba, ErrCorrupt)
	}
	h := &gptHeader{
		myLBA:       le.Uint64(buf[24:]),
		altLBA:      le.Uint64(buf[32:]),
		firstUsable: le.Uint64(buf[40:]),
		lastUsable:  le.Uint64(buf[48:]),
		entriesLBA:  le.Uint64(buf[72:]),
		numEntries:  le.Uint32(buf[80:]),
		entrySize:   le.Uint32(buf[84:]),
		entriesCRC:  le.Uint32(buf[88:]),
	}
	sectors := uint64(size / int64(ss))
	switch {
	case h.myLBA != lba:
		return nil, fmt.Errorf("partition: GPT header at LBA %d says it is at %d: %w", lba, h.myLBA, ErrCorrupt)
	case h.entrySize < 128 || h.entrySize%8 != 0:
		return nil, fmt.Errorf("partition: GPT entry size %d: %w", h.entrySize, ErrCorrupt)
	case uint64(h.numEntries)*uint64(h.entrySize) > MaxEntriesBytes:
		return nil, fmt.Errorf("partition: GPT entries array %d x %d too large: %w", h.numEntries, h.entrySize, ErrCorrupt)
	case h.firstUsable > h.lastUsable:
		return nil, fmt.Errorf("partition: GPT usable sectors %d-%d: %w", h.firstUsable, h.lastUsable, ErrCorrupt)
	}
	arrSectors := (uint64(h.numEntries)*uint64(h.entrySize) + uint64(ss) - 1) / uint64(ss)
	if h.entriesLBA < 1 || h.entriesLBA >= sectors || arrSectors > sectors-h.entriesLBA {
		return nil, fmt.Errorf("partition: GPT entries at LBA %d outside the disk: %w", h.entriesLBA, ErrCorrupt)
	}
	return h, nil
}

// guidString formats a GPT GUID: the first three fields are little-endian.
func guidString(b []byte) string {
	le := binary.LittleEndian
	return fmt.Sprintf("%08X-%04X-%04X-%X-%X",
		le.Uint32(b[0:]), le.Uint16(b[4:]), le.Uint16(b[6:]), b[8:10], b[10:16])
}

func utf16Name(b []byte) string {
	u := make([]uint16, 0, len(b)/2)
	for i := 0; i+1 < len(b); i += 2 {
		c := binary.LittleEndian.Uint16(b[i:])
		if c == 0 {
			break
		}
		u = append(u, c)
	}
	return string(utf16.Decode(u))
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// gptTypes names the common GPT partition type GUIDs as sgdisk does.
var gptTypes = map[string]string{
	"C12A7328-F81F-11D2-BA4B-00A0C93EC93B": "EFI System",
	"0FC63DAF-8483-4772-8E79-3D69D8477DE4": "Linux filesystem",
	"0657FD6D-A4AB-43C4-84E5-0933C84B4F4F": "Linux swap",
	"E6D6D379-F507-44C2-A23C-238F2A3DF928": "Linux LVM",
	"A19D880F-05FC-4D3B-A006-743F0F84911E": "Linux RAID",
	"4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709": "Linux x86-64 root (/)",
	"44479540-F297-41B2-9AF7-D131D5F0458A": "Linux x86 root (/)",
	"B921B045-1DF0-41C3-AF44-4C6F280D3FAE": "Linux ARM64 root (/)",
	"933AC7E1-2EB4-4F13-B844-0E14E2AEF915": "Linux /home",
	"3B8F8425-20E0-4F3B-907F-1A25A76F98E8": "Linux /srv",
	"BC13C2FF-59E6-4262-A352-B275FD6F7172": "Linux extended boot",
	"CA7D7CCB-63ED-4C53-861C-1742536059CC": "Linux LUKS",
	"21686148-6449-6E6F-744E-656564454649": "BIOS boot partition",
	"EBD0A0A2-B9E5-4433-87C0-68B6B72699C7": "Microsoft basic data",
	"E3C9E316-0B5C-4DB8-817D-F92DF00215AE": "Microsoft reserved",
	"DE94BBA4-06D1-4D40-A16A-BFD50179D6AC": "Windows RE",
	"5808C8AA-7E8F-42E0-85D2-E1E90434CFB3": "Windows LDM metadata",
	"AF9B60A0-1431-4F62-BC68-3311714A69AD": "Windows LDM data",
	"48465300-0000-11AA-AA11-00306543ECAC": "Apple HFS/HFS+",
	"7C3457EF-0000-11AA-AA11-00306543ECAC": "Apple APFS",
	"516E7CB6-6ECF-11D6-8FF8-00022D09712B": "FreeBSD UFS",
	"6A898CC3-1DD2-11B2-99A6-080020736631": "Solaris /usr & Mac ZFS",
}

func gptTypeName(id string) string {
	if n, ok := gptTypes[strings.ToUpper(id)]; ok {
		return n
	}
	return id
}

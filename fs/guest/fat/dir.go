package fat

import (
	"encoding/binary"
	"fmt"
	"sort"
	"strings"
	"unicode/utf16"

	"github.com/cairn-backup/cairn/fs/guest"
)

const (
	attrReadOnly = 0x01
	attrVolume   = 0x08
	attrDir      = 0x10
	attrLFN      = 0x0F

	// maxDirBytes is the largest directory FAT allows: 65536 entries.
	maxDirBytes = 65536 * 32
)

// dent is one parsed directory entry.
type dent struct {
	name  string // long name, or the 8.3 name with its case bits applied
	short string // 8.3 alias as stored, e.g. "LONGFI~1.TXT"
	ino   uint64 // byte offset of the short entry
	attr  byte
}

// dir is a parsed directory: entries sorted by name, and an index by
// upper-cased name (long and short) for Lookup.
type dir struct {
	ents  []dent
	byKey map[string]int
}

func foldKey(s string) string { return strings.ToUpper(s) }

// parseDir parses raw directory bytes; offAt maps an index into buf to
// its byte offset on the volume, which becomes the entry's inode number.
func parseDir(buf []byte, offAt func(i int) int64) *dir {
	d := &dir{}
	var lfn [20 * 13]uint16
	lfnNext := 0 // the LFN ordinal expected next; 0 when none is pending
	var lfnSum byte
	lfnLen := 0
	for i := 0; i+32 <= len(buf); i += 32 {
		e := buf[i : i+32]
		if e[0] == 0x00 {
			break // no entries follow
		}
		if e[0] == 0xE5 {
			lfnNext = 0
			continue
		}
		attr := e[11]
		if attr&0x3F == attrLFN {
			ord := int(e[0] & 0x1F)
			switch {
			case e[0]&0x40 != 0 && ord >= 1 && ord <= 20:
				lfnNext, lfnSum, lfnLen = ord, e[13], ord*13
				clear(lfn[:lfnLen])
			case lfnNext != 0 && ord == lfnNext && e[13] == lfnSum:
			default:
				lfnNext = 0
				continue
			}
			base := (ord - 1) * 13
			for k, o := range [13]int{1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30} {
				lfn[base+k] = binary.LittleEndian.Uint16(e[o:])
			}
			lfnNext--
			if lfnNext == 0 {
				lfnNext = -1 // complete, waiting for its short entry
			}
			continue
		}
		pending := lfnNext == -1
		lfnNext = 0
		if attr&attrVolume != 0 || e[0] == '.' {
			continue
		}
		short := shortName(e, false)
		name := ""
		if pending && checksum(e[:11]) == lfnSum {
			name = lfnString(lfn[:lfnLen])
		}
		if name == "" {
			name = shortName(e, true)
		}
		if name == "" || strings.ContainsAny(name, "/\x00") {
			continue // unusable as a path element
		}
		d.ents = append(d.ents, dent{name: name, short: short, ino: uint64(offAt(i)), attr: attr})
	}
	sort.Slice(d.ents, func(a, b int) bool { return d.ents[a].name < d.ents[b].name })
	d.byKey = make(map[string]int, 2*len(d.ents))
	for i, e := range d.ents {
		if _, ok := d.byKey[foldKey(e.name)]; !ok {
			d.byKey[foldKey(e.name)] = i
		}
	}
	for i, e := range d.ents {
		if _, ok := d.byKey[foldKey(e.short)]; !ok {
			d.byKey[foldKey(e.short)] = i
		}
	}
	return d
}

func checksum(name []byte) byte {
	var s byte
	for _, c := range name {
		s = (s>>1 | s<<7) + c
	}
	return s
}

func lfnString(u []uint16) string {
	for i, c := range u {
		if c == 0 {
			u = u[:i]
			break
		}
	}
	return string(utf16.Decode(u))
}

// shortName renders the 8.3 name of entry e; with cased set, the NT case
// bits lowercase the base and extension.
func shortName(e []byte, cased bool) string {
	raw := [11]byte(e[:11])
	if raw[0] == 0x05 {
		raw[0] = 0xE5 // a real 0xE5 first byte, escaped
	}
	part := func(b []byte, lower bool) string {
		var sb strings.Builder
		for _, c := range b {
			if lower && c >= 'A' && c <= 'Z' {
				c += 'a' - 'A'
			}
			sb.WriteRune(cp437[c])
		}
		return strings.TrimRight(sb.String(), " ")
	}
	base := part(raw[:8], cased && e[12]&0x08 != 0)
	ext := part(raw[8:], cased && e[12]&0x10 != 0)
	if ext == "" {
		return base
	}
	return base + "." + ext
}

// readDir returns the parsed directory of inode ino, from the cache or
// from disk.
func (fs *FS) readDir(ino uint64) (*dir, error) {
	if d, ok := fs.dirs.Get(ino); ok {
		return d, nil
	}
	var d *dir
	if ino == RootIno && fs.l.typ != FAT32 {
		buf := make([]byte, fs.l.rootBytes)
		if err := fs.readFull(buf, fs.l.rootStart); err != nil {
			return nil, err
		}
		d = parseDir(buf, func(i int) int64 { return fs.l.rootStart + int64(i) })
	} else {
		first := fs.l.rootCluster
		if ino != RootIno {
			e, err := fs.entry(ino)
			if err != nil {
				return nil, err
			}
			if e.attr&attrDir == 0 {
				return nil, fmt.Errorf("fat: inode %d: %w", ino, guest.ErrNotDir)
			}
			first = e.cluster
		}
		ch, err := fs.dirChain(first)
		if err != nil {
			return nil, err
		}
		buf := make([]byte, int64(ch.clusters)*fs.l.clusterSize)
		if err := fs.readChain(ch, buf, 0); err != nil {
			return nil, err
		}
		cs := fs.l.clusterSize
		d = parseDir(buf, func(i int) int64 {
			disk, _, _ := ch.locate(uint32(int64(i) / cs))
			return fs.l.clusterOffset(disk) + int64(i)%cs
		})
	}
	fs.dirs.Add(ino, d, len(d.ents)+1)
	return d, nil
}

// dirChain is the chain of a directory, at most maxDirBytes long.
func (fs *FS) dirChain(first uint32) (*chain, error) {
	max := uint32((maxDirBytes + fs.l.clusterSize - 1) / fs.l.clusterSize)
	ch, err := fs.chainOf(first, max)
	if err != nil {
		return nil, err
	}
	if ch.clusters > max {
		return nil, fmt.Errorf("fat: directory at cluster %d larger than %d bytes: %w", first, maxDirBytes, guest.ErrCorrupt)
	}
	return ch, nil
}

package ntfs

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/cairn-backup/cairn/fs/guest"
)

// Limits that keep damaged input from costing unbounded work or memory.
const (
	maxAttrList   = 1 << 20 // bytes of $ATTRIBUTE_LIST value
	maxExtRecords = 1 << 14 // extension records of one file
	maxSmallValue = 64 << 10
)

// File attribute flags ($STANDARD_INFORMATION and $FILE_NAME).
const (
	faReadOnly     = 0x0001
	faHidden       = 0x0002
	faSystem       = 0x0004
	faReparse      = 0x0400
	faCompressed   = 0x0800
	faEncrypted    = 0x4000
	faRecallOnOpen = 0x00040000
)

// $FILE_NAME namespaces.
const (
	nsPOSIX   = 0
	nsWin32   = 1
	nsDOS     = 2
	nsWin32D0 = 3 // Win32 name that is also a valid DOS name
)

// stream is one attribute's data, joined from all its extents.
type stream struct {
	name     string
	flags    uint16
	resident bool
	data     []byte // resident value

	size, initSize, allocSize, compSize uint64
	cuShift                             uint8
	runs                                []run

	// err says why the stream cannot be read (damaged runlist or
	// extents); the file still stats.
	err error
}

// fileName is one $FILE_NAME attribute: a hard link of the file.
type fileName struct {
	parent uint64 // file reference of the directory
	ns     uint8
	name   string
}

// inode is the parsed, immutable form of one file: its base record and
// the extension records its attribute list names.
type inode struct {
	ino   uint64
	seq   uint16
	flags uint16 // record flags
	links uint16

	fileAttrs                   uint32 // from $STANDARD_INFORMATION
	crtime, mtime, ctime, atime time.Time

	names      []fileName
	data       *stream   // the unnamed $DATA; nil when absent
	named      []*stream // named $DATA streams (alternate data streams)
	indexRoot  []byte    // $INDEX_ROOT:$I30 value
	indexAlloc *stream   // $INDEX_ALLOCATION:$I30
	indexBmp   *stream   // $BITMAP:$I30
	reparse    *stream   // $REPARSE_POINT
	ea         *stream   // $EA

	cost int

	kindOnce sync.Once // kind is worked out on first use
	kindVal  kind
	kindErr  error
}

func (in *inode) isDirRecord() bool { return in.flags&recIsDir != 0 }

// ntfsTime converts 100 ns intervals since 1601 to a time.
func ntfsTime(t uint64) time.Time {
	const epochDiff = 116444736000000000 // 1601 to 1970 in 100 ns
	v := int64(t) - epochDiff
	if int64(t) < 0 {
		v = math.MaxInt64 - epochDiff
	}
	return time.Unix(v/1e7, (v%1e7)*100)
}

// inode returns the parsed file of MFT record ino, from the cache when
// possible. A record that is free, an extension record or past the end
// of the MFT is ErrNotFound; a damaged one ErrCorrupt.
func (fs *FS) inode(ino uint64) (*inode, error) {
	if in, ok := fs.inodes.Get(ino); ok {
		return in, nil
	}
	in, err := fs.loadInode(ino, fs.mft)
	if err != nil {
		return nil, err
	}
	fs.inodes.Add(ino, in, in.cost)
	return in, nil
}

func notFound(ino uint64) error {
	return fmt.Errorf("ntfs: MFT record %d: %w", ino, guest.ErrNotFound)
}

// readRecord reads and parses MFT record num through the $MFT stream mft.
func (fs *FS) readRecord(num uint64, mft *stream) (*record, error) {
	rs := fs.bt.recordSize
	if num > mft.initSize/rs || (num+1)*rs > mft.initSize {
		return nil, notFound(num)
	}
	b := make([]byte, rs)
	if err := fs.readStream(0, mft, b, num*rs); err != nil {
		return nil, fmt.Errorf("ntfs: MFT record %d: %w", num, err)
	}
	return parseRecord(num, b)
}

func (fs *FS) loadInode(ino uint64, mft *stream) (*inode, error) {
	if ino >= 1<<48 {
		return nil, notFound(ino)
	}
	base, err := fs.readRecord(ino, mft)
	if err != nil {
		return nil, err
	}
	if base.flags&recInUse == 0 || base.base != 0 {
		return nil, notFound(ino)
	}
	in := &inode{ino: ino, seq: base.seq, flags: base.flags, links: base.links, cost: 512 + int(fs.bt.recordSize)}
	attrs := base.attrs
	for _, a := range base.attrs {
		if a.typ != atAttrList {
			continue
		}
		ext, err := fs.extensionAttrs(in, a, mft)
		if err != nil {
			return nil, err
		}
		attrs = append(slices.Clip(attrs), ext...)
		break
	}
	if err := fs.fillInode(in, attrs); err != nil {
		return nil, err
	}
	return in, nil
}

// extensionAttrs reads the attribute list a of in and returns the
// attributes of the extension records it names. Each extension record
// is read once and must point back at this base record; attribute lists
// inside extension records are not followed, so lists cannot loop.
func (fs *FS) extensionAttrs(in *inode, a rawAttr, mft *stream) ([]rawAttr, error) {
	var list []byte
	if a.resident {
		list = a.value
	} else {
		s := fs.joinExtents(in.ino, []rawAttr{a})
		if s.err != nil {
			return nil, s.err
		}
		if s.size > maxAttrList {
			return nil, corruptRecord(in.ino, "attribute list of %d bytes", s.size)
		}
		list = make([]byte, s.size)
		if err := fs.readStream(in.ino, s, list, 0); err != nil {
			return nil, fmt.Errorf("ntfs: MFT record %d: attribute list: %w", in.ino, err)
		}
	}
	le := binary.LittleEndian
	var refs []uint64
	seen := map[uint64]bool{}
	for off := 0; off < len(list); {
		if len(list)-off < 0x1A {
			return nil, corruptRecord(in.ino, "attribute list entry cut at offset %d", off)
		}
		e := list[off:]
		n := int(le.Uint16(e[4:]))
		if n < 0x1A || n > len(e) {
			return nil, corruptRecord(in.ino, "attribute list entry of length %d at offset %d", n, off)
		}
		ref := le.Uint64(e[0x10:])
		if mrefNum(ref) != in.ino && !seen[ref] {
			if len(refs) >= maxExtRecords {
				return nil, corruptRecord(in.ino, "more than %d extension records", maxExtRecords)
			}
			seen[ref] = true
			refs = append(refs, ref)
		}
		off += n
	}
	var out []rawAttr
	for _, ref := range refs {
		r, err := fs.readRecord(mrefNum(ref), mft)
		if err != nil {
			return nil, fmt.Errorf("ntfs: MFT record %d: extension: %w", in.ino, err)
		}
		if r.flags&recInUse == 0 || mrefNum(r.base) != in.ino || mrefSeq(r.base) != in.seq ||
			(mrefSeq(ref) != 0 && mrefSeq(ref) != r.seq) {
			return nil, corruptRecord(in.ino, "extension record %d does not belong to it", mrefNum(ref))
		}
		for _, x := range r.attrs {
			if x.typ != atAttrList {
				out = append(out, x)
			}
		}
		in.cost += int(fs.bt.recordSize)
	}
	return out, nil
}

// fillInode sorts the attributes of a file into in.
func (fs *FS) fillInode(in *inode, attrs []rawAttr) error {
	le := binary.LittleEndian
	type key struct {
		typ  uint32
		name string
	}
	extents := map[key][]rawAttr{}
	var order []key
	haveSI := false
	for _, a := range attrs {
		switch a.typ {
		case atStandardInfo:
			if !a.resident || len(a.value) < 0x24 {
				return corruptRecord(in.ino, "$STANDARD_INFORMATION of %d bytes", len(a.value))
			}
			v := a.value
			in.crtime = ntfsTime(le.Uint64(v[0x00:]))
			in.mtime = ntfsTime(le.Uint64(v[0x08:]))
			in.ctime = ntfsTime(le.Uint64(v[0x10:]))
			in.atime = ntfsTime(le.Uint64(v[0x18:]))
			in.fileAttrs = le.Uint32(v[0x20:])
			haveSI = true
		case atFileName:
			v := a.value
			if !a.resident || len(v) < 0x42 || 0x42+2*int(v[0x40]) > len(v) {
				return corruptRecord(in.ino, "$FILE_NAME of %d bytes", len(v))
			}
			in.names = append(in.names, fileName{
				parent: le.Uint64(v),
				ns:     v[0x41],
				name:   decodeName(v[0x42 : 0x42+2*int(v[0x40])]),
			})
		case atIndexRoot:
			if a.name == "$I30" {
				if !a.resident {
					return corruptRecord(in.ino, "non-resident $INDEX_ROOT")
				}
				in.indexRoot = a.value
			}
		case atData, atIndexAlloc, atBitmap, atReparse, atEA:
			k := key{a.typ, a.name}
			if _, ok := extents[k]; !ok {
				order = append(order, k)
			}
			extents[k] = append(extents[k], a)
		}
	}
	if !haveSI {
		return corruptRecord(in.ino, "no $STANDARD_INFORMATION")
	}
	for _, k := range order {
		s := fs.joinExtents(in.ino, extents[k])
		in.cost += 64 + len(s.runs)*24 + len(s.name)
		switch {
		case k.typ == atData && k.name == "":
			in.data = s
		case k.typ == atData:
			in.named = append(in.named, s)
		case k.typ == atIndexAlloc && k.name == "$I30":
			in.indexAlloc = s
		case k.typ == atBitmap && k.name == "$I30":
			in.indexBmp = s
		case k.typ == atReparse:
			in.reparse = s
		case k.typ == atEA:
			in.ea = s
		}
	}
	return nil
}

// joinExtents builds one stream from the extents of an attribute. Damage
// is kept in the stream's err, so that the file still stats.
func (fs *FS) joinExtents(ino uint64, ext []rawAttr) *stream {
	first := ext[0]
	s := &stream{name: first.name, flags: first.flags, resident: first.resident}
	if first.resident {
		s.data = first.value
		s.size, s.initSize, s.allocSize = uint64(len(first.value)), uint64(len(first.value)), uint64(len(first.value)+7)&^7
		s.compSize = s.allocSize
		if len(ext) > 1 {
			s.err = corruptRecord(ino, "resident attribute 0x%x %q appears %d times", first.typ, first.name, len(ext))
		}
		return s
	}
	slices.SortFunc(ext, func(a, b rawAttr) int {
		switch {
		case a.lowVCN < b.lowVCN:
			return -1
		case a.lowVCN > b.lowVCN:
			return 1
		}
		return 0
	})
	first = ext[0]
	s.flags = first.flags
	s.size, s.initSize, s.allocSize, s.compSize = first.dataSize, first.initSize, first.allocSize, first.compSize
	s.cuShift = first.cuShift
	bad := func(format string, args ...any) *stream {
		s.err = corruptRecord(ino, "attribute 0x%x %q: %s", first.typ, first.name, fmt.Sprintf(format, args...))
		s.runs = nil
		return s
	}
	if first.typ != atData && s.flags&(attrCompressed|attrEncrypted) != 0 {
		return bad("metadata attribute with flags 0x%x", s.flags)
	}
	cs := fs.bt.clusterSize
	if s.initSize > s.size || s.size > s.allocSize || s.allocSize%cs != 0 || s.allocSize > math.MaxInt64 {
		return bad("sizes: data %d, initialized %d, allocated %d", s.size, s.initSize, s.allocSize)
	}
	next := uint64(0)
	for _, a := range ext {
		if a.resident || a.lowVCN != next {
			return bad("extent at VCN %d where %d was expected", a.lowVCN, next)
		}
		var end uint64
		var ok bool
		s.runs, end, ok = decodeRuns(s.runs, a.mapping, a.lowVCN, fs.bt.totalClusters)
		if !ok {
			return bad("runlist at VCN %d", a.lowVCN)
		}
		// highVCN is the last VCN of the extent; an empty attribute has
		// lowVCN 0 and highVCN -1.
		if a.highVCN+1 != end && !(a.highVCN == math.MaxUint64 && end == a.lowVCN) {
			return bad("extent maps VCNs %d to %d, says it ends at %d", a.lowVCN, end, a.highVCN)
		}
		next = end
	}
	if next < s.allocSize/cs {
		return bad("%d clusters mapped for %d allocated bytes", next, s.allocSize)
	}
	return s
}

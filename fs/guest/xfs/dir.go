package xfs

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"syscall"

	"github.com/cairn-backup/cairn/fs/guest"
)

const (
	dirBlockMagicV4 = 0x58443242 // "XD2B": single-block directory
	dirDataMagicV4  = 0x58443244 // "XD2D": data block of a bigger one
	dirBlockMagicV5 = 0x58444233 // "XDB3"
	dirDataMagicV5  = 0x58444433 // "XDD3"
	dirHdrV4        = 16
	dirHdrV5        = 64
	dirCRCOff       = 4
	dirFreeTag      = 0xFFFF
	// dirLeafOffset is where the leaf (hash index) space of a directory
	// starts; every name lives in a data block below it.
	dirLeafOffset = 32 << 30

	// maxDirEntries bounds the listing a damaged directory can produce
	// (for instance one whose block map repeats the same block).
	maxDirEntries = 1 << 24
)

// fileTypes maps the directory entry file type byte to st_mode type bits.
var fileTypes = [8]uint32{
	0, syscall.S_IFREG, syscall.S_IFDIR, syscall.S_IFCHR,
	syscall.S_IFBLK, syscall.S_IFIFO, syscall.S_IFSOCK, syscall.S_IFLNK,
}

// ReadDir returns the entries of directory ino sorted by name, without
// "." and "..". Every directory form keeps its names either in the inode
// (short form) or in data blocks below the leaf offset, so the hash
// index blocks of leaf, node and btree directories are never read. A
// data block that is damaged is left out, and logged; the rest of the
// directory is still listed.
func (fs *FS) ReadDir(ino uint64) ([]guest.DirEntry, error) {
	ents, err := fs.dir(ino)
	if err != nil {
		return nil, err
	}
	return slices.Clone(ents), nil
}

// Lookup returns the inode number of name in directory dir. It searches
// the cached, sorted listing of the directory.
func (fs *FS) Lookup(dir uint64, name string) (uint64, error) {
	ents, err := fs.dir(dir)
	if err != nil {
		return 0, err
	}
	i, ok := slices.BinarySearchFunc(ents, name, func(e guest.DirEntry, n string) int {
		return strings.Compare(e.Name, n)
	})
	if !ok {
		return 0, fmt.Errorf("xfs: %q in directory %d: %w", name, dir, guest.ErrNotFound)
	}
	return ents[i].Ino, nil
}

// dirLister gathers the entries of one directory.
type dirLister struct {
	fs   *FS
	ino  uint64
	ents []guest.DirEntry
	cost int
}

// skip logs damage that leaves part of a directory out of its listing.
func (l *dirLister) skip(what string, err error) {
	l.fs.logf("xfs: directory inode %d: %s left out of the listing: %v", l.ino, what, err)
}

// add records one entry; a bad name or inode number leaves that entry
// out.
func (l *dirLister) add(name []byte, child uint64, ft uint8, hasFt bool) error {
	if len(name) == 1 && name[0] == '.' || len(name) == 2 && name[0] == '.' && name[1] == '.' {
		return nil
	}
	if len(l.ents) >= maxDirEntries {
		return corruptInode(l.ino, "more than %d directory entries", maxDirEntries)
	}
	if len(name) == 0 || slices.Contains(name, '/') || slices.Contains(name, 0) {
		l.skip(fmt.Sprintf("entry %q", name), fmt.Errorf("bad name: %w", guest.ErrCorrupt))
		return nil
	}
	if _, _, ok := l.fs.sb.inodeBlock(child); !ok || child == 0 {
		l.skip(fmt.Sprintf("entry %q", name), fmt.Errorf("inode %d out of range: %w", child, guest.ErrCorrupt))
		return nil
	}
	var mode uint32
	if hasFt && int(ft) < len(fileTypes) {
		mode = fileTypes[ft]
	}
	if mode == 0 {
		// No file type in the entry: ask the inode.
		cin, err := l.fs.inode(child)
		if err != nil {
			l.skip(fmt.Sprintf("entry %q", name), err)
			return nil
		}
		mode = cin.fileType()
	}
	l.ents = append(l.ents, guest.DirEntry{Name: string(name), Ino: child, Mode: mode})
	l.cost += len(name) + 64
	return nil
}

// dir returns the shared, sorted listing of directory ino.
func (fs *FS) dir(ino uint64) ([]guest.DirEntry, error) {
	if ents, ok := fs.dirs.Get(ino); ok {
		return ents, nil
	}
	in, err := fs.inode(ino)
	if err != nil {
		return nil, err
	}
	if !in.isDir() {
		return nil, fmt.Errorf("xfs: inode %d: %w", ino, guest.ErrNotDir)
	}
	l := &dirLister{fs: fs, ino: ino}
	if in.data.format == fmtLocal {
		err = l.shortForm(in)
	} else {
		err = l.blocks(in)
	}
	if err != nil {
		return nil, err
	}
	ents := l.ents
	slices.SortFunc(ents, func(a, b guest.DirEntry) int { return strings.Compare(a.Name, b.Name) })
	// A damaged directory may name the same entry twice; keep the first.
	ents = slices.CompactFunc(ents, func(a, b guest.DirEntry) bool { return a.Name == b.Name })
	fs.dirs.Add(ino, ents, l.cost)
	return ents, nil
}

// shortForm reads a directory kept in its inode: a header (entry count,
// whether inode numbers take 8 bytes, the parent) then packed entries
// (name length, a 2-byte offset, the name, the file type, the inode).
func (l *dirLister) shortForm(in *inode) error {
	b := in.data.raw
	if in.size < 2 || in.size > uint64(len(b)) {
		return corruptInode(in.ino, "short form directory of %d bytes", in.size)
	}
	b = b[:in.size]
	count, i8 := int(b[0]), b[1]
	inoSize := 4
	if i8 != 0 {
		inoSize = 8
	}
	off := 2 + inoSize // past the parent
	ft := 0
	if l.fs.sb.ftype {
		ft = 1
	}
	for i := range count {
		if off+3 > len(b) {
			l.skip(fmt.Sprintf("entries from %d of %d", i, count), corruptInode(in.ino, "short form entry cut at offset %d", off))
			return nil
		}
		nameLen := int(b[off])
		end := off + 3 + nameLen + ft + inoSize
		if end > len(b) {
			l.skip(fmt.Sprintf("entries from %d of %d", i, count), corruptInode(in.ino, "short form entry cut at offset %d", off))
			return nil
		}
		name := b[off+3 : off+3+nameLen]
		var ftype uint8
		if ft == 1 {
			ftype = b[off+3+nameLen]
		}
		var child uint64
		if p := b[off+3+nameLen+ft:]; inoSize == 8 {
			child = binary.BigEndian.Uint64(p)
		} else {
			child = uint64(binary.BigEndian.Uint32(p))
		}
		if err := l.add(name, child, ftype, ft == 1); err != nil {
			return err
		}
		off = end
	}
	return nil
}

// blocks reads the data blocks of a block, leaf, node or btree directory:
// every directory block mapped below the leaf offset and the size.
func (l *dirLister) blocks(in *inode) error {
	fs := l.fs
	bs := uint64(fs.sb.blockSize)
	per := uint64(1) << fs.sb.dirBlkLog // filesystem blocks per directory block
	end := min(in.size, dirLeafOffset) / bs
	read := uint64(0)
	for lblk := uint64(0); lblk < end; {
		r, err := fs.mapBlock(in, &in.data, lblk)
		if err != nil {
			return err
		}
		if r.zero {
			lblk += r.n // holes in a directory hold no entries
			continue
		}
		if lblk%per != 0 {
			l.skip(fmt.Sprintf("block at %d", lblk), corruptInode(in.ino, "directory block not aligned"))
			lblk += min(r.n, per-lblk%per)
			continue
		}
		if read += per; read > fs.sb.dblocks {
			return corruptInode(in.ino, "directory maps more blocks than the filesystem has")
		}
		b, first, err := l.dirBlock(in, lblk, r)
		if err == nil {
			err = l.dataBlock(in, b, first, lblk == 0)
		}
		if err != nil {
			if !isCorrupt(err) {
				return err // the volume could not be read
			}
			l.skip(fmt.Sprintf("directory block at file block %d", lblk), err)
		}
		lblk += per
	}
	return nil
}

// dirBlock gathers the per filesystem blocks of the directory block that
// starts at file block lblk, mapped by r there.
func (l *dirLister) dirBlock(in *inode, lblk uint64, r run) ([]byte, uint64, error) {
	fs := l.fs
	per := uint64(1) << fs.sb.dirBlkLog
	if r.n >= per {
		b, err := fs.blocksAt(r.blk, uint32(per))
		return b, r.blk, err
	}
	// A directory block split across extents: copy it together.
	b := make([]byte, 0, per*uint64(fs.sb.blockSize))
	first := r.blk
	for got := uint64(0); got < per; {
		if got > 0 {
			var err error
			if r, err = fs.mapBlock(in, &in.data, lblk+got); err != nil {
				return nil, 0, err
			}
			if r.zero {
				return nil, 0, corruptInode(in.ino, "hole inside directory block at %d", lblk)
			}
		}
		n := min(r.n, per-got)
		p, err := fs.blocksAt(r.blk, uint32(n))
		if err != nil {
			return nil, 0, err
		}
		b = append(b, p...)
		got += n
	}
	return b, first, nil
}

// dataBlock parses the entries of one directory data block, or of the
// block of a single-block directory, whose hash index and tail at the
// end bound them.
func (l *dirLister) dataBlock(in *inode, b []byte, blk uint64, first bool) error {
	fs := l.fs
	be := binary.BigEndian
	magic := be.Uint32(b)
	hdr := dirHdrV4
	single := false
	if fs.sb.crc() {
		hdr = dirHdrV5
		switch magic {
		case dirBlockMagicV5:
			single = true
		case dirDataMagicV5:
		default:
			return corruptInode(in.ino, "directory block %d: bad magic %#x", blk, magic)
		}
		if err := fs.checkHeader(b, dirCRCOff, 8, 40, 24, blk, in.ino); err != nil {
			return corruptInode(in.ino, "directory block %d: %v", blk, err)
		}
	} else {
		switch magic {
		case dirBlockMagicV4:
			single = true
		case dirDataMagicV4:
		default:
			return corruptInode(in.ino, "directory block %d: bad magic %#x", blk, magic)
		}
	}
	end := len(b)
	if single {
		if !first {
			return corruptInode(in.ino, "single-block directory header in block %d", blk)
		}
		count := uint64(be.Uint32(b[len(b)-8:]))
		if count > uint64(len(b)-hdr-8)/8 {
			return corruptInode(in.ino, "directory block %d: %d hash entries", blk, count)
		}
		end = len(b) - 8 - int(count)*8
	}
	ft := 0
	if fs.sb.ftype {
		ft = 1
	}
	for off := hdr; off < end; {
		if end-off < 8 {
			return corruptInode(in.ino, "directory block %d: entry cut at offset %d", blk, off)
		}
		if be.Uint16(b[off:]) == dirFreeTag {
			n := int(be.Uint16(b[off+2:]))
			if n < 8 || n%8 != 0 || n > end-off {
				return corruptInode(in.ino, "directory block %d: free space of %d bytes at offset %d", blk, n, off)
			}
			off += n
			continue
		}
		child := be.Uint64(b[off:])
		nameLen := int(b[off+8])
		size := (8 + 1 + nameLen + ft + 2 + 7) &^ 7
		if nameLen == 0 || size > end-off {
			return corruptInode(in.ino, "directory block %d: entry of %d bytes at offset %d", blk, size, off)
		}
		if tag := int(be.Uint16(b[off+size-2:])); tag != off {
			return corruptInode(in.ino, "directory block %d: entry at offset %d tagged %d", blk, off, tag)
		}
		var ftype uint8
		if ft == 1 {
			ftype = b[off+9+nameLen]
		}
		if err := l.add(b[off+9:off+9+nameLen], child, ftype, ft == 1); err != nil {
			return err
		}
		off += size
	}
	return nil
}

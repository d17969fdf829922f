package ext4

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"syscall"

	"github.com/cairn-backup/cairn/fs/guest"
)

// dirReadChunk bounds one read of directory data.
const dirReadChunk = 256 << 10

// maxDirEntries bounds the listing a damaged directory can produce (for
// instance one whose block map repeats the same block).
const maxDirEntries = 1 << 24

// dirTailLen is the size of the fake entry ending a leaf block with
// metadata_csum: inode 0, rec_len 12, name_len 0, type 0xDE, crc32c.
const dirTailLen = 12

// fileTypes maps the directory entry file type byte to st_mode type bits.
var fileTypes = [8]uint32{
	0, syscall.S_IFREG, syscall.S_IFDIR, syscall.S_IFCHR,
	syscall.S_IFBLK, syscall.S_IFIFO, syscall.S_IFSOCK, syscall.S_IFLNK,
}

// dirListing is the parsed form of one directory, shared through the
// cache: callers must not modify it.
type dirListing struct {
	ents []guest.DirEntry // sorted by name, names unique
	// omitted holds the names left out of ents, with the reason Lookup
	// gives for them: a damaged or unused inode, a duplicate.
	omitted map[string]error
	// folded maps the case-folded form of each valid UTF-8 name to its
	// index in ents, in a casefold directory; nil otherwise.
	folded map[string]int
}

// ReadDir returns the entries of directory ino sorted by name, without
// "." and "..". Hashed (htree) directories are read block by block: their
// index blocks look like empty entries, so a linear read is complete.
// Entries that cannot be served are left out (see dir).
func (fs *FS) ReadDir(ino uint64) ([]guest.DirEntry, error) {
	l, err := fs.dir(ino)
	if err != nil {
		return nil, err
	}
	return slices.Clone(l.ents), nil
}

// Lookup returns the inode number of name in directory dir. It searches
// the cached, sorted listing of the directory for the exact bytes first;
// in a casefold directory a name that is valid UTF-8 then matches the
// entry it equals once both are case-folded, as the kernel matches. A
// name left out of the listing gives the reason it was.
func (fs *FS) Lookup(dir uint64, name string) (uint64, error) {
	l, err := fs.dir(dir)
	if err != nil {
		return 0, err
	}
	i, ok := slices.BinarySearchFunc(l.ents, name, func(e guest.DirEntry, n string) int {
		return strings.Compare(e.Name, n)
	})
	if ok {
		return l.ents[i].Ino, nil
	}
	if err, ok := l.omitted[name]; ok {
		return 0, err
	}
	if l.folded != nil {
		if f, ok := foldName(name); ok {
			if i, ok := l.folded[f]; ok {
				return l.ents[i].Ino, nil
			}
		}
	}
	return 0, fmt.Errorf("ext4: %q in directory %d: %w", name, dir, guest.ErrNotFound)
}

// dir returns the shared listing of directory ino.
//
// What cannot be served is left out, logged, and the rest listed, as the
// kernel's readdir skips what it cannot parse:
//   - a record whose length or name does not fit its block ends the walk
//     of that block (the entries before it stay), and so does an entry
//     naming an inode number past the inode count;
//   - an entry whose inode cannot be read or fails its checksum, or has
//     mode 0 (unused), is left out, and Lookup of its name gives the
//     reason (EIO, or ENOENT for an unused inode);
//   - a name that FUSE cannot carry (empty, or holding '/' or NUL), and
//     the second of two equal names, are left out.
//
// A directory block that fails its checksum, or a directory that cannot
// be mapped, is an error for the whole directory (EIO), not for the
// filesystem.
func (fs *FS) dir(ino uint64) (*dirListing, error) {
	if l, ok := fs.dirs.Get(ino); ok {
		return l, nil
	}
	in, err := fs.inode(ino)
	if err != nil {
		return nil, err
	}
	if !in.isDir() {
		return nil, fmt.Errorf("ext4: inode %d: %w", ino, guest.ErrNotDir)
	}
	l := &dirListing{}
	cost := 0
	leaveOut := func(name []byte, why error) {
		fs.logf("ext4: directory inode %d: entry %q left out: %v", ino, name, why)
		if l.omitted == nil {
			l.omitted = map[string]error{}
		}
		if _, ok := l.omitted[string(name)]; !ok && len(l.omitted) < maxDirEntries {
			l.omitted[string(name)] = why
			cost += len(name) + 64
		}
	}
	emit := func(name []byte, child uint64, ft uint8) error {
		if len(l.ents)+len(l.omitted) >= maxDirEntries {
			return corruptInode(ino, "more than %d directory entries", maxDirEntries)
		}
		if len(name) == 0 || slices.Contains(name, '/') || slices.Contains(name, 0) {
			leaveOut(name, corruptInode(ino, "entry name %q", name))
			return nil
		}
		cin, err := fs.inode(child)
		switch {
		case err != nil:
			if !errors.Is(err, guest.ErrCorrupt) {
				err = corruptInodeErr(ino, fmt.Sprintf("entry %q", name), err)
			}
			leaveOut(name, err)
			return nil
		case cin.unused():
			leaveOut(name, fmt.Errorf("ext4: directory %d: entry %q names unused inode %d: %w", ino, name, child, guest.ErrNotFound))
			return nil
		}
		var mode uint32
		if fs.sb.has(incompatFiletype) && int(ft) < len(fileTypes) {
			mode = fileTypes[ft]
		}
		if mode == 0 {
			mode = cin.fileType() // old ext2 without file types in entries
		}
		l.ents = append(l.ents, guest.DirEntry{Name: string(name), Ino: child, Mode: mode})
		cost += len(name) + 64
		return nil
	}
	if in.inline() {
		err = fs.parseInlineDir(in, emit)
	} else {
		err = fs.parseBlockDir(in, emit)
	}
	if err != nil {
		return nil, err
	}
	// Fast commits change entries over what the blocks hold: a link
	// replaces an entry of its name, an unlink removes the name if it
	// names that inode.
	for _, op := range fs.fc.dirOpsOf(ino) {
		i := slices.IndexFunc(l.ents, func(e guest.DirEntry) bool { return e.Name == op.name })
		if i >= 0 && (op.link || l.ents[i].Ino == op.ino) {
			l.ents = slices.Delete(l.ents, i, i+1)
		}
		if op.link {
			delete(l.omitted, op.name)
			if err := emit([]byte(op.name), op.ino, op.ft); err != nil {
				return nil, err
			}
		}
	}
	// Stable, so of two equal names the first on disk stays.
	slices.SortStableFunc(l.ents, func(a, b guest.DirEntry) int { return strings.Compare(a.Name, b.Name) })
	l.ents = slices.CompactFunc(l.ents, func(a, b guest.DirEntry) bool {
		if a.Name != b.Name {
			return false
		}
		fs.logf("ext4: directory inode %d: second entry %q (inode %d) left out", ino, b.Name, b.Ino)
		return true
	})
	if in.flags&flagCasefold != 0 && fs.sb.has(incompatCasefold) && fs.sb.encoding == 1 {
		l.folded = make(map[string]int, len(l.ents))
		for i, e := range l.ents {
			if f, ok := foldName(e.Name); ok {
				if _, dup := l.folded[f]; !dup {
					l.folded[f] = i
					cost += len(f) + 32
				}
			}
		}
	}
	fs.dirs.Add(ino, l, cost)
	return l, nil
}

type emitFunc func(name []byte, ino uint64, ft uint8) error

func (fs *FS) parseBlockDir(in *inode, emit emitFunc) error {
	bs := uint64(fs.sb.blockSize)
	nblocks := in.size / bs
	if in.size%bs != 0 {
		nblocks++
	}
	if nblocks > fs.sb.blocksCount || nblocks > uint64(fs.size)/bs {
		return corruptInode(in.ino, "directory of %d bytes", in.size)
	}
	buf := make([]byte, min(uint64(dirReadChunk)/bs, nblocks)*bs)
	for lblk := uint64(0); lblk < nblocks; {
		r, err := fs.mapBlock(in, lblk)
		if err != nil {
			return err
		}
		n := min(r.n, nblocks-lblk, uint64(len(buf))/bs)
		if r.zero {
			lblk += min(r.n, nblocks-lblk) // holes in a directory hold no entries
			continue
		}
		b := buf[:n*bs]
		if err := fs.readRaw(b, r.phys*bs); err != nil {
			return corruptInodeErr(in.ino, "directory data", err)
		}
		for i := uint64(0); i < n; i++ {
			blk := b[i*bs : (i+1)*bs]
			leaf, err := fs.checkDirBlock(in, lblk+i, blk)
			if err != nil {
				return err
			}
			if leaf != nil {
				if err := fs.parseDirents(in.ino, leaf, emit); err != nil {
					return err
				}
			}
		}
		lblk += n
	}
	return nil
}

// checkDirBlock verifies the checksum of directory block b (logical
// block lblk of in) and returns the part holding entries: nil for an
// htree index block, the block less its tail for a leaf. Without
// metadata_csum the whole block is a leaf.
func (fs *FS) checkDirBlock(in *inode, lblk uint64, b []byte) ([]byte, error) {
	if !fs.sb.metadataCsum() {
		return b, nil
	}
	le := binary.LittleEndian
	bs := len(b)
	if in.flags&flagIndex != 0 {
		// An htree root is block 0 ("." of 12 bytes, ".." covering the
		// rest); an interior node is one empty entry over the whole
		// block. Leaves always end in a tail, so neither shape is one.
		countOff := 0
		switch {
		case lblk == 0 && le.Uint16(b[4:]) == 12 && fs.recLen(le.Uint16(b[16:])) == bs-12 && b[0x18+5] == 8:
			countOff = 0x20
		case lblk > 0 && le.Uint32(b) == 0 && fs.recLen(le.Uint16(b[4:])) == bs:
			countOff = 8
		}
		if countOff != 0 {
			limit, count := int(le.Uint16(b[countOff:])), int(le.Uint16(b[countOff+2:]))
			tail := countOff + 8*limit
			if count > limit || tail+8 > bs {
				return nil, corruptInode(in.ino, "htree block %d with %d of %d entries", lblk, count, limit)
			}
			crc := crc32c(in.csumSeed, b[:countOff+8*count])
			crc = crc32c(crc, b[tail:tail+4])
			crc = crc32c(crc, zeros[:4])
			if crc != le.Uint32(b[tail+4:]) {
				return nil, corruptInode(in.ino, "htree block %d checksum does not match", lblk)
			}
			return nil, nil
		}
	}
	t := b[bs-dirTailLen:]
	if le.Uint32(t) != 0 || le.Uint16(t[4:]) != dirTailLen || t[6] != 0 || t[7] != 0xDE {
		return nil, corruptInode(in.ino, "directory block %d has no checksum tail", lblk)
	}
	if crc32c(in.csumSeed, b[:bs-dirTailLen]) != le.Uint32(t[8:]) {
		return nil, corruptInode(in.ino, "directory block %d checksum does not match", lblk)
	}
	return b[:bs-dirTailLen], nil
}

// recLen decodes a record length: 64 KiB blocks store 65536 as 0 or
// 65535 and borrow the low two bits for bits 16 and 17.
func (fs *FS) recLen(v uint16) int {
	if fs.sb.blockSize < 65536 {
		return int(v)
	}
	if v == 65535 || v == 0 {
		return int(fs.sb.blockSize)
	}
	return int(v&65532) | int(v&3)<<16
}

// parseInlineDir reads a directory kept inside its inode: i_block holds
// the parent inode number then entries, system.data holds more entries.
func (fs *FS) parseInlineDir(in *inode, emit emitFunc) error {
	data, err := fs.inlineData(in)
	if err != nil {
		return err
	}
	if err := fs.parseDirents(in.ino, data[4:len(in.iblock)], emit); err != nil {
		return err
	}
	if len(data) > len(in.iblock) {
		return fs.parseDirents(in.ino, data[len(in.iblock):], emit)
	}
	return nil
}

// parseDirents walks the entries of one directory block, checking every
// record length against the block before trusting it. A record that
// does not fit ends the walk of this block, logged; emit's error ends
// the whole directory.
func (fs *FS) parseDirents(ino uint64, b []byte, emit emitFunc) error {
	le := binary.LittleEndian
	for off := 0; off < len(b); {
		if len(b)-off < 8 {
			fs.logf("ext4: directory inode %d: entry cut at offset %d; rest of the block left out", ino, off)
			return nil
		}
		child := le.Uint32(b[off:])
		recLen := fs.recLen(le.Uint16(b[off+4:]))
		nameLen := int(b[off+6])
		if !fs.sb.has(incompatFiletype) {
			nameLen = int(le.Uint16(b[off+6:]))
		}
		if recLen < 8 || recLen%4 != 0 || recLen > len(b)-off || 8+nameLen > recLen {
			fs.logf("ext4: directory inode %d: record length %d at offset %d; rest of the block left out", ino, recLen, off)
			return nil
		}
		if uint64(child) > uint64(fs.sb.inodesCount) {
			fs.logf("ext4: directory inode %d: entry at offset %d names inode %d of %d; rest of the block left out",
				ino, off, child, fs.sb.inodesCount)
			return nil
		}
		if child != 0 {
			name := b[off+8 : off+8+nameLen]
			if !(nameLen == 1 && name[0] == '.') && !(nameLen == 2 && name[0] == '.' && name[1] == '.') {
				if err := emit(name, uint64(child), b[off+7]); err != nil {
					return err
				}
			}
		}
		off += recLen
	}
	return nil
}

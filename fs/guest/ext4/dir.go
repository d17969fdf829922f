package ext4

import (
	"encoding/binary"
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

// fileTypes maps the directory entry file type byte to st_mode type bits.
var fileTypes = [8]uint32{
	0, syscall.S_IFREG, syscall.S_IFDIR, syscall.S_IFCHR,
	syscall.S_IFBLK, syscall.S_IFIFO, syscall.S_IFSOCK, syscall.S_IFLNK,
}

// ReadDir returns the entries of directory ino sorted by name, without
// "." and "..". Hashed (htree) directories are read block by block: their
// index blocks look like empty entries, so a linear read is complete.
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
		return 0, fmt.Errorf("ext4: %q in directory %d: %w", name, dir, guest.ErrNotFound)
	}
	return ents[i].Ino, nil
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
		return nil, fmt.Errorf("ext4: inode %d: %w", ino, guest.ErrNotDir)
	}
	var ents []guest.DirEntry
	cost := 0
	emit := func(name []byte, child uint64, ft uint8) error {
		if child > uint64(fs.sb.inodesCount) {
			return corruptInode(ino, "entry %q points to inode %d", name, child)
		}
		if slices.Contains(name, '/') || slices.Contains(name, 0) {
			return corruptInode(ino, "entry name %q", name)
		}
		var mode uint32
		if fs.sb.has(incompatFiletype) && int(ft) < len(fileTypes) {
			mode = fileTypes[ft]
		}
		if mode == 0 {
			// Old ext2 without file types in entries: ask the inode.
			cin, err := fs.inode(child)
			if err != nil {
				return corruptInodeErr(ino, fmt.Sprintf("entry %q", name), err)
			}
			mode = cin.fileType()
		}
		if len(ents) >= maxDirEntries {
			return corruptInode(ino, "more than %d directory entries", maxDirEntries)
		}
		ents = append(ents, guest.DirEntry{Name: string(name), Ino: child, Mode: mode})
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
	slices.SortFunc(ents, func(a, b guest.DirEntry) int { return strings.Compare(a.Name, b.Name) })
	fs.dirs.Add(ino, ents, cost)
	return ents, nil
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
			if err := fs.parseDirents(in.ino, b[i*bs:(i+1)*bs], emit); err != nil {
				return err
			}
		}
		lblk += n
	}
	return nil
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
// record length against the block before trusting it.
func (fs *FS) parseDirents(ino uint64, b []byte, emit emitFunc) error {
	le := binary.LittleEndian
	for off := 0; off < len(b); {
		if len(b)-off < 8 {
			return corruptInode(ino, "directory entry cut at offset %d", off)
		}
		child := le.Uint32(b[off:])
		recLen := int(le.Uint16(b[off+4:]))
		if fs.sb.blockSize >= 65536 && (recLen == 65535 || recLen == 0) {
			recLen = int(fs.sb.blockSize)
		} else if fs.sb.blockSize >= 65536 {
			recLen = recLen&65532 | (recLen&3)<<16
		}
		nameLen := int(b[off+6])
		if !fs.sb.has(incompatFiletype) {
			nameLen = int(le.Uint16(b[off+6:]))
		}
		if recLen < 8 || recLen%4 != 0 || recLen > len(b)-off || 8+nameLen > recLen {
			return corruptInode(ino, "directory record length %d at offset %d", recLen, off)
		}
		if child != 0 {
			name := b[off+8 : off+8+nameLen]
			if nameLen == 0 {
				return corruptInode(ino, "empty name in directory entry at offset %d", off)
			}
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

package xfs

import (
	"encoding/binary"
	"fmt"
	"io"

	"github.com/cairn-backup/cairn/fs/guest"
)

const (
	maxSymlink      = 1024       // XFS_SYMLINK_MAXLEN
	symlinkMagic    = 0x58534C4D // "XSLM"
	symlinkHdrSize  = 56
	symlinkCRCOff   = 12
	symlinkBlknoOff = 40
)

// ReadAt reads the data of file ino at off. Holes and unwritten extents
// read as zeros; it returns io.EOF at or past the end, like os.File.
func (fs *FS) ReadAt(ino uint64, p []byte, off int64) (int, error) {
	in, err := fs.inode(ino)
	if err != nil {
		return 0, err
	}
	if in.isDir() {
		return 0, fmt.Errorf("xfs: inode %d: %w", ino, guest.ErrIsDir)
	}
	if off < 0 {
		return 0, fmt.Errorf("xfs: inode %d: negative offset %d", ino, off)
	}
	size := fileSize(in)
	if uint64(off) >= size {
		return 0, io.EOF
	}
	var eof error
	if uint64(len(p)) > size-uint64(off) {
		p = p[:size-uint64(off)]
		eof = io.EOF
	}
	if in.isLink() {
		// A symlink's "data" is its target, as ext4 shows it.
		target, err := fs.Readlink(ino)
		if err != nil {
			return 0, err
		}
		if uint64(len(target)) < size {
			return 0, corruptInode(ino, "symlink target shorter than its size")
		}
		return copy(p, target[off:]), eof
	}
	if err := fs.readData(in, p, uint64(off)); err != nil {
		return 0, err
	}
	return len(p), eof
}

// fileSize is the size of the bytes ReadAt serves: none for devices,
// fifos and sockets.
func fileSize(in *inode) uint64 {
	if !in.isReg() && !in.isLink() {
		return 0
	}
	return in.size
}

// readData fills p from offset off of in's data fork; p must end within
// the file size.
func (fs *FS) readData(in *inode, p []byte, off uint64) error {
	bs := uint64(fs.sb.blockSize)
	for done := 0; done < len(p); {
		pos := off + uint64(done)
		r, err := fs.mapBlock(in, &in.data, pos/bs)
		if err != nil {
			return err
		}
		within := pos % bs
		chunk := uint64(len(p) - done)
		if r.n <= (chunk+within)/bs { // the run ends before the request does
			chunk = r.n*bs - within
		}
		dst := p[done : done+int(chunk)]
		if r.zero {
			clear(dst)
		} else if err := fs.readRaw(dst, r.blk*bs+within); err != nil {
			return inodeErr(in.ino, "data", err)
		}
		done += int(chunk)
	}
	return nil
}

// Readlink returns the target of symlink ino: kept in the inode (local)
// or in blocks, each extent of which starts with a checked header on v5.
func (fs *FS) Readlink(ino uint64) (string, error) {
	in, err := fs.inode(ino)
	if err != nil {
		return "", err
	}
	if !in.isLink() {
		return "", fmt.Errorf("xfs: inode %d: %w", ino, guest.ErrNotSymlink)
	}
	if in.size == 0 || in.size > maxSymlink {
		return "", corruptInode(ino, "symlink of %d bytes", in.size)
	}
	if in.data.format == fmtLocal {
		if in.size > uint64(len(in.data.raw)) {
			return "", corruptInode(ino, "inline symlink of %d bytes", in.size)
		}
		return string(in.data.raw[:in.size]), nil
	}
	bs := uint64(fs.sb.blockSize)
	target := make([]byte, 0, in.size)
	be := binary.BigEndian
	for lblk := uint64(0); uint64(len(target)) < in.size; {
		r, err := fs.mapBlock(in, &in.data, lblk)
		if err != nil {
			return "", err
		}
		if r.zero {
			return "", corruptInode(ino, "hole in symlink target at block %d", lblk)
		}
		// A target is at most 1 KiB, so the extents are short; the bound
		// on n keeps a damaged length from sizing the read.
		n := min(r.n, (maxSymlink+symlinkHdrSize)/bs+1)
		b, err := fs.blocksAt(r.blk, uint32(n))
		if err != nil {
			return "", inodeErr(ino, "symlink block", err)
		}
		want := in.size - uint64(len(target))
		if fs.sb.crc() {
			switch {
			case be.Uint32(b) != symlinkMagic:
				return "", corruptInode(ino, "symlink block %d: bad magic", r.blk)
			case uint64(be.Uint32(b[4:])) != uint64(len(target)):
				return "", corruptInode(ino, "symlink block %d holds offset %d", r.blk, be.Uint32(b[4:]))
			case uint64(be.Uint32(b[8:])) > want || be.Uint32(b[8:]) == 0 || uint64(be.Uint32(b[8:])) > uint64(len(b))-symlinkHdrSize:
				return "", corruptInode(ino, "symlink block %d holds %d bytes", r.blk, be.Uint32(b[8:]))
			}
			if err := fs.checkHeader(b, symlinkCRCOff, symlinkBlknoOff, 32, 16, r.blk, ino); err != nil {
				return "", corruptInode(ino, "symlink block %d: %v", r.blk, err)
			}
			target = append(target, b[symlinkHdrSize:symlinkHdrSize+be.Uint32(b[8:])]...)
		} else {
			target = append(target, b[:min(want, uint64(len(b)))]...)
		}
		lblk += n
	}
	return string(target), nil
}

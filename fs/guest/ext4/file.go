package ext4

import (
	"errors"
	"fmt"
	"io"

	"github.com/cairn-backup/cairn/fs/guest"
)

// maxSymlink bounds a symlink target, so a damaged size never turns into
// a huge allocation.
const maxSymlink = 4096

func corruptInodeErr(ino uint64, what string, err error) error {
	return fmt.Errorf("ext4: inode %d: %s: %w", ino, what, err)
}

// ReadAt reads the data of file ino at off. Holes and unwritten extents
// read as zeros; it returns io.EOF at or past the end, like os.File.
func (fs *FS) ReadAt(ino uint64, p []byte, off int64) (int, error) {
	in, err := fs.inode(ino)
	if err != nil {
		return 0, err
	}
	if in.isDir() {
		return 0, fmt.Errorf("ext4: inode %d: %w", ino, guest.ErrIsDir)
	}
	if off < 0 {
		return 0, fmt.Errorf("ext4: inode %d: negative offset %d", ino, off)
	}
	size := in.size
	if !in.isReg() && !in.isLink() {
		size = 0 // device, fifo, socket: i_block holds no data map
	}
	if uint64(off) >= size {
		return 0, io.EOF
	}
	var eof error
	if uint64(len(p)) > size-uint64(off) {
		p = p[:size-uint64(off)]
		eof = io.EOF
	}
	if err := fs.readData(in, p, uint64(off)); err != nil {
		return 0, err
	}
	return len(p), eof
}

// readData fills p from offset off of in's data; p must end within the
// file size.
func (fs *FS) readData(in *inode, p []byte, off uint64) error {
	if in.inline() {
		return fs.readInline(in, p, off)
	}
	bs := uint64(fs.sb.blockSize)
	for done := 0; done < len(p); {
		pos := off + uint64(done)
		r, err := fs.mapBlock(in, pos/bs)
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
		} else if err := fs.readRaw(dst, r.phys*bs+within); err != nil {
			return corruptInodeErr(in.ino, "data", err)
		}
		done += int(chunk)
	}
	return nil
}

// readInline reads a file kept inside its inode: the first 60 bytes in
// i_block, the rest in the system.data attribute.
func (fs *FS) readInline(in *inode, p []byte, off uint64) error {
	data, err := fs.inlineData(in)
	if err != nil {
		return err
	}
	if off+uint64(len(p)) > uint64(len(data)) {
		return corruptInode(in.ino, "inline data holds %d bytes, size says %d", len(data), in.size)
	}
	copy(p, data[off:])
	return nil
}

// inlineData returns i_block followed by the system.data value.
func (fs *FS) inlineData(in *inode) ([]byte, error) {
	extra, err := fs.getXattr(in, "system.data")
	if err != nil && !errors.Is(err, guest.ErrNoXattr) {
		return nil, err
	}
	data := make([]byte, 0, len(in.iblock)+len(extra))
	data = append(data, in.iblock[:]...)
	return append(data, extra...), nil
}

// Readlink returns the target of symlink ino.
func (fs *FS) Readlink(ino uint64) (string, error) {
	in, err := fs.inode(ino)
	if err != nil {
		return "", err
	}
	if !in.isLink() {
		return "", fmt.Errorf("ext4: inode %d: %w", ino, guest.ErrNotSymlink)
	}
	if in.size > maxSymlink {
		return "", corruptInode(ino, "symlink of %d bytes", in.size)
	}
	// An attribute block takes a whole cluster of i_blocks (as the
	// kernel's ext4_inode_is_fast_symlink counts it).
	eaBlocks := uint64(0)
	if in.fileACL != 0 {
		eaBlocks = fs.sb.clusterSize() / 512
	}
	if !in.inline() && in.blocks <= eaBlocks {
		// Fast symlink: the target sits in i_block itself.
		if in.size > uint64(len(in.iblock)) {
			return "", corruptInode(ino, "fast symlink of %d bytes", in.size)
		}
		return string(in.iblock[:in.size]), nil
	}
	if !in.inline() && in.size >= uint64(fs.sb.blockSize) {
		// A slow symlink's target and its NUL fit its one block.
		return "", corruptInode(ino, "symlink of %d bytes in %d-byte blocks", in.size, fs.sb.blockSize)
	}
	buf := make([]byte, in.size)
	if err := fs.readData(in, buf, 0); err != nil {
		return "", err
	}
	return string(buf), nil
}

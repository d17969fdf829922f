package ntfs

import (
	"fmt"
	"io"
	"syscall"

	"github.com/cairn-backup/cairn/fs/guest"
)

// ReadAt reads the unnamed data of regular file ino at off. Holes,
// sparse and unwritten (past the initialized size) parts read as zeros;
// compressed files are decompressed. It returns io.EOF at or past the
// end, like os.File. Other kinds of files read as empty.
func (fs *FS) ReadAt(ino uint64, p []byte, off int64) (int, error) {
	in, err := fs.userInode(ino)
	if err != nil {
		return 0, err
	}
	s, size, err := fs.fileData(in)
	if err != nil {
		return 0, err
	}
	if off < 0 {
		return 0, fmt.Errorf("ntfs: MFT record %d: negative offset %d", ino, off)
	}
	if uint64(off) >= size {
		return 0, io.EOF
	}
	var eof error
	if uint64(len(p)) > size-uint64(off) {
		p = p[:size-uint64(off)]
		eof = io.EOF
	}
	if err := fs.readStream(ino, s, p, uint64(off)); err != nil {
		return 0, err
	}
	return len(p), eof
}

// fileData returns the data stream of a regular file and its size; nil
// and 0 for other kinds of files. Directories are ErrIsDir.
func (fs *FS) fileData(in *inode) (*stream, uint64, error) {
	k, err := fs.kind(in)
	if err != nil {
		return nil, 0, err
	}
	switch k.mode & syscall.S_IFMT {
	case syscall.S_IFDIR:
		return nil, 0, fmt.Errorf("ntfs: MFT record %d: %w", in.ino, guest.ErrIsDir)
	case syscall.S_IFREG:
		if in.data != nil {
			return in.data, in.data.size, nil
		}
	}
	return nil, 0, nil
}

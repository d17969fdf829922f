package fat

import (
	"fmt"
	"syscall"

	"github.com/cairn-backup/cairn/fs/guest"
)

var _ guest.DataSeeker = (*FS)(nil)

// NextData reports a file's bytes from off to its end as data: FAT has
// no holes. At or past the end, start and end are the size.
func (fs *FS) NextData(ino uint64, off int64) (int64, int64, error) {
	if ino == RootIno {
		return 0, 0, fmt.Errorf("fat: inode %d: %w", ino, guest.ErrIsDir)
	}
	e, err := fs.entry(ino)
	if err != nil {
		return 0, 0, err
	}
	if e.attr&attrDir != 0 {
		return 0, 0, fmt.Errorf("fat: inode %d: %w", ino, guest.ErrIsDir)
	}
	if off < 0 {
		return 0, 0, fmt.Errorf("fat: negative offset %d: %w", off, syscall.EINVAL)
	}
	size := int64(e.size)
	if off >= size {
		return size, size, nil
	}
	return off, size, nil
}

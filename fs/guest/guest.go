package guest

import (
	"errors"
	"time"
)

// Errors every guest filesystem reader wraps, so the FUSE layer can map
// them to errno values without knowing which reader produced them.
var (
	ErrNotFound   = errors.New("no such file or directory")          // ENOENT
	ErrNotDir     = errors.New("not a directory")                    // ENOTDIR
	ErrIsDir      = errors.New("is a directory")                     // EISDIR
	ErrNotSymlink = errors.New("not a symbolic link")                // EINVAL
	ErrNoXattr    = errors.New("no such extended attribute")         // ENODATA
	ErrCorrupt    = errors.New("damaged filesystem")                 // EIO
	ErrUnknown    = errors.New("no known filesystem on this volume") // probe failed
)

// Attr is the metadata of one inode, as the guest filesystem stored it.
// Mode holds the full st_mode: file type bits (syscall.S_IFREG, ...) and
// permission bits.
type Attr struct {
	Ino    uint64
	Mode   uint32
	Nlink  uint32
	Uid    uint32
	Gid    uint32
	Size   uint64
	Blocks uint64 // 512-byte units actually allocated
	Rdev   uint64 // device number for character and block devices
	Atime  time.Time
	Mtime  time.Time
	Ctime  time.Time
}

// DirEntry is one name in a directory. Mode carries the file type bits
// only; "." and ".." are never returned.
type DirEntry struct {
	Name string
	Ino  uint64
	Mode uint32
}

// FS is a read-only filesystem found inside a disk or partition. Every
// method may be called concurrently. Inode numbers are stable for a given
// volume: the same file always has the same number.
type FS interface {
	// Root returns the inode number of the root directory.
	Root() uint64
	Stat(ino uint64) (Attr, error)
	// ReadDir returns the entries of a directory, sorted by name.
	ReadDir(ino uint64) ([]DirEntry, error)
	Lookup(dir uint64, name string) (uint64, error)
	// ReadAt reads file data at any offset; holes read as zeros. It
	// returns io.EOF at or past the end of the file, like os.File.
	ReadAt(ino uint64, p []byte, off int64) (int, error)
	Readlink(ino uint64) (string, error)
	ListXattr(ino uint64) ([]string, error)
	GetXattr(ino uint64, name string) ([]byte, error)
}

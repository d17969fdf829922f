package ntfs

import (
	"fmt"
	"strings"

	"github.com/cairn-backup/cairn/fs/guest"
)

// streamPrefix is the namespace alternate data streams show in, as with
// ntfs-3g's default streams_interface=xattr: stream "s" is xattr
// "user.s".
const streamPrefix = "user."

// ntfs3gPrivate starts the names of streams ntfs-3g keeps for itself and
// does not list.
const ntfs3gPrivate = "ntfs-3g."

// xattrStream reports whether named stream s shows as an extended
// attribute: not one of ntfs-3g's own, and small enough for the Linux
// xattr interface (XATTR_SIZE_MAX, 64 KiB); larger streams cannot be
// passed through getxattr(2) at all.
func xattrStream(s *stream) bool {
	if len(s.name) > len(ntfs3gPrivate)+1 && strings.HasPrefix(s.name, ntfs3gPrivate) {
		return false
	}
	return s.size <= maxSmallValue && !strings.ContainsRune(s.name, 0)
}

// ListXattr returns the names of the alternate data streams of ino as
// "user.<stream>", in the order the file record holds them.
func (fs *FS) ListXattr(ino uint64) ([]string, error) {
	in, err := fs.userInode(ino)
	if err != nil {
		return nil, err
	}
	names := []string{}
	for _, s := range in.named {
		if xattrStream(s) {
			names = append(names, streamPrefix+s.name)
		}
	}
	return names, nil
}

// GetXattr returns the content of the alternate data stream that
// extended attribute name ("user.<stream>") stands for.
func (fs *FS) GetXattr(ino uint64, name string) ([]byte, error) {
	in, err := fs.userInode(ino)
	if err != nil {
		return nil, err
	}
	if sn, ok := strings.CutPrefix(name, streamPrefix); ok {
		for _, s := range in.named {
			if s.name == sn && xattrStream(s) {
				v := make([]byte, s.size)
				if err := fs.readStream(ino, s, v, 0); err != nil {
					return nil, err
				}
				return v, nil
			}
		}
	}
	return nil, fmt.Errorf("ntfs: MFT record %d: %q: %w", ino, name, guest.ErrNoXattr)
}

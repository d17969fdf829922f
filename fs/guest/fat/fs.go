package fat

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"syscall"
	"time"

	"github.com/cairn-backup/cairn/fs/guest"
	"github.com/cairn-backup/cairn/fs/guest/lru"
)

// RootIno is the inode number of the root directory.
const RootIno = 1

// Cache budgets: FAT blocks of 4 KiB, chain runs, directory entries.
const (
	fatCacheBlocks = 256     // 1 MiB of FAT
	chainCacheRuns = 1 << 18 // 256 Ki runs, 3 MiB
	dirCacheEnts   = 1 << 17 // 128 Ki entries
)

// FS is a FAT volume opened read-only. All methods may be called
// concurrently.
type FS struct {
	r        io.ReaderAt
	l        *layout
	fatCache *lru.Cache[int64, []byte]
	chains   *lru.Cache[uint32, *chain]
	dirs     *lru.Cache[uint64, *dir]
}

var _ guest.FS = (*FS)(nil)

// Probe reports whether the volume starts with a FAT boot sector, sound
// or damaged: a damaged one is still FAT, and Open then says how.
func Probe(r io.ReaderAt, size int64) bool {
	_, err := parseBPB(r, size)
	return err == nil || errors.Is(err, guest.ErrCorrupt)
}

// Open reads the boot sector of a FAT volume of the given size. The error
// wraps guest.ErrUnknown when the volume is not FAT, guest.ErrCorrupt when
// its boot sector is damaged.
func Open(r io.ReaderAt, size int64) (*FS, error) {
	l, err := parseBPB(r, size)
	if err != nil {
		return nil, err
	}
	return &FS{
		r:        r,
		l:        l,
		fatCache: lru.New[int64, []byte](fatCacheBlocks),
		chains:   lru.New[uint32, *chain](chainCacheRuns),
		dirs:     lru.New[uint64, *dir](dirCacheEnts),
	}, nil
}

// Type returns the FAT variant of the volume.
func (fs *FS) Type() Type { return fs.l.typ }

// Root returns RootIno.
func (fs *FS) Root() uint64 { return RootIno }

// rawEntry is a short directory entry as read back from its inode number.
type rawEntry struct {
	attr                byte
	cluster             uint32
	size                uint32
	ctime, mtime, atime time.Time
}

// entry reads and checks the short directory entry that inode ino names.
func (fs *FS) entry(ino uint64) (*rawEntry, error) {
	notFound := fmt.Errorf("fat: inode %d: %w", ino, guest.ErrNotFound)
	off := int64(ino)
	inRoot := fs.l.typ != FAT32 && off >= fs.l.rootStart && off < fs.l.rootStart+fs.l.rootBytes
	if ino%32 != 0 || int64(ino) < 0 || !(inRoot || off >= fs.l.dataStart) {
		return nil, notFound
	}
	var e [32]byte
	n, err := fs.r.ReadAt(e[:], off)
	if n < len(e) {
		if err == nil || err == io.EOF {
			return nil, notFound
		}
		return nil, fmt.Errorf("fat: inode %d: %w", ino, err)
	}
	if e[0] == 0 || e[0] == 0xE5 || e[0] == '.' || e[11]&0x3F == attrLFN || e[11]&attrVolume != 0 {
		return nil, notFound
	}
	le := binary.LittleEndian
	re := &rawEntry{
		attr:    e[11],
		cluster: uint32(le.Uint16(e[26:])),
		size:    le.Uint32(e[28:]),
	}
	if fs.l.typ == FAT32 {
		re.cluster |= uint32(le.Uint16(e[20:])) << 16
	}
	re.mtime = fatTime(le.Uint16(e[24:]), le.Uint16(e[22:]), 0)
	re.ctime = fatTime(le.Uint16(e[16:]), le.Uint16(e[14:]), e[13])
	re.atime = fatTime(le.Uint16(e[18:]), 0, 0)
	if re.ctime.IsZero() {
		re.ctime = re.mtime
	}
	if re.atime.IsZero() {
		re.atime = re.mtime
	}
	if re.mtime.IsZero() {
		re.mtime = time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)
		re.ctime, re.atime = re.mtime, re.mtime
	}
	return re, nil
}

// fatTime decodes a FAT date, time and 10 ms count as UTC; a zero or
// impossible date gives the zero time.
func fatTime(date, tod uint16, centis byte) time.Time {
	if date == 0 {
		return time.Time{}
	}
	y, mo, d := int(date>>9)+1980, int(date>>5&0x0F), int(date&0x1F)
	h, mi, s := int(tod>>11), int(tod>>5&0x3F), int(tod&0x1F)*2
	if mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 59 {
		return time.Time{}
	}
	if centis > 199 {
		centis = 0
	}
	return time.Date(y, time.Month(mo), d, h, mi, s, int(centis)*10*int(time.Millisecond), time.UTC)
}

// Stat returns the attributes of inode ino.
func (fs *FS) Stat(ino uint64) (guest.Attr, error) {
	if ino == RootIno {
		size := fs.l.rootBytes
		if fs.l.typ == FAT32 {
			ch, err := fs.dirChain(fs.l.rootCluster)
			if err != nil {
				return guest.Attr{}, err
			}
			size = int64(ch.clusters) * fs.l.clusterSize
		}
		epoch := time.Unix(0, 0).UTC()
		return guest.Attr{
			Ino: RootIno, Mode: syscall.S_IFDIR | 0o755, Nlink: 2,
			Size: uint64(size), Blocks: uint64(size / 512),
			Atime: epoch, Mtime: epoch, Ctime: epoch,
		}, nil
	}
	e, err := fs.entry(ino)
	if err != nil {
		return guest.Attr{}, err
	}
	a := guest.Attr{Ino: ino, Nlink: 1, Atime: e.atime, Mtime: e.mtime, Ctime: e.ctime}
	cs := uint64(fs.l.clusterSize)
	if e.attr&attrDir != 0 {
		ch, err := fs.dirChain(e.cluster)
		if err != nil {
			return guest.Attr{}, err
		}
		a.Mode, a.Nlink = syscall.S_IFDIR|0o755, 2
		a.Size = uint64(ch.clusters) * cs
	} else {
		a.Mode = syscall.S_IFREG | 0o644
		if e.attr&attrReadOnly != 0 {
			a.Mode = syscall.S_IFREG | 0o444
		}
		a.Size = uint64(e.size)
	}
	a.Blocks = (a.Size + cs - 1) / cs * cs / 512
	return a, nil
}

func direntMode(attr byte) uint32 {
	if attr&attrDir != 0 {
		return syscall.S_IFDIR
	}
	return syscall.S_IFREG
}

// ReadDir returns the entries of directory ino sorted by name.
func (fs *FS) ReadDir(ino uint64) ([]guest.DirEntry, error) {
	d, err := fs.readDir(ino)
	if err != nil {
		return nil, err
	}
	out := make([]guest.DirEntry, len(d.ents))
	for i, e := range d.ents {
		out[i] = guest.DirEntry{Name: e.name, Ino: e.ino, Mode: direntMode(e.attr)}
	}
	return out, nil
}

// Lookup finds name in directory dir, ignoring case as FAT does; the 8.3
// alias of a long name matches too.
func (fs *FS) Lookup(dir uint64, name string) (uint64, error) {
	d, err := fs.readDir(dir)
	if err != nil {
		return 0, err
	}
	if i, ok := d.byKey[foldKey(name)]; ok {
		return d.ents[i].ino, nil
	}
	return 0, fmt.Errorf("fat: %q in inode %d: %w", name, dir, guest.ErrNotFound)
}

// ReadAt reads file data at off. It returns io.EOF at or past the end of
// the file, and with a short count when p runs past it.
func (fs *FS) ReadAt(ino uint64, p []byte, off int64) (int, error) {
	if ino == RootIno {
		return 0, fmt.Errorf("fat: inode %d: %w", ino, guest.ErrIsDir)
	}
	e, err := fs.entry(ino)
	if err != nil {
		return 0, err
	}
	if e.attr&attrDir != 0 {
		return 0, fmt.Errorf("fat: inode %d: %w", ino, guest.ErrIsDir)
	}
	if off < 0 {
		return 0, fmt.Errorf("fat: negative offset %d: %w", off, syscall.EINVAL)
	}
	size := int64(e.size)
	if off >= size {
		return 0, io.EOF
	}
	n := len(p)
	if int64(n) > size-off {
		n = int(size - off)
	}
	if n == 0 {
		return 0, nil
	}
	if e.cluster == 0 {
		return 0, fmt.Errorf("fat: inode %d: %d bytes but no clusters: %w", ino, size, guest.ErrCorrupt)
	}
	ch, err := fs.chainOf(e.cluster, fs.l.clusters)
	if err != nil {
		return 0, err
	}
	if need := (size + fs.l.clusterSize - 1) / fs.l.clusterSize; int64(ch.clusters) < need {
		return 0, fmt.Errorf("fat: inode %d: %d bytes but a chain of %d clusters: %w", ino, size, ch.clusters, guest.ErrCorrupt)
	}
	if err := fs.readChain(ch, p[:n], off); err != nil {
		return 0, err
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// Readlink fails: FAT has no symbolic links.
func (fs *FS) Readlink(ino uint64) (string, error) {
	return "", fmt.Errorf("fat: inode %d: %w", ino, guest.ErrNotSymlink)
}

// ListXattr returns no names: FAT has no extended attributes.
func (fs *FS) ListXattr(ino uint64) ([]string, error) {
	if ino == RootIno {
		return nil, nil
	}
	_, err := fs.entry(ino)
	return nil, err
}

// GetXattr fails with guest.ErrNoXattr: FAT has no extended attributes.
func (fs *FS) GetXattr(ino uint64, name string) ([]byte, error) {
	return nil, fmt.Errorf("fat: inode %d: xattr %q: %w", ino, name, guest.ErrNoXattr)
}

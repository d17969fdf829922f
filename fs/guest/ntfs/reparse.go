package ntfs

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"
	"syscall"
	"unicode/utf16"

	"github.com/cairn-backup/cairn/fs/guest"
)

// Reparse tags this reader follows.
const (
	tagMountPoint = 0xA0000003 // directory junction, volume mount point
	tagSymlink    = 0xA000000C
	tagLXSymlink  = 0xA000001D // WSL symlink: UTF-8 target
	tagAFUnix     = 0x80000023 // WSL socket
	tagLXFifo     = 0x80000024
	tagLXChr      = 0x80000025
	tagLXBlk      = 0x80000026

	tagMicrosoft       = 0x80000000 // Microsoft tags have no GUID in their header
	symlinkFlagRelPath = 0x1
	maxReparseData     = 16 << 10 // MAXIMUM_REPARSE_DATA_BUFFER_SIZE
	maxParentDepth     = 1024     // directories between a link and the root
	badReparseFormat   = "unsupported reparse tag 0x%08x"
)

// reparsePoint is a file's $REPARSE_POINT as read.
type reparsePoint struct {
	tag   uint32
	data  []byte // after the header (8 bytes, 24 for non-Microsoft tags)
	valid bool   // passes ntfs-3g's consistency checks for its tag
}

// reparsePoint reads the reparse point of in. A missing or inconsistent
// one is not an error: ntfs-3g shows such a file as a symlink naming its
// tag. Only a reparse stream that cannot be read is.
func (fs *FS) reparsePoint(in *inode) (reparsePoint, error) {
	s := in.reparse
	if s == nil || s.size < 8 || s.size > maxReparseData+24 {
		return reparsePoint{}, nil
	}
	b := make([]byte, s.size)
	if err := fs.readStream(in.ino, s, b, 0); err != nil {
		return reparsePoint{}, fmt.Errorf("ntfs: MFT record %d: reparse point: %w", in.ino, err)
	}
	le := binary.LittleEndian
	rp := reparsePoint{tag: le.Uint32(b)}
	hdr := 8
	if rp.tag&tagMicrosoft == 0 {
		hdr = 24
	}
	dlen := int(le.Uint16(b[4:]))
	if rp.tag == 0 || hdr+dlen != len(b) {
		return rp, nil
	}
	rp.data = b[hdr:]
	d := rp.data
	switch rp.tag {
	case tagMountPoint:
		rp.valid = len(d) >= 8 && in.isDirRecord() &&
			8+int(le.Uint16(d))+int(le.Uint16(d[2:])) <= len(d)
	case tagSymlink:
		rp.valid = len(d) >= 12 && 12+int(le.Uint16(d))+int(le.Uint16(d[2:])) <= len(d)
	case tagLXSymlink:
		rp.valid = len(d) > 4 && le.Uint32(d) == 2
	case tagAFUnix, tagLXFifo, tagLXChr, tagLXBlk:
		rp.valid = len(d) == 0 && in.fileAttrs&faRecallOnOpen != 0
	default:
		rp.valid = true
	}
	return rp, nil
}

// wslDevice reads the device number WSL keeps in the $LXDEV extended
// attribute of a device file.
func (fs *FS) wslDevice(in *inode) (uint64, bool, error) {
	s := in.ea
	if s == nil || s.size > maxSmallValue {
		return 0, false, nil
	}
	b := make([]byte, s.size)
	if err := fs.readStream(in.ino, s, b, 0); err != nil {
		return 0, false, fmt.Errorf("ntfs: MFT record %d: $EA: %w", in.ino, err)
	}
	le := binary.LittleEndian
	for off := 0; off+8 <= len(b); {
		next := int(le.Uint32(b[off:]))
		nlen := int(b[off+5])
		vlen := int(le.Uint16(b[off+6:]))
		if end := off + 8 + nlen + 1 + vlen; end <= len(b) && nlen == 6 && vlen == 8 &&
			string(b[off+8:off+14]) == "$LXDEV" {
			v := b[off+8+nlen+1:]
			return mkdev(uint64(le.Uint32(v)), uint64(le.Uint32(v[4:]))), true, nil
		}
		if next <= 0 {
			break
		}
		off += next
	}
	return 0, false, nil
}

// Readlink returns the target of symlink ino. Interix and WSL symlinks
// give their stored target. Windows symlinks and junctions are turned
// into paths that work inside this volume's tree wherever it is
// mounted: relative ones keep their shape ("\" becomes "/"), absolute
// ones on a drive ("C:\x", "\??\C:\x", "\x") become relative paths from
// the link's directory to that path from the volume root, the drive
// being taken as this volume, as ntfs-3g does when no other mapping is
// defined. Targets that name another volume ("\??\Volume{...}\", UNC)
// become ".NTFS-3G/<target>" from the volume root, as ntfs-3g maps them
// under its mount point. Path components are matched to the names on
// the volume ignoring case, as Windows would resolve them. A reparse
// point of another kind reads as "unsupported reparse tag 0x........".
func (fs *FS) Readlink(ino uint64) (string, error) {
	if t, ok := fs.links.Get(ino); ok {
		return t, nil
	}
	in, err := fs.userInode(ino)
	if err != nil {
		return "", err
	}
	k, err := fs.kind(in)
	if err != nil {
		return "", err
	}
	if k.mode&syscall.S_IFMT != syscall.S_IFLNK {
		return "", fmt.Errorf("ntfs: MFT record %d: %w", ino, guest.ErrNotSymlink)
	}
	t, err := fs.linkTarget(in, k)
	if err != nil {
		return "", err
	}
	fs.links.Add(ino, t, len(t)+64)
	return t, nil
}

func (fs *FS) linkTarget(in *inode, k kind) (string, error) {
	le := binary.LittleEndian
	if k.intx {
		d := in.data
		b := make([]byte, d.size)
		if err := fs.readStream(in.ino, d, b, 0); err != nil {
			return "", err
		}
		return decodeName(b[intxHdr : intxHdr+(len(b)-intxHdr)&^1]), nil
	}
	bad := fmt.Sprintf(badReparseFormat, k.tag)
	if k.bad {
		return bad, nil
	}
	rp, err := fs.reparsePoint(in)
	if err != nil {
		return "", err
	}
	d := rp.data
	switch rp.tag {
	case tagLXSymlink:
		t := d[4:]
		if i := bytes.IndexByte(t, 0); i >= 0 {
			t = t[:i]
		}
		return string(t), nil
	case tagMountPoint:
		off, n := int(le.Uint16(d)), int(le.Uint16(d[2:]))
		return fs.windowsTarget(in, d[8+off:8+off+n], false, true)
	case tagSymlink:
		off, n := int(le.Uint16(d)), int(le.Uint16(d[2:]))
		rel := le.Uint32(d[8:])&symlinkFlagRelPath != 0
		return fs.windowsTarget(in, d[12+off:12+off+n], rel, false)
	}
	return bad, nil
}

// windowsTarget maps a Windows link target (UTF-16) as Readlink says.
func (fs *FS) windowsTarget(in *inode, raw []byte, relFlag, junction bool) (string, error) {
	u := make([]uint16, len(raw)/2)
	for i := range u {
		u[i] = binary.LittleEndian.Uint16(raw[2*i:])
	}
	t := string(utf16.Decode(u))
	tag := uint32(tagSymlink)
	if junction {
		tag = tagMountPoint
	}
	bad := fmt.Sprintf(badReparseFormat, tag)
	drive := func(p string) bool { return len(p) >= 3 && p[1] == ':' && p[2] == '\\' && p[0] != 0 }
	full := strings.HasPrefix(t, `\??\`) || strings.HasPrefix(t, `\\?\`)
	switch {
	case full && !relFlag:
		if rest := t[4:]; drive(rest) {
			return fs.volumePath(in, rest[3:], rest[:2])
		}
		return fs.outsidePath(in, t[4:])
	case junction || !relFlag:
		return bad, nil // ntfs-3g takes only full paths without the relative flag
	case drive(t):
		return fs.volumePath(in, t[3:], t[:2])
	case strings.HasPrefix(t, `\`):
		return fs.volumePath(in, t[1:], "")
	}
	return fs.relativePath(in, t)
}

// splitWin splits a Windows path on backslashes, dropping empty parts.
func splitWin(p string) []string {
	var out []string
	for _, c := range strings.Split(p, `\`) {
		if c != "" {
			out = append(out, c)
		}
	}
	return out
}

// volumePath is the path from the link's directory to p, a path from
// the volume root. A path that is not on the volume and names a drive
// goes to .NTFS-3G/X:/p, where ntfs-3g sends it; without a drive it is
// kept as it is, dangling.
func (fs *FS) volumePath(in *inode, p, drive string) (string, error) {
	comps, found := fs.resolve(RootIno, splitWin(p))
	if !found && drive != "" {
		return fs.outsidePath(in, strings.ToUpper(drive[:1])+drive[1:]+`\`+p)
	}
	up, err := fs.depth(in)
	if err != nil {
		return "", err
	}
	out := strings.Repeat("../", up) + strings.Join(comps, "/")
	if out == "" {
		return ".", nil
	}
	return strings.TrimSuffix(out, "/"), nil
}

// outsidePath names a target on another volume under .NTFS-3G at the
// volume root.
func (fs *FS) outsidePath(in *inode, t string) (string, error) {
	up, err := fs.depth(in)
	if err != nil {
		return "", err
	}
	return strings.Repeat("../", up) + ".NTFS-3G/" + strings.ReplaceAll(t, `\`, "/"), nil
}

// relativePath keeps a relative target's shape, its names spelt as on
// the volume as far as they are found from the link's directory.
func (fs *FS) relativePath(in *inode, t string) (string, error) {
	dir, err := fs.linkDir(in)
	if err != nil {
		return "", err
	}
	comps, _ := fs.resolve(dir, splitWin(t))
	if len(comps) == 0 {
		return ".", nil
	}
	return strings.Join(comps, "/"), nil
}

// resolve matches comps, a path from directory dir, to the names on the
// volume ignoring case, as Windows resolves them. It stops at a reparse
// point or symlink, which the kernel follows in turn, and at the first
// name not found; the components from there are kept as given. found
// reports whether the path leads to a file.
func (fs *FS) resolve(dir uint64, comps []string) (out []string, found bool) {
	out = make([]string, 0, len(comps))
	for i, c := range comps {
		rest := func() []string { return append(out, comps[i+1:]...) }
		switch c {
		case ".":
			out = append(out, c)
			continue
		case "..":
			p, ok := fs.parentOf(dir)
			if !ok {
				return append(out, comps[i:]...), false
			}
			out, dir = append(out, c), p
			continue
		}
		ino, name, ok := fs.lookupFold(dir, c)
		if !ok {
			return append(out, comps[i:]...), false
		}
		out = append(out, name)
		in, err := fs.inode(ino)
		if err != nil {
			return rest(), false
		}
		k, err := fs.kind(in)
		if err != nil {
			return rest(), false
		}
		switch k.mode & syscall.S_IFMT {
		case syscall.S_IFLNK:
			return rest(), true
		case syscall.S_IFDIR:
			dir = ino
		default:
			if i < len(comps)-1 {
				return rest(), false
			}
		}
	}
	return out, true
}

// lookupFold finds name in directory dir, exactly or else ignoring case.
func (fs *FS) lookupFold(dir uint64, name string) (uint64, string, bool) {
	l, err := fs.dir(dir)
	if err != nil {
		return 0, name, false
	}
	if ino, err := fs.Lookup(dir, name); err == nil {
		return ino, name, true
	}
	for _, e := range l.ents {
		if strings.EqualFold(e.Name, name) {
			return e.Ino, e.Name, true
		}
	}
	return 0, name, false
}

// primaryParent returns the directory of in's first name that is not
// a DOS alias.
func primaryParent(in *inode) (uint64, bool) {
	for _, n := range in.names {
		if n.ns != nsDOS {
			return mrefNum(n.parent), true
		}
	}
	return 0, false
}

func (fs *FS) linkDir(in *inode) (uint64, error) {
	p, ok := primaryParent(in)
	if !ok {
		return 0, corruptRecord(in.ino, "link has no name")
	}
	return p, nil
}

func (fs *FS) parentOf(dir uint64) (uint64, bool) {
	if dir == RootIno {
		return RootIno, true
	}
	in, err := fs.inode(dir)
	if err != nil {
		return 0, false
	}
	return primaryParent(in)
}

// depth counts the directories between in's directory and the root.
func (fs *FS) depth(in *inode) (int, error) {
	dir, err := fs.linkDir(in)
	if err != nil {
		return 0, err
	}
	for n := 0; n < maxParentDepth; n++ {
		if dir == RootIno {
			return n, nil
		}
		p, ok := fs.parentOf(dir)
		if !ok {
			return 0, corruptRecord(in.ino, "parent directory %d cannot be read", dir)
		}
		dir = p
	}
	return 0, corruptRecord(in.ino, "more than %d parent directories", maxParentDepth)
}

package xfs

import (
	"encoding/binary"
	"fmt"

	"github.com/cairn-backup/cairn/fs/guest"
)

const (
	attrLeafMagicV4 = 0xFBEE
	attrLeafMagicV5 = 0x3BEE
	daNodeMagicV4   = 0xFEBE
	daNodeMagicV5   = 0x3EBE
	attrLeafHdrV4   = 32
	attrLeafHdrV5   = 80
	daNodeHdrV4     = 16
	daNodeHdrV5     = 64
	daCRCOff        = 12
	daBlknoOff      = 16
	daUUIDOff       = 32
	daOwnerOff      = 48
	// maxDADepth bounds the dabtree of an attribute fork (XFS_DA_NODE_MAXDEPTH).
	maxDADepth = 5

	attrRmtMagic   = 0x5841524D // "XARM"
	attrRmtHdrSize = 56

	maxXattrValue = 64 << 10 // XATTR_SIZE_MAX of Linux
	// maxAttrLeaves bounds the leaves one listing walks, so a sibling
	// chain that loops ends.
	maxAttrLeaves = 1 << 16
)

// Attribute entry flags.
const (
	attrLocal      = 0x01
	attrRoot       = 0x02 // trusted.
	attrSecure     = 0x04 // security.
	attrParent     = 0x08 // a parent pointer, not shown by Linux
	attrIncomplete = 0x80 // being created or removed when the log was cut
)

// XFS keeps POSIX ACLs as trusted attributes with these names, in its own
// format.
const (
	aclFileName    = "SGI_ACL_FILE"
	aclDefaultName = "SGI_ACL_DEFAULT"
)

type xattrEntry struct {
	name   string // with its namespace prefix, as getxattr(2) names it
	acl    bool   // a POSIX ACL in XFS's format
	value  []byte // a local value
	remote uint32 // attribute fork block of a remote value
	size   uint32 // length of a remote value
}

// xattrName turns an entry's flags and name into the name Linux shows.
// ok is false for entries Linux does not list.
func xattrName(flags uint8, name []byte) (string, bool, bool) {
	switch {
	case flags&(attrIncomplete|attrParent) != 0:
		return "", false, false
	case flags&attrSecure != 0:
		return "security." + string(name), false, true
	case flags&attrRoot != 0:
		switch string(name) {
		case aclFileName:
			return "system.posix_acl_access", true, true
		case aclDefaultName:
			return "system.posix_acl_default", true, true
		}
		return "trusted." + string(name), false, true
	}
	return "user." + string(name), false, true
}

// xattrs lists the attributes of in.
func (fs *FS) xattrs(in *inode) ([]xattrEntry, error) {
	f := in.attr
	if f == nil {
		return nil, nil
	}
	if f.format == fmtLocal {
		return shortFormXattrs(in.ino, f.raw)
	}
	if f.nextents == 0 && f.format == fmtExtents {
		return nil, nil
	}
	// Walk down the leftmost path of the dabtree, then along the leaves.
	var out []xattrEntry
	lblk := uint64(0)
	level := -1
	for depth := 0; ; depth++ {
		b, blk, err := fs.attrBlock(in, lblk)
		if err != nil {
			return nil, err
		}
		magic := binary.BigEndian.Uint16(b[8:])
		if magic == attrLeafMagicV4 || magic == attrLeafMagicV5 {
			if level > 1 {
				return nil, corruptInode(in.ino, "attribute leaf at block %d below level %d", lblk, level)
			}
			break
		}
		node, nodeHdr, countOff := uint16(daNodeMagicV4), daNodeHdrV4, 12
		if fs.sb.crc() {
			node, nodeHdr, countOff = daNodeMagicV5, daNodeHdrV5, 56
		}
		if magic != node {
			return nil, corruptInode(in.ino, "attribute block %d: bad magic %#x", blk, magic)
		}
		count := int(binary.BigEndian.Uint16(b[countOff:]))
		lv := int(binary.BigEndian.Uint16(b[countOff+2:]))
		if depth >= maxDADepth || lv < 1 || level >= 0 && lv != level-1 || count < 1 || count > (len(b)-nodeHdr)/8 {
			return nil, corruptInode(in.ino, "attribute node block %d: level %d, %d entries", blk, lv, count)
		}
		level = lv
		lblk = uint64(binary.BigEndian.Uint32(b[nodeHdr+4:])) // entry 0's child
	}
	seen := map[uint64]bool{}
	for {
		if seen[lblk] || len(seen) >= maxAttrLeaves {
			return nil, corruptInode(in.ino, "attribute leaves loop at block %d", lblk)
		}
		seen[lblk] = true
		b, blk, err := fs.attrBlock(in, lblk)
		if err != nil {
			return nil, err
		}
		if err := fs.leafXattrs(in.ino, b, blk, &out); err != nil {
			return nil, err
		}
		forw := binary.BigEndian.Uint32(b)
		if forw == 0 {
			return out, nil
		}
		lblk = uint64(forw)
	}
}

// attrBlock reads attribute fork block lblk and, on v5, checks its
// header. It returns the block and its linear address.
func (fs *FS) attrBlock(in *inode, lblk uint64) ([]byte, uint64, error) {
	r, err := fs.mapBlock(in, in.attr, lblk)
	if err != nil {
		return nil, 0, err
	}
	if r.zero {
		return nil, 0, corruptInode(in.ino, "attribute block %d is not mapped", lblk)
	}
	b, err := fs.blocksAt(r.blk, 1)
	if err != nil {
		return nil, 0, inodeErr(in.ino, "attribute block", err)
	}
	if fs.sb.crc() {
		if err := fs.checkHeader(b, daCRCOff, daBlknoOff, daOwnerOff, daUUIDOff, r.blk, in.ino); err != nil {
			return nil, 0, corruptInode(in.ino, "attribute block %d: %v", r.blk, err)
		}
	}
	return b, r.blk, nil
}

// shortFormXattrs reads attributes kept in the inode: a header (total
// size, count) then entries (name length, value length, flags, name,
// value).
func shortFormXattrs(ino uint64, b []byte) ([]xattrEntry, error) {
	if len(b) < 4 {
		return nil, corruptInode(ino, "short form attributes cut")
	}
	total := int(binary.BigEndian.Uint16(b))
	count := int(b[2])
	if total < 4 || total > len(b) {
		return nil, corruptInode(ino, "short form attributes of %d bytes", total)
	}
	b = b[:total]
	var out []xattrEntry
	off := 4
	for range count {
		if off+3 > len(b) {
			return nil, corruptInode(ino, "short form attribute cut at offset %d", off)
		}
		nl, vl, flags := int(b[off]), int(b[off+1]), b[off+2]
		if off+3+nl+vl > len(b) {
			return nil, corruptInode(ino, "short form attribute cut at offset %d", off)
		}
		name := b[off+3 : off+3+nl]
		if n, acl, ok := xattrName(flags, name); ok {
			out = append(out, xattrEntry{name: n, acl: acl, value: append([]byte{}, b[off+3+nl:off+3+nl+vl]...)})
		}
		off += 3 + nl + vl
	}
	return out, nil
}

// leafXattrs reads the entries of one attribute leaf block: a table of
// (hash, name offset, flags) and, at each offset, a local name and value
// or a name and where its remote value lies.
func (fs *FS) leafXattrs(ino uint64, b []byte, blk uint64, out *[]xattrEntry) error {
	be := binary.BigEndian
	magic, hdr := uint16(attrLeafMagicV4), attrLeafHdrV4
	countOff := 12
	if fs.sb.crc() {
		magic, hdr, countOff = attrLeafMagicV5, attrLeafHdrV5, 56
	}
	if be.Uint16(b[8:]) != magic {
		return corruptInode(ino, "attribute block %d: bad magic %#x", blk, be.Uint16(b[8:]))
	}
	count := int(be.Uint16(b[countOff:]))
	if count > (len(b)-hdr)/8 {
		return corruptInode(ino, "attribute block %d: %d entries", blk, count)
	}
	for i := range count {
		e := b[hdr+8*i:]
		idx := int(be.Uint16(e[4:]))
		flags := e[6]
		if idx < hdr+8*count || idx >= len(b) {
			return corruptInode(ino, "attribute block %d: name at offset %d", blk, idx)
		}
		nv := b[idx:]
		if flags&attrLocal != 0 {
			if len(nv) < 3 {
				return corruptInode(ino, "attribute block %d: entry cut at %d", blk, idx)
			}
			vl, nl := int(be.Uint16(nv)), int(nv[2])
			if 3+nl+vl > len(nv) {
				return corruptInode(ino, "attribute block %d: entry cut at %d", blk, idx)
			}
			if n, acl, ok := xattrName(flags, nv[3:3+nl]); ok {
				*out = append(*out, xattrEntry{name: n, acl: acl, value: append([]byte{}, nv[3+nl:3+nl+vl]...)})
			}
			continue
		}
		if len(nv) < 9 {
			return corruptInode(ino, "attribute block %d: entry cut at %d", blk, idx)
		}
		vblk, vl, nl := be.Uint32(nv), be.Uint32(nv[4:]), int(nv[8])
		if 9+nl > len(nv) {
			return corruptInode(ino, "attribute block %d: entry cut at %d", blk, idx)
		}
		if n, acl, ok := xattrName(flags, nv[9:9+nl]); ok {
			if vl > maxXattrValue {
				return corruptInode(ino, "attribute %q of %d bytes", n, vl)
			}
			*out = append(*out, xattrEntry{name: n, acl: acl, remote: vblk, size: vl})
		}
	}
	return nil
}

// remoteValue reads a value kept in its own attribute fork blocks; on v5
// each block starts with a checked header saying which bytes it holds.
func (fs *FS) remoteValue(in *inode, x xattrEntry) ([]byte, error) {
	be := binary.BigEndian
	v := make([]byte, 0, x.size)
	for lblk := uint64(x.remote); uint32(len(v)) < x.size; lblk++ {
		r, err := fs.mapBlock(in, in.attr, lblk)
		if err != nil {
			return nil, err
		}
		if r.zero {
			return nil, corruptInode(in.ino, "attribute %q: block %d not mapped", x.name, lblk)
		}
		b, err := fs.blocksAt(r.blk, 1)
		if err != nil {
			return nil, inodeErr(in.ino, "attribute value", err)
		}
		want := x.size - uint32(len(v))
		if !fs.sb.crc() {
			v = append(v, b[:min(int(want), len(b))]...)
			continue
		}
		n := be.Uint32(b[8:])
		switch {
		case be.Uint32(b) != attrRmtMagic:
			return nil, corruptInode(in.ino, "attribute %q: value block %d: bad magic", x.name, r.blk)
		case be.Uint32(b[4:]) != uint32(len(v)) || n == 0 || n > want || n > uint32(len(b)-attrRmtHdrSize):
			return nil, corruptInode(in.ino, "attribute %q: value block %d holds %d bytes at %d", x.name, r.blk, n, be.Uint32(b[4:]))
		}
		if err := fs.checkHeader(b, 12, 40, 32, 16, r.blk, in.ino); err != nil {
			return nil, corruptInode(in.ino, "attribute %q: value block %d: %v", x.name, r.blk, err)
		}
		v = append(v, b[attrRmtHdrSize:attrRmtHdrSize+n]...)
	}
	return v, nil
}

// ListXattr returns the names of the extended attributes of ino.
func (fs *FS) ListXattr(ino uint64) ([]string, error) {
	in, err := fs.inode(ino)
	if err != nil {
		return nil, err
	}
	list, err := fs.xattrs(in)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(list))
	for _, x := range list {
		names = append(names, x.name)
	}
	return names, nil
}

// GetXattr returns the value of extended attribute name of ino. POSIX
// ACLs come in the form getxattr(2) returns.
func (fs *FS) GetXattr(ino uint64, name string) ([]byte, error) {
	in, err := fs.inode(ino)
	if err != nil {
		return nil, err
	}
	list, err := fs.xattrs(in)
	if err != nil {
		return nil, err
	}
	for _, x := range list {
		if x.name != name {
			continue
		}
		v := x.value
		if v == nil {
			if v, err = fs.remoteValue(in, x); err != nil {
				return nil, err
			}
		}
		if x.acl {
			return aclToXattr(ino, v)
		}
		return v, nil
	}
	return nil, fmt.Errorf("xfs: inode %d: %q: %w", ino, name, guest.ErrNoXattr)
}

// ACL tags, shared by XFS's format and the xattr form.
const (
	aclUser  = 0x02
	aclGroup = 0x08
	// maxACLEntries is XFS's own bound (XFS_ACL_MAX_ENTRIES for v5 is
	// larger, but no ACL value exceeds 64 KiB).
	maxACLEntries = maxXattrValue / 12
)

// aclToXattr turns XFS's ACL (a big-endian count, then entries of tag,
// id and permissions in 12 bytes) into the xattr form (version 2, every
// entry 8 bytes little-endian).
func aclToXattr(ino uint64, b []byte) ([]byte, error) {
	be := binary.BigEndian
	le := binary.LittleEndian
	if len(b) < 4 {
		return nil, corruptInode(ino, "malformed POSIX ACL")
	}
	n := be.Uint32(b)
	if n > maxACLEntries || uint64(len(b)) != 4+12*uint64(n) {
		return nil, corruptInode(ino, "POSIX ACL of %d entries in %d bytes", n, len(b))
	}
	out := le.AppendUint32(make([]byte, 0, 4+8*n), 2)
	for i := range int(n) {
		e := b[4+12*i:]
		tag, id, perm := be.Uint32(e), be.Uint32(e[4:]), be.Uint16(e[8:])
		switch tag {
		case aclUser, aclGroup:
		case 0x01, 0x04, 0x10, 0x20:
			id = 0xFFFFFFFF
		default:
			return nil, corruptInode(ino, "POSIX ACL tag %#x", tag)
		}
		out = le.AppendUint16(out, uint16(tag))
		out = le.AppendUint16(out, perm)
		out = le.AppendUint32(out, id)
	}
	return out, nil
}

package ext4

import (
	"encoding/binary"
	"fmt"

	"github.com/cairn-backup/cairn/fs/guest"
)

const (
	xattrMagic      = 0xEA020000
	xattrBlockHdr   = 32
	xattrEntryHdr   = 16
	maxXattrValue   = 64 << 10 // XATTR_SIZE_MAX of Linux
	xattrIndexACL   = 2
	xattrIndexDACL  = 3
	hiddenDataXattr = "system.data"
)

// xattrPrefixes maps the name index byte of an entry to its name prefix.
var xattrPrefixes = map[uint8]string{
	1: "user.",
	2: "system.posix_acl_access",
	3: "system.posix_acl_default",
	4: "trusted.",
	6: "security.",
	7: "system.",
	8: "system.richacl",
}

type xattrEntry struct {
	name     string
	index    uint8
	value    []byte // nil when the value lives in an EA inode
	valueIno uint32
	size     uint32
}

// xattrs lists the attributes of in: those inside the inode first, then
// those of its attribute block.
func (fs *FS) xattrs(in *inode) ([]xattrEntry, error) {
	var out []xattrEntry
	if len(in.ibody) > 4 {
		region := in.ibody[4:]
		if err := parseXattrEntries(in.ino, region, region, &out); err != nil {
			return nil, err
		}
	}
	if in.fileACL != 0 {
		b, err := fs.block(in.fileACL)
		if err != nil {
			return nil, corruptInodeErr(in.ino, "xattr block", err)
		}
		le := binary.LittleEndian
		if le.Uint32(b) != xattrMagic || le.Uint32(b[8:]) != 1 {
			return nil, corruptInode(in.ino, "bad xattr block %d", in.fileACL)
		}
		if fs.sb.metadataCsum() {
			// Seeded with the block number, not the inode: blocks are
			// shared between inodes.
			var nr [8]byte
			le.PutUint64(nr[:], in.fileACL)
			if crc32cSkip(crc32c(fs.sb.csumSeed, nr[:]), b, 0x10, 4) != le.Uint32(b[0x10:]) {
				return nil, corruptInode(in.ino, "xattr block %d checksum does not match", in.fileACL)
			}
		}
		if err := parseXattrEntries(in.ino, b[xattrBlockHdr:], b, &out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// parseXattrEntries reads entries from ents until the four zero bytes
// that end the list; value offsets count from the start of vals.
func parseXattrEntries(ino uint64, ents, vals []byte, out *[]xattrEntry) error {
	le := binary.LittleEndian
	for off := 0; off+4 <= len(ents) && le.Uint32(ents[off:]) != 0; {
		if len(ents)-off < xattrEntryHdr {
			return corruptInode(ino, "xattr entry cut at offset %d", off)
		}
		e := ents[off:]
		nameLen := int(e[0])
		index := e[1]
		voff := int(le.Uint16(e[2:]))
		vino := le.Uint32(e[4:])
		vsize := le.Uint32(e[8:])
		if xattrEntryHdr+nameLen > len(e) {
			return corruptInode(ino, "xattr name runs past its area")
		}
		x := xattrEntry{index: index, valueIno: vino, size: vsize}
		prefix, known := xattrPrefixes[index]
		x.name = prefix + string(e[xattrEntryHdr:xattrEntryHdr+nameLen])
		if vino == 0 {
			if uint64(voff)+uint64(vsize) > uint64(len(vals)) {
				return corruptInode(ino, "xattr %q value runs past its area", x.name)
			}
			x.value = append([]byte{}, vals[voff:voff+int(vsize)]...)
		} else if vsize > maxXattrValue {
			return corruptInode(ino, "xattr %q of %d bytes", x.name, vsize)
		}
		if known {
			*out = append(*out, x)
		}
		off += (xattrEntryHdr + nameLen + 3) &^ 3
	}
	return nil
}

// getXattr returns the value of attribute name of in, converting POSIX
// ACLs from their compact disk form to the form getxattr(2) returns.
func (fs *FS) getXattr(in *inode, name string) ([]byte, error) {
	list, err := fs.xattrs(in)
	if err != nil {
		return nil, err
	}
	for _, x := range list {
		if x.name != name {
			continue
		}
		v := x.value
		if x.valueIno != 0 {
			if v, err = fs.eaInodeValue(in, x); err != nil {
				return nil, err
			}
		}
		if x.index == xattrIndexACL || x.index == xattrIndexDACL {
			return aclToXattr(in.ino, v)
		}
		return v, nil
	}
	return nil, fmt.Errorf("ext4: inode %d: %q: %w", in.ino, name, guest.ErrNoXattr)
}

// eaInodeValue reads a large value kept in its own inode (ea_inode).
func (fs *FS) eaInodeValue(in *inode, x xattrEntry) ([]byte, error) {
	ea, err := fs.inode(uint64(x.valueIno))
	if err != nil {
		return nil, corruptInodeErr(in.ino, "xattr inode", err)
	}
	if ea.flags&flagEAInode == 0 || ea.size < uint64(x.size) || ea.inline() {
		return nil, corruptInode(in.ino, "xattr %q in bad inode %d", x.name, x.valueIno)
	}
	v := make([]byte, x.size)
	if err := fs.readData(ea, v, 0); err != nil {
		return nil, err
	}
	return v, nil
}

// ACL tags, from the POSIX ACL format shared by the disk and xattr forms.
const (
	aclUserObj  = 0x01
	aclUser     = 0x02
	aclGroupObj = 0x04
	aclGroup    = 0x08
	aclMask     = 0x10
	aclOther    = 0x20
)

// aclToXattr turns ext4's ACL (version 1, short entries without an id for
// the *_OBJ, MASK and OTHER tags) into the xattr form (version 2, every
// entry 8 bytes).
func aclToXattr(ino uint64, b []byte) ([]byte, error) {
	le := binary.LittleEndian
	bad := corruptInode(ino, "malformed POSIX ACL")
	if len(b) < 4 || le.Uint32(b) != 1 {
		return nil, bad
	}
	out := binary.LittleEndian.AppendUint32(nil, 2)
	for off := 4; off < len(b); {
		if len(b)-off < 4 {
			return nil, bad
		}
		tag, perm := le.Uint16(b[off:]), le.Uint16(b[off+2:])
		id := uint32(0xFFFFFFFF)
		switch tag {
		case aclUser, aclGroup:
			if len(b)-off < 8 {
				return nil, bad
			}
			id = le.Uint32(b[off+4:])
			off += 8
		case aclUserObj, aclGroupObj, aclMask, aclOther:
			off += 4
		default:
			return nil, bad
		}
		out = le.AppendUint16(out, tag)
		out = le.AppendUint16(out, perm)
		out = le.AppendUint32(out, id)
	}
	return out, nil
}

// ListXattr returns the names of the extended attributes of ino. The
// system.data attribute that holds inline data is not listed, as Linux
// does not list it either.
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
		if x.name != hiddenDataXattr {
			names = append(names, x.name)
		}
	}
	return names, nil
}

// GetXattr returns the value of extended attribute name of ino.
func (fs *FS) GetXattr(ino uint64, name string) ([]byte, error) {
	in, err := fs.inode(ino)
	if err != nil {
		return nil, err
	}
	if name == hiddenDataXattr {
		return nil, fmt.Errorf("ext4: inode %d: %q: %w", ino, name, guest.ErrNoXattr)
	}
	return fs.getXattr(in, name)
}

// Package xfs reads XFS filesystems from an io.ReaderAt, read-only,
// following the on-disk format of the XFS Algorithms & Data Structures
// book and the kernel's libxfs headers: v5 (metadata CRCs) and v4.
//
// Terms: a block is the filesystem block (512 B to 64 KiB); an AG
// (allocation group) is a slice of the volume with its own headers; a
// filesystem block number holds the AG number above agblklog bits, and a
// linear block counts from the start of the volume; an inode number
// holds AG, block in the AG and index in the block, so it locates its
// inode without any lookup. A fork is one of an inode's two block maps
// (data and attributes), kept in the inode (local), as an extent list, or
// as a B+tree rooted in the inode; a run is a stretch of file blocks that
// maps to one contiguous stretch of the volume or reads as zeros (a hole
// or an unwritten extent).
//
// Invariants:
//   - Open reads the superblock, a few blocks of the log and the root
//     inode only. Inodes, btree nodes, directory and attribute blocks are
//     read on demand through small LRU caches bounded in bytes or entries,
//     never in proportion to the volume or a directory. AG headers and
//     the free space, inode, reverse-map and refcount btrees are never
//     read: a reader needs none of them.
//   - Inode numbers are the XFS inode numbers; Root is sb_rootino.
//   - Every length, count, offset and block number read from disk is
//     checked before use. Block map btrees are at most 9 levels deep and
//     each level must sit exactly one below its parent; attribute dabtrees
//     at most 5; attribute leaf chains are walked with loop detection;
//     directories read at most as many blocks as the filesystem has.
//     Damage gives an error wrapping guest.ErrCorrupt that names the
//     inode; never a panic, a hang or an allocation sized by unchecked
//     input.
//   - On v5, the CRC and self-describing header (sector, owner, UUID) of
//     the superblock, every inode, btree block, directory data block,
//     attribute leaf and node, remote attribute value and remote symlink
//     block is verified when read. A failure makes that file, directory or
//     attribute list fail alone (EIO at the mount).
//   - Directories list the names of their data blocks below the 32 GiB
//     leaf offset, whatever their form (short form in the inode, block,
//     leaf, node, btree block map); hash index and free space blocks are
//     not read. A data block that is damaged, an entry with a bad name or
//     inode number, or (without file types in entries) an entry whose
//     inode cannot be read is left out of the listing and reported through
//     Options.Logf, so one bad block does not hide a whole directory.
//     Lookup searches the cached, sorted listing.
//   - Attributes: short form, leaf and node forks, local and remote
//     values; user., trusted. and security. names; XFS's POSIX ACLs
//     (trusted SGI_ACL_FILE and SGI_ACL_DEFAULT) are shown as
//     system.posix_acl_access and _default in getxattr(2)'s form. Parent
//     pointers and incomplete attributes are not listed, as Linux does.
//   - Reflinked files read like any other: shared extents are ordinary
//     extents in each file's map. Realtime files fail with ErrCorrupt:
//     their blocks live on a device that is not part of the volume.
//   - The log is not replayed. A filesystem that needs recovery (backed
//     up while mounted) reads as last checkpointed, and LogErr says so
//     (the mount logs it once per volume, "showing the filesystem as last
//     checkpointed"). Open finds the log head by the cycle numbers that
//     start every log sector and calls the log clean only when its last
//     record is a lone unmount record ending at the head, as the kernel's
//     log recovery decides.
//   - All methods are safe for concurrent use; caches lock only around map
//     updates, never across a read of the volume.
package xfs

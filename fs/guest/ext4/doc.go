// Package ext4 reads ext2, ext3 and ext4 filesystems from an io.ReaderAt,
// read-only, following the kernel's documented on-disk format.
//
// Terms: a block is the filesystem block (1, 2, 4 or 64 KiB); a group is a
// block group with its own descriptor and inode table; a run is a stretch
// of logical file blocks that maps to one contiguous physical stretch or
// reads as zeros (hole, unwritten extent).
//
// Invariants:
//   - Open reads the superblock and the root inode only. Group descriptors,
//     inodes, directories, extent and indirect blocks are read on demand
//     through small LRU caches bounded in bytes or entries, never in
//     proportion to the volume.
//   - Inode numbers are the ext4 inode numbers; the root is 2.
//   - File reads map each run anew (extent tree or block map through the
//     block cache) and read a contiguous run with one ReadAt of the
//     volume, straight into the caller's buffer.
//   - NextData (SEEK_DATA/SEEK_HOLE) and MapFile (read-ahead) walk the
//     same runs as reads, a bounded number per call: holes and unwritten
//     extents are not data, inline files are data without an extent.
//   - Every length and block number read from disk is checked before use:
//     superblock geometry, extent depth (at most 5, each level exactly one
//     below its parent, so no cycle), block numbers inside the volume,
//     directory record lengths, xattr offsets, symlink sizes. Damage gives
//     an error wrapping guest.ErrCorrupt that names the inode; never a
//     panic, a hang or an allocation sized by unchecked input.
//   - Checksums (metadata_csum) are not verified.
//   - A filesystem that needs recovery (backed up while mounted) is shown
//     as the kernel would mount it: Open replays the internal jbd2
//     journal in memory (journal.go), mapping each block its committed
//     transactions rewrite to the newest copy in the log, revokes
//     honoured, and reads the volume through that overlay. The volume is
//     never written. A journal the reader cannot follow (unknown
//     features, damage) leaves the filesystem as last checkpointed, and
//     JournalErr says why (the mount logs it once per volume).
//   - Directories are read linearly, htree or not (an htree's index blocks
//     read as empty entries). Lookup searches a cached, sorted listing.
//   - All methods are safe for concurrent use; caches lock only around
//     map updates, never across a read of the volume.
package ext4

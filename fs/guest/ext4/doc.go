// Package ext4 reads ext2, ext3 and ext4 filesystems from an io.ReaderAt,
// read-only, following the kernel's documented on-disk format.
//
// Terms: a block is the filesystem block (1, 2, 4 or 64 KiB); a cluster
// is the allocation unit, several blocks with bigalloc and one block
// otherwise; a group is a block group with its own descriptor and inode
// table; a run is a stretch of logical file blocks that maps to one
// contiguous physical stretch or reads as zeros (hole, unwritten extent).
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
//   - bigalloc: groups hold clusters per group times the cluster ratio
//     blocks; extents, inode tables and i_blocks still count blocks, and
//     an xattr block takes a cluster of i_blocks.
//
// Checksums (metadata_csum, crc32c seeded from the UUID or s_checksum_seed)
// are verified where a read depends on them, and damage stays with what it
// covers:
//   - a group descriptor (crc32c, or crc16 with uninit_bg) before its
//     inode table is used: a bad one makes that group's inodes damaged;
//   - an inode (checksum lo/hi, seeded with its number and generation;
//     an all-zero inode is unused, not damaged): a bad one is EIO for
//     that file, and its directory entry is left out of listings;
//   - extent tree blocks below the root (their tail after eh_max
//     entries): EIO for reads of that file;
//   - directory leaf blocks (the 12-byte dirent tail) and htree root and
//     interior blocks (the dx tail, over count entries): EIO for that
//     directory, other directories read on;
//   - xattr blocks (seeded with the block number): EIO for that file's
//     attributes.
//
// Bitmaps and their checksums are not read: nothing a read serves
// depends on them. The superblock checksum is not checked.
//
// Directories are read linearly, htree or not (an htree's index blocks
// hold no entries). Lookup searches a cached, sorted listing, exact bytes
// first; in a casefold directory a valid UTF-8 name then matches the
// entry equal to it once both are decomposed and case-folded (the
// kernel's utf8 casefold; names that are not valid UTF-8 match only
// exactly). An entry that cannot be served is left out of its listing,
// logged through Options.Logf, rather than failing the directory: a
// record length or inode number that makes no sense ends that block's
// walk (as the kernel's readdir does) and keeps the entries before it;
// an entry whose inode fails its checksum or cannot be read, or has mode
// 0 (unused), a name holding '/' or NUL, and the second of two equal
// names are left out alone.
//
// Symlinks: the size counts i_size_high (as e2fsck reads it; the kernel
// ignores the high word); a fast symlink lives in i_block (i_blocks only
// the xattr cluster), an inline one in i_block and system.data, a slow
// one in its first block, whose size it must stay under.
//
// Journal: a filesystem that needs recovery (backed up while mounted) is
// shown as the kernel would mount it. Open replays the internal jbd2
// journal in memory (journal.go), mapping each block its committed
// transactions rewrite to the newest copy in the log, and reads the volume
// through that overlay; then it applies the fast-commit area's tags on top
// (fastcommit.go). The volume is never written. The replay follows jbd2's
// recovery, which e2fsck shares:
//   - a journal superblock with unknown features, a bad checksum (v2/v3)
//     or impossible geometry is not replayed: the filesystem reads as
//     last checkpointed and JournalErr says why (the mount logs it);
//   - the log ends at the first block that is not the expected
//     transaction's; a transaction without its commit is not replayed;
//   - a commit failing its checksum (crc32c with v2/v3, the crc32 of the
//     transaction with v1) ends the log before its transaction, with
//     async_commit too, unless it is older than the previous commit
//     (stale: the log just ends);
//   - a descriptor or revoke block failing its checksum followed by a
//     commit at least as new fails recovery as a whole: nothing is
//     replayed, JournalErr says why;
//   - a logged block failing its tag checksum is skipped (logged), the
//     rest of its transaction replayed;
//   - fast commits apply up to the last tail whose crc32c and
//     transaction ID check out; a first tail that does not fails
//     recovery as a whole (full transactions too), a head naming an older
//     transaction means no fast commit (the kernel's rule; e2fsck 1.47
//     fails recovery there). A replayed inode keeps its i_block from the
//     disk (and its logged i_blocks); a block is mapped as the newest
//     replayed range covering it says, else by the file's tree; links and
//     unlinks edit listings. Symlinks linked by a fast commit are
//     linked, as by the kernel (e2fsck 1.47 leaves them out).
//
// All methods are safe for concurrent use; caches lock only around map
// updates, never across a read of the volume.
package ext4

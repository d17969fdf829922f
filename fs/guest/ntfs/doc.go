// Package ntfs reads NTFS volumes, read-only, as a guest.FS over an
// io.ReaderAt. It shows a volume the way ntfs-3g mounts it with its
// default options, and is tested against an ntfs-3g mount of the same
// image, file by file.
//
// Terms: a record is an MFT record (1 or 4 KiB), the unit in which NTFS
// keeps a file; a file reference is a record number (48 bits) with the
// record's sequence number (16 bits); an attribute is one typed part of
// a file ($STANDARD_INFORMATION, $FILE_NAME, $DATA, ...), resident when
// its value sits inside the record; a stream is a $DATA attribute, the
// unnamed one being the file's data and named ones its alternate data
// streams; a run maps consecutive file clusters (VCNs) to volume
// clusters (LCNs) or to nothing (a hole); an extent is the part of an
// attribute's runlist one record holds; a compression unit is 16
// clusters of a compressed stream; an index block is one node of a
// directory's $I30 index.
//
// What a user sees, following ntfs-3g's defaults (man ntfs-3g: "By
// default, files and directories are owned by the effective user and
// group of the mounting process, and everybody has full read, write,
// execution and directory browsing permissions"; no user mapping):
//   - Owner and group 0 (the mount runs as root); mode 0777 for
//     directories, regular files, symlinks and Interix fifos, sockets and
//     devices; WSL fifos, sockets and devices have no permission bits, as
//     ntfs-3g shows them. NTFS security descriptors are not interpreted.
//   - Inode numbers are MFT record numbers, stable for the volume; the
//     root is RootIno (5). The metadata files (records below 16: $MFT,
//     $LogFile, $Extend, ...) are hidden from listings, lookups and Stat.
//   - Times from $STANDARD_INFORMATION: atime the last access, mtime the
//     last data change, ctime the last change of the MFT record, all with
//     their 100 ns precision.
//   - Link count: one per name a directory lists (the $FILE_NAME
//     attributes less DOS aliases, as the kernel's ntfs3 driver counts),
//     1 for directories (ntfs-3g without posix_nlink). ntfs-3g shows the
//     record's link count, which also counts a DOS alias kept as a name
//     of its own: there it says 2 for a file with a short name. Size: the data size; for directories the size of the
//     index allocation; for symlinks the target's length. Blocks: the
//     allocated size (the compressed size of compressed and sparse files)
//     in 512-byte units.
//   - Hard links are one inode listed under each of its names. DOS 8.3
//     aliases are hidden; hidden and system files are listed. Lookup is
//     exact and case-sensitive, as under ntfs-3g.
//   - File types: a directory record is a directory; a regular file with
//     the system attribute may be an Interix fifo (no data), socket (one
//     byte) or device or symlink (IntxCHR, IntxBLK, IntxLNK data), which
//     is how ntfs-3g writes special files by default. Reparse points:
//     symlinks, junctions and WSL symlinks are symlinks; WSL fifos,
//     sockets and devices (device number from the $LXDEV extended
//     attribute) are those; any other reparse point (deduplicated files,
//     cloud placeholders, ...) is a symlink whose target reads
//     "unsupported reparse tag 0x........", as ntfs-3g shows it.
//   - Symlink targets: see Readlink. Windows targets that are absolute on
//     a drive become relative paths from the link to the same place on
//     this volume, so they work wherever the volume is mounted (ntfs-3g
//     makes them absolute under its mount point); targets elsewhere go to
//     .NTFS-3G/ at the volume root, where ntfs-3g sends them. Unlike
//     ntfs-3g, a relative target that is not found is kept as a dangling
//     link, and a link is not refused for pointing at a directory while
//     being a file link (or the reverse): ntfs-3g shows those as
//     "unsupported reparse tag".
//   - Alternate data streams are extended attributes "user.<stream>", as
//     with ntfs-3g's default streams_interface=xattr, listed in record
//     order. Streams over 64 KiB (XATTR_SIZE_MAX, more than getxattr(2)
//     can return) are not listed, nor are ntfs-3g's private "ntfs-3g.*"
//     streams. No "system.ntfs_*" attributes are offered.
//   - Data: resident and non-resident streams; holes and the part past a
//     stream's initialized size read as zeros and are holes for
//     NextData; compressed streams (LZNT1, 16-cluster units, clusters up
//     to 4 KiB) are decompressed a unit at a time, units that are all
//     hole being holes. EFS-encrypted data cannot be read: reads fail
//     (EIO in the mount) and say why.
//
// Invariants:
//   - Open reads the boot sector, the $MFT record (and, for a fragmented
//     MFT, its extension records) and the root's record. Records,
//     directory listings, decompressed units and link targets are read on
//     demand through LRU caches bounded in bytes, never in proportion to
//     the volume. Reads of file data go straight from the volume into
//     the caller's buffer, one ReadAt per run, except compressed units.
//   - The update sequence (fixup) of every MFT record and index block is
//     verified before its contents are used. A record that fails it, or
//     any other check, is an error wrapping guest.ErrCorrupt for that
//     file alone (EIO in the mount, which logs it).
//   - A directory lists the entries of its index root and of each index
//     block its $I30 bitmap marks in use, as ntfs-3g's readdir does, so
//     entries left in freed blocks never reappear. An index block that
//     fails its checks is left out; an entry whose record cannot be read,
//     is free, or carries another sequence number (a stale entry) is left
//     out. Each is logged through Options.Logf (at most 20 lines and a
//     count per listing). Lookup of a left-out name, and of any name
//     missing from a directory with a lost index block, is ErrCorrupt
//     rather than ErrNotFound, since the name may be in the lost part.
//   - Attribute lists are followed one level: each extension record must
//     be in use and name this file, with its sequence number, as its
//     base; attribute lists inside extension records are ignored. So
//     lists cannot loop. A non-resident attribute's extents must follow
//     each other in VCN order and agree with their highest VCN; every run
//     lies inside the volume; sizes agree with what is mapped. A stream
//     that fails these checks still lets its file stat; reading it is the
//     error.
//   - Every length read from disk is checked before use, and work is
//     bounded: attribute lists to 1 MiB and 16384 extension records,
//     directories to 4 Mi entries, reparse data to 16 KiB, link parent
//     chains to 1024 levels, each NextData call to 65536 compression
//     units. Damage never panics, hangs or allocates without bound.
//   - $LogFile is not replayed and $MFTMirr is not consulted: a volume
//     that was not cleanly unmounted (or is hibernated) is shown as it
//     lies, as ntfs-3g shows it read-only.
//   - All methods are safe for concurrent use; caches lock only around
//     map updates, never across a read of the volume.
//
// Why not www.velocidex.com/golang/go-ntfs (v0.2.1): a probe against an
// image built with ntfs-3g found its data reads right (random-offset
// reads of compressed, sparse and plain files matched ntfscat; 400
// damaged images walked without a panic), but it is a forensics parser
// and its directory and error model do not fit a mount: its listings
// walk every index block without the $I30 bitmap and do not check
// record sequence numbers, so a directory of 2 files that once held
// 1500 listed 78 (deleted files come back); ListDir names every entry
// of a record after the record's last name and merges entries per
// record, so hard links lose their names; a damaged index block drops
// its entries silently and lookups through it say "not found", not
// EIO; enumeration functions return no errors at all; and its paged
// reader serializes every read behind one mutex. Wrapping it would have
// meant replacing its index, attribute and error handling, leaving only
// the boot sector, fixup, runlist and LZNT1 code, the smallest parts.
// This package follows the Linux-NTFS documentation and ntfs-3g's
// sources instead.
package ntfs

// Package fat reads FAT12, FAT16 and FAT32 volumes, read-only, as a
// guest.FS over an io.ReaderAt.
//
// Terms and invariants:
//   - The FAT type follows from the count of data clusters, as the
//     Microsoft specification says (< 4085 FAT12, < 65525 FAT16, else
//     FAT32), never from the type string in the boot sector.
//   - Inode numbers: the root directory is RootIno (1); every other file
//     or directory is the byte offset, on the volume, of its 32-byte short
//     directory entry. Offsets are multiples of 32 past the boot sector,
//     so they never collide with RootIno, are unique, and stay the same
//     for the same volume. Stat reads the entry straight from that offset.
//   - Names: the VFAT long name when its entries are intact and their
//     checksum matches the short entry, else the 8.3 name, lowercased as
//     the NT case bits (byte 12, 0x08 base and 0x10 extension) say; 8.3
//     names are decoded as code page 437. Lookup ignores case as FAT does
//     and also accepts the 8.3 alias; ReadDir returns stored names sorted.
//   - Attributes: directories 0755, files 0644 (0444 with the read-only
//     attribute), uid and gid 0, one link (two for directories). Times
//     are taken as UTC, since FAT keeps no time zone: mtime from the write
//     date and time, atime from the access date, ctime from the creation
//     date and time with its 10 ms field (mtime when creation is unset).
//     The root directory has no times and reports the Unix epoch. Blocks
//     count whole clusters, as Linux does.
//   - Memory is bounded by caches (FAT blocks, cluster chains kept as runs
//     of contiguous clusters, parsed directories), each an LRU with a
//     fixed budget, not by volume size.
//   - Damage (cluster numbers out of range, a chain that loops or is
//     shorter than its file, a directory larger than the 65536 entries FAT
//     allows, a bad BIOS parameter block) yields errors wrapping
//     guest.ErrCorrupt; nothing loops or panics.
package fat

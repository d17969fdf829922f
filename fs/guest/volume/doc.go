// Package volume finds the volumes of a disk and the filesystems on them,
// and resolves slash paths inside them. It is the one place that turns a
// disk (an io.ReaderAt and a size) into guest filesystems, shared by the
// FUSE mount and the command line.
//
// Terms:
//   - A volume is a stretch of the disk that may hold a filesystem: one
//     per partition of a partition table (named "part1", "part2", ...
//     after the Linux partition number), or the whole disk when the disk
//     is a bare filesystem (named "", the disk's root).
//   - A disk path names a file relative to the disk: "part1/etc/hostname"
//     on a partitioned disk, "etc/hostname" on a bare filesystem.
//
// Invariants:
//   - Open reads the partition table and, for a disk without one, probes
//     the first sectors for a filesystem; nothing else. Each volume probes
//     and opens its filesystem on first use only, once, and keeps it.
//   - A volume with nothing readable (swap, LVM, an unknown filesystem, an
//     MBR extended container) is listed, and FS returns an error wrapping
//     ErrNoFilesystem.
//   - Path walking follows symbolic links inside the volume (absolute
//     targets start at the volume's root), at most MaxSymlinks per walk;
//     ".." never climbs above the volume's root. The last component is
//     followed only when asked (cat follows, ls does not).
//   - Errors wrap guest's sentinels (guest.ErrNotFound, ErrNotDir,
//     ErrCorrupt, ...) or this package's, so callers map them to errno
//     values or messages without knowing the reader.
package volume

// Package volume finds the volumes of a disk and the filesystems on them,
// and resolves slash paths inside them. It is the one place that turns a
// disk (an io.ReaderAt and a size) into guest filesystems, shared by the
// FUSE mount and the command line.
//
// Terms:
//   - A volume is a stretch of the disk that may hold a filesystem: one
//     per partition of a partition table (named "part1", "part2", ...
//     after the Linux partition number); one per visible LVM logical
//     volume whose PVs are partitions of the disk or the whole disk
//     (named as device-mapper names it, "VG-LV" with any '-' inside VG
//     or LV doubled: "my--vg-root"); or the whole disk when the disk is
//     a bare filesystem (named "", the disk's root).
//   - A disk path names a file relative to the disk: "part1/etc/hostname"
//     or "vg0-root/etc/hostname" on a partitioned disk or a whole-disk
//     PV, "etc/hostname" on a bare filesystem.
//
// Invariants:
//   - Open reads the partition table, the LVM label of each partition
//     (or of the whole disk when it has no partitions) and the metadata
//     of the PVs found, and for a disk without partitions probes the
//     first sectors for a filesystem; nothing else. Each volume probes
//     and opens its filesystem on first use only, once, and keeps it.
//   - A disk without partitions is one: no partition table, an MBR
//     whose four entries are empty (boot code in sector 0 of a bare
//     filesystem, which Linux mounts whole), or a table damaged beyond
//     use (a protective MBR without a usable GPT: TableErr says so, as
//     Linux the whole disk is then probed). Open fails only when the
//     disk cannot be read.
//   - A volume with nothing readable (swap, LUKS, btrfs, an LVM PV, an
//     unknown filesystem, an MBR extended container, a thin pool) is
//     listed, and FS returns an error wrapping ErrNoFilesystem; Content
//     then says what it holds when a signature tells ("swap (UUID
//     ...)", "LUKS2 (UUID ...)", "btrfs (UUID ...)", "LVM2 PV (UUID
//     ..., VG vg0)", "LVM thin pool"), and TakeWarning hands that out
//     once for the mount's log. An LV that cannot be read (a PV on
//     another disk) is listed too; FS and every read of it return its
//     error (lvm.ErrMissingPV names the PV).
//   - An LV's bytes are read through package lvm; DiskExtent maps any
//     volume's bytes back onto the disk, for read-ahead.
//   - Path walking follows symbolic links inside the volume (absolute
//     targets start at the volume's root), at most MaxSymlinks per walk;
//     ".." never climbs above the volume's root. The last component is
//     followed only when asked (cat follows, ls does not).
//   - Errors wrap guest's sentinels (guest.ErrNotFound, ErrNotDir,
//     ErrCorrupt, ...) or this package's, so callers map them to errno
//     values or messages without knowing the reader.
package volume

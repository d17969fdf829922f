// Package fs serves a vault's points as a read-only FUSE filesystem
// (go-fuse v2):
//
//	MOUNT/RESOURCE/latest -> ID          symlink to the newest point
//	MOUNT/RESOURCE/ID/DISK.raw           the whole disk of a point
//	MOUNT/RESOURCE/ID/DISK/partN/...     files of partition N
//	MOUNT/RESOURCE/ID/DISK/partN.raw     partition N, raw
//	MOUNT/RESOURCE/ID/DISK/...           files of a disk that is a bare filesystem
//
// Terms and invariants:
//   - The root and resource folders are dynamic: every listing and lookup
//     asks the vault, and the kernel caches their entries for one second
//     only, so new points appear and deleted ones vanish while mounted.
//   - Everything inside a point is immutable, so its entries, attributes
//     and file data are cached by the kernel for long (FOPEN_KEEP_CACHE).
//   - Symlinks never change, so the kernel caches their text: each target
//     of "latest" is its own inode, and a lookup of "latest" a second
//     after a new point finds the new one.
//   - The kernel is told once that files need no OPEN, RELEASE or FLUSH
//     (ENOSYS): copying many small files costs a few requests per file.
//   - Inode numbers derive from identity (resource, point, disk), never
//     from a counter, so they are stable across mounts.
//   - Reads are stateless ReadAt calls on the point's disk; they run in
//     parallel. Sequential readers get read-ahead from the one mechanism
//     in package snapshot (snapshot.ReadAhead and the vault's loaders),
//     never one of this package's: disk files and partitions through
//     their DiskReader, which follows its own reads; logical volumes and
//     guest files follow their own reads too (a ReadAhead each) and map
//     the bytes ahead to disk blocks (DiskExtent, guest.Mapper) for
//     DiskReader.LoadAhead, since a thin LV's or a fragmented file's
//     next bytes lie anywhere on the disk; the disk reader they read
//     through has its own read-ahead off, so that a file's reads load
//     nothing past its end. MountOptions.ReadAhead bounds
//     all of them. As root the kernel's read-ahead for the mount is
//     raised to 1 MiB, so it sends 1 MiB READs instead of 128 KiB ones.
//   - A block that fails verification is EIO for that read, logged with
//     point and offset; wrong bytes are never returned.
//   - Disk files (DISK.raw, partN.raw) are mode 0400, owned by the
//     mounting process's effective uid and gid, unless MountOptions name
//     another read-only mode or group: a disk file holds every guest file
//     whatever the guest's modes, so with allow_other it would otherwise
//     hand a root-only guest file to every local user.
//   - Guest files keep their original mode, owners, size, times, link
//     count, device number and xattrs; their inode numbers derive from
//     (resource, point, disk, partition, guest inode), so hard links share
//     one. Nothing of a disk is parsed until someone looks inside DISK/;
//     the partition table and opened filesystems then live in that node.
//     Damage in a guest filesystem is EIO for the file concerned, logged
//     with point, disk, partition and inode.
//   - Every node refuses changes with EROFS, on top of the read-only
//     mount flag.
package fs

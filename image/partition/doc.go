// Package partition reads the partition table of a disk given as an
// io.ReaderAt and its size: GPT (primary header, or the backup header at
// the last LBA when the primary is damaged) and MBR (four primaries plus
// the chain of extended boot records for logical partitions).
//
// Terms and invariants:
//   - A Table with Kind "" and a nil error means the disk carries no
//     partition table: it is blank, or a bare filesystem (a FAT or NTFS
//     boot sector also ends in 0x55AA and is told apart from an MBR).
//   - Partition numbers follow Linux: GPT entry index + 1 (gaps kept), MBR
//     primaries 1-4 by slot, logical partitions 5, 6, ... in chain order.
//   - Start and Size are in bytes. A partition that runs past the end of
//     the disk (an image that was shrunk) is clipped to the disk.
//   - An MBR extended partition is listed with Container set: it holds
//     other partitions and never a filesystem.
//   - A GPT is used whenever one is valid, whatever else sector 0 holds
//     (a hybrid MBR's other entries are ignored, as Linux ignores them).
//     When sector 0 is a protective MBR (or LBA 1 has a GPT signature)
//     but no GPT header is usable, Read returns, with an error wrapping
//     ErrCorrupt, the MBR's entries other than 0xEE, as sgdisk shows
//     them, or a Table of Kind "" when there are none (Linux then sees
//     no partitions and the whole disk is the device).
//   - A damaged table yields an error wrapping ErrCorrupt. Reading never
//     panics, never loops, and allocates at most a bounded amount
//     (the GPT entries array is capped at MaxEntriesBytes, logical
//     partitions at MaxLogical).
//
// The package imports nothing of cairn: the disk is only an io.ReaderAt.
package partition

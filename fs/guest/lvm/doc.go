// Package lvm reads LVM2 volume groups from devices given as
// io.ReaderAt: the physical volumes' labels, the newest metadata of each
// volume group, and the logical volumes' bytes. It knows nothing of
// cairn's vault or of partition tables: the caller hands it the devices
// (partitions, whole disks) that may be PVs.
//
// Terms:
//   - A PV (physical volume) is a device with an LVM2 label in one of its
//     first four 512-byte sectors: "LABELONE", then the PV header (UUID,
//     size, data and metadata areas). label.go has the byte layout.
//   - A metadata area starts with a 512-byte header whose first raw
//     location points at the committed metadata text, in a ring after
//     the header. Each PV carries a copy (or none, or an ignored one);
//     the copy with the highest seqno of a VG is the VG's truth.
//   - The metadata text (config.go) is LVM's config syntax. Its first
//     top-level section is the VG: extent size, PVs by UUID with their
//     first extent (pe_start), LVs with segments.
//   - An LV (logical volume) is a list of segments covering its extents
//     from 0. A striped segment (linear is one stripe) maps its extents
//     onto runs of PV extents, round-robin in stripe-size chunks when
//     there are several stripes, as dm-stripe does. A stripe may lie on
//     another LV instead of a PV (a thin pool's data, RAID images).
//
// What reads:
//   - Linear and striped LVs, on any number of PVs among the devices,
//     stacked on other LVs up to maxLVDepth.
//   - Thin LVs (thin.go): the pool's kernel metadata is read from its
//     hidden metadata LV, the chunks from its hidden data LV; chunks
//     never written read as zeros. Thin snapshots are thin LVs.
//   - Old-style snapshots (snapshot.go): the visible snapshot LV reads
//     as its origin with the chunks its exception store lists taken from
//     the store.
//   - Not read, listed with an error wrapping ErrUnsupported: thin
//     pools themselves (no data of their own), snapshots being merged,
//     thin LVs with an external origin, RAID, mirror, cache, VDO,
//     integrity and writecache LVs, LVs mixing segment types.
//
// Invariants:
//   - Scan never fails as a whole: damage on one device or in one VG
//     comes back as problems, the rest is assembled. An LV that cannot
//     be read (a PV missing because it is on another disk, extents past
//     a device's end, an unsupported type) is listed, and Err and every
//     ReadAt say why; ErrMissingPV names the missing PV's UUID and the
//     device it was last seen as.
//   - Every number taken from a label, a metadata area or a text is
//     checked before use: CRCs of the label, the area header and the
//     text; text at most MaxMetadata bytes per area and maxScanMetadata
//     per Scan, at most maxItems values and maxDepth levels; extents
//     inside their PV and device, segments contiguous, stripes at most
//     maxStripes; LVs built on themselves refused; VG and LV names are
//     names LVM accepts (never a '/'). Thin pool B-tree nodes are checked
//     (checksum, own block number, entry counts) and followed at most
//     maxTreeDepth deep; snapshot exception tables hold at most
//     maxExceptions entries. Damage is an error wrapping ErrCorrupt,
//     never a panic, a hang or an allocation sized by unchecked input.
//   - Reads are stateless ReadAt calls, safe for concurrent use. A thin
//     pool's superblock and a snapshot's exception table are read on
//     first use, once; thin B-tree nodes are kept in a small LRU cache.
//   - Nothing is ever written.
package lvm

// Package qcow2 reads qcow2 images as disk sources and writes compressed
// qcow2 version 3 images, following qemu's specification
// (docs/interop/qcow2.txt).
//
// Terms (those of the specification):
//   - guest bytes: the virtual disk as the guest sees it; host offsets:
//     positions in the image file.
//   - cluster: the unit of allocation, 2^cluster_bits bytes (512 B..2 MiB).
//   - L1 table: one entry per L2 table; held in memory (8 bytes per 512 MiB
//     of guest disk at 64 KiB clusters).
//   - L2 table: one entry per guest cluster: unallocated (read from the
//     backing image, or zeros), zero, standard (uncompressed data at a
//     cluster-aligned host offset) or compressed (a byte offset and a
//     sector count). Extended L2 entries add 32 subclusters per cluster.
//   - refcounts: how many references each host cluster has; the reader
//     ignores them, the writer makes them exact.
//
// # Reader
//
// Open reads versions 2 and 3, zlib (raw deflate) and zstd compressed
// clusters, zero clusters, extended L2 entries, and backing chains whose
// images are raw or qcow2. It refuses, with an error wrapping ErrEncrypted,
// ErrUnsupported or ErrCorrupt and naming the file and offset: encryption,
// external data files, unknown incompatible features, images marked
// corrupt, and any table or cluster that points outside the file. A dirty
// image (refcounts not flushed) reads fine: reading never needs refcounts.
// Memory is bounded: L2 tables go through an LRU cache (8 MiB) and
// decompressed clusters through another (4 MiB). ReadAt and NextData hold
// no lock across I/O and are safe for concurrent use.
package qcow2

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
//     checks them against the tables, the writer makes them exact.
//
// # Reader
//
// Open reads versions 2 and 3, zlib (raw deflate) and zstd compressed
// clusters, zero clusters, extended L2 entries, and backing chains whose
// images are raw or qcow2. It refuses, with an error wrapping ErrEncrypted,
// ErrUnsupported or ErrCorrupt and naming the file and offset: encryption,
// external data files, unknown incompatible features, images marked
// corrupt, and any table or cluster that points outside the file.
//
// Open refuses what qemu refuses: it validates every table the header
// points at, not only those a read needs (check.go): header length and
// extensions, the refcount table and blocks, the snapshot table and each
// snapshot's L1 and L2 tables, the bitmap directory and tables, and the
// active L1 and L2 tables. Each must be cluster aligned, inside the file
// and within qemu's limits; no host cluster may be referenced more often
// than its refcount says (overlapping tables, a cluster shared behind the
// refcounts' back); active entries carry the COPIED flag exactly when
// their refcount is one. These are the corruptions qemu-img check reports
// (leaks, refcounts above the references, are harmless and pass). A dirty
// image (lazy refcounts not yet written) gets the structural checks only.
// The check reads each table once, costing about one L2 table per 8192
// data clusters, and holds 8 MiB of counts whatever the file size.
// Memory is bounded: L2 tables go through an LRU cache (8 MiB) and
// decompressed clusters through another (4 MiB). ReadAt and NextData hold
// no lock across I/O and are safe for concurrent use.
package qcow2

// # Writer
//
// Write produces a version 3 image with 16-bit refcounts from any
// image.Source. Clusters outside the source's data ranges, and clusters
// that read all zero, stay unallocated. Workers read and compress clusters
// in parallel; results are stored in guest order through a window of jobs,
// so memory is bounded by the window, one L2 table, one refcount block and
// the L1 table.
//
// Layout. L2 entries of compressed clusters hold host offsets and sizes
// known only after compressing, so no table can precede the data it
// describes. The writer therefore lays out the body (everything after the
// header cluster) strictly append-only:
//
//	cluster 0      header (written last)
//	from cluster 1 data clusters, each finished L2 table right after the
//	               data it maps, each finished refcount block as soon as
//	               the clusters it counts are all allocated
//	tail           L1 table, the last refcount block(s), refcount table
//
// Compressed clusters are packed back to back at byte offsets, as qemu
// does; a cluster that does not shrink is stored plain at the next cluster
// boundary. Refcounts are exact: one per metadata cluster and plain data
// cluster, and for compressed data one per compressed cluster per host
// cluster its sector-rounded range touches (qemu-img check counts the same
// way), so the image checks clean with no leaks. A refcount block always
// lands in a later block's range, which counts it; the tail's blocks and
// table are sized by a small fixed-point computation.
//
// Because the body is written once, in order, the same layout serves both
// outputs: a file at offset 0 (io.WriterAt + io.Seeker) gets the body in
// place and the header by pwrite at the end; any other writer (a pipe,
// stdout) gets the header, then the body copied from a temporary spool
// file, which needs free space in os.TempDir() equal to the image.
//
// Tables first. When every cluster's stored length is known before any
// data is read, a stream needs no spool: header, L1 table, refcount table
// and blocks, L2 tables, then the data, all computed up front (a packer
// places the clusters and counts references the same way each time). That
// holds for uncompressed images, and for zstd images from a FrameSource
// whose frames are the clusters: a cairn vault keeps each block as a zstd
// frame, so with the cluster size equal to the block size its frames are
// copied, verified by the source, instead of compressing the disk again.
// No per-cluster state is kept: the layout is walked from the source three
// times (sizes; refcount blocks; L2 tables) and once more as the data is
// written, so memory stays that of the L1 table whatever the disk size.
// Each walk folds its (cluster, length) pairs into a digest; a source
// whose answers changed fails the stream, and each frame is checked
// against the length its source announced.
//
// Codecs. zlib is raw deflate, as qemu writes it, from klauspost/compress
// flate at level 5 by default. qemu compresses with a 4 KiB window but
// inflates a cluster in one call into a whole-cluster buffer, so the
// 32 KiB window of our encoder decompresses fine (tested with qemu-img
// compare on data that repeats 20 KiB apart). zstd images set
// incompatible feature bit 3 and compression_type 1 (header_length 112).

// Package snapshot turns disks into backup points and points back into
// disks: the vault, resources, points, chains, the backup engine,
// restore, verify, repair and stats.
//
// Terms:
//   - vault: a directory whose storage (package chunkstore/storage) holds
//     cairn.json (format and settings), the packs and one record per
//     point, beside an index (package index) that caches them.
//   - resource: a named thing protected together (one disk, or a server's
//     disks); its points form its chain, oldest first.
//   - point: an immutable, complete state of a resource, named
//     RESOURCE@ID where ID is the UTC time YYYYMMDDTHHMMSSZ, with "-N"
//     appended when two points of a resource fall in the same second. A
//     name is not given again to another point, even after a delete
//     (the index notes the last ID issued in each second; lost with the
//     index, that note leaves only "no two existing points share one").
//   - point record: a point's manifest in storage, checksummed
//     (record.go): everything needed to read the point. The index keeps
//     the same bytes.
//   - block map: for each disk of a point, one hash per fixed-size block
//     (the zero hash for a hole). It is cut into pages of PageEntries
//     hashes, each stored as a blob, so an unchanged region of the disk
//     costs an incremental point nothing.
//   - read-ahead: the one mechanism that loads the blocks a sequential
//     reader will want next into the block cache (readahead.go). A
//     ReadAhead per file finds its sequential streams and says which
//     bytes to load; the vault's loaders (DiskReader.LoadAhead) load
//     them. Every DiskReader follows its own reads with one, so the
//     mount's disk files, export and the NBD server share it; the mount
//     also keeps one per logical volume and guest file, mapped to disk
//     blocks.
//   - block pipeline: walk (pipeline.go), the one walker of a point's
//     blocks in order: the block map walked on one goroutine, the
//     blocks fetched on GOMAXPROCS workers, handed out in order on the
//     caller's. Blocks, StoredBlocks, Restore and DiskReader.ReadAt of
//     several blocks run on it.
//   - damage: ranges of a point that cannot be read (a block without a
//     sound copy, a missing or truncated pack, an unreadable map page or
//     record), found by verify, repair or a failed read and recorded in
//     the index; a later backup that stores the block again heals it.
//
// Invariants:
//   - Storage is the truth. Everything in the index can be rebuilt from
//     storage by Repair, and a vault whose index is missing, empty,
//     damaged or another's while storage holds points is refused
//     (ErrNeedsRepair), never taken for an empty one.
//   - Every point holds a complete block map: reading a point never walks
//     the chain, and deleting one point never touches another.
//   - A point's record is written to storage last, after all of its
//     blocks and map pages are committed: that durable write is the
//     commit, and nothing is visible before it. A writer that stopped
//     without closing leaves a session mark; the next open reconciles the
//     index with storage.
//   - Blocks of all zeros and holes of the source are never stored; a
//     source that changes size or gains data in a hole while read fails
//     its backup.
//   - Every byte a DiskReader or Vault.Blocks hands out has been checked
//     against its block's hash, including a block handed out as stored
//     (AppendStored, StoredBlocks), which is decompressed and hashed
//     first. Verify changes no data; it only records what it finds
//     damaged in the index. A block that fails its checks is an error
//     wrapping chunkstore.ErrCorrupt (or ErrMissing) naming the point,
//     disk and offset, and is recorded as damage, whichever reader met
//     it; read-ahead only warms the cache and leaves errors to the read.
//   - Memory stays bounded whatever the disk size: a walk holds at most
//     walkSlots blocks (about 32 MiB, at least two per worker); a
//     ReadAhead is four streams, each at most its window (8 MiB by
//     default) ahead of its reader; the loaders queue at most 256 blocks
//     and load into the block cache, which is bounded by bytes.
//   - Read-ahead starts only at a stream's third read, each starting
//     within 16 reads' size (or the stream's window, at most 4 MiB) of
//     the last one's end, with a window of twice the read size doubling
//     to the maximum: a random reader loads nothing it did not ask for.
//   - No goroutine outlives its work: a walk's have all ended when it
//     returns, on error or cancellation (its context) too; the loaders
//     end when their queue is empty, and DiskReader.Close takes a
//     reader's blocks off it.
//
// # Backups from dirty bitmaps
//
// A source may come with a dirty bitmap (QEMU's, read over NBD): the
// ranges written since the bitmap began recording. A backup given one
// reads only the blocks those ranges touch (rounded out to the vault's
// blocks, holes still skipped) and takes every other block's hash from
// the base disk, the parent's disk it is compared with; the point is as
// complete as any other. Terms:
//   - checkpoint: the bitmap that began recording a disk's changes at the
//     moment the state a backup reads was taken (created atomically with
//     the export's view, as libvirt checkpoints and QMP transactions do).
//     The caller names it (DiskSource.Checkpoint); the point records it
//     per disk (Disk.Checkpoint), whether the disk was read in full or
//     from a bitmap.
//   - bitmap: the bitmap a disk was read from (Disk.Bitmap); "" for a
//     full read. Disk.BitmapUnused says why a bitmap given was not used.
//
// The rule: bitmap NAME is trusted for disk D only when all of these
// hold, else D is read in full (with dedup, so it costs no more space)
// and the point says why:
//   - the source offers NAME;
//   - the parent, which is always the resource's latest point, has a
//     disk D is compared with, and that disk recorded checkpoint NAME: a
//     point made in between without it (another source, a failed
//     export), or a bitmap older than the latest point, is refused;
//   - D has the base disk's size and block size;
//   - no block the bitmap calls clean held data in the base disk and
//     reads as zeros now (an unchanged block cannot have lost its data).
//
// A clean block whose stored copy is missing or known damaged is read
// from the source, so a bitmap backup heals it as a full one would.
// What cairn cannot see is the server's history of the bitmap: the
// caller must keep a checkpoint bitmap recording from its start until it
// is read (export a frozen copy of it, never clear or disable the
// bitmap itself), or remove it; a bitmap that stopped recording is the
// one case the rule cannot tell from a good one, once the point that
// replaced it is deleted.
package snapshot

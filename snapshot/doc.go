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
//     appended when two points of a resource fall in the same second.
//   - point record: a point's manifest in storage, checksummed
//     (record.go): everything needed to read the point. The index keeps
//     the same bytes.
//   - block map: for each disk of a point, one hash per fixed-size block
//     (the zero hash for a hole). It is cut into pages of PageEntries
//     hashes, each stored as a blob, so an unchanged region of the disk
//     costs an incremental point nothing.
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
//     damaged in the index.
package snapshot

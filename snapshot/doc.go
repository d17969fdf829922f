// Package snapshot turns disks into backup points and points back into
// disks: the vault, resources, points, chains, the backup engine,
// restore, verify and stats.
//
// Terms:
//   - vault: a directory holding cairn.json (format and settings), the
//     index and the packs.
//   - resource: a named thing protected together (one disk, or a server's
//     disks); its points form its chain, oldest first.
//   - point: an immutable, complete state of a resource, named
//     RESOURCE@ID where ID is the UTC time YYYYMMDDTHHMMSSZ, with "-N"
//     appended when two points of a resource fall in the same second.
//   - block map: for each disk of a point, one hash per fixed-size block
//     (the zero hash for a hole). It is cut into pages of PageEntries
//     hashes, each stored as a blob, so an unchanged region of the disk
//     costs an incremental point nothing.
//
// Invariants:
//   - Every point holds a complete block map: reading a point never walks
//     the chain, and deleting one point never touches another.
//   - A point's manifest is committed last, after all of its blocks and
//     map pages are durable and indexed. Nothing is visible before.
//   - Blocks of all zeros and holes of the source are never stored.
//   - Every byte a DiskReader or Vault.Blocks hands out has been checked
//     against its block's hash, including a block handed out as stored
//     (AppendStored, StoredBlocks), which is decompressed and hashed
//     first.
package snapshot

// Package chunkstore keeps blocks as compressed, self-describing blobs in
// append-only pack files in a storage.Storage, and reads them back
// verified.
//
// Terms:
//   - block: a run of raw bytes, named by its Hash (BLAKE3-256).
//   - blob: one block as stored: a 56-byte header (magic, kind, codec,
//     raw and stored lengths, hash, CRC-32C) followed by the stored bytes.
//   - pack: an object of blobs behind a 16-byte header carrying the format
//     version, and (version 2) a trailer repeating every blob header.
//     Packs are written whole, committed to storage, and only then
//     indexed; a committed pack never changes.
//   - damaged copy: a blob that failed its checks when read (CRC,
//     decompression, hash, a missing or truncated pack). The index
//     records it, and backups then store the block again instead of
//     referring to it; the new copy heals every point that uses it.
//
// Invariants:
//   - Every byte handed to a caller has been decompressed and re-hashed,
//     blocks handed out as stored (AppendStored) included; a mismatch is
//     ErrCorrupt, never data.
//   - The index (package index) only holds locations of blobs in
//     committed packs, so a crash at any moment leaves at worst an
//     uncommitted temporary pack, which storage never lists and which is
//     later removed.
//   - The index is a cache: headers describe each blob fully, and
//     ReadPackIndex lists a pack's blobs from its trailer (two ranged
//     reads) or, for a version 1 or truncated pack, header by header,
//     without reading block data.
//   - A backup never refers to a copy known damaged, nor to one whose
//     pack storage lacks or is too short for (checked once per pack and
//     PackWriter).
package chunkstore

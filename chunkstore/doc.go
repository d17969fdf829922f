// Package chunkstore keeps blocks as compressed, self-describing blobs in
// append-only pack files, and reads them back verified.
//
// Terms:
//   - block: a run of raw bytes, named by its Hash (BLAKE3-256).
//   - blob: one block as stored: a 56-byte header (magic, kind, codec,
//     raw and stored lengths, hash, CRC-32C) followed by the stored bytes.
//   - pack: a file of blobs behind a 16-byte header carrying the format
//     version. Packs are written whole, made durable, and only then
//     renamed into place and indexed; a committed pack never changes.
//   - Backend: where packs live (a local directory today, an object store
//     later).
//
// Invariants:
//   - Every byte handed to a caller has been decompressed and re-hashed,
//     blocks handed out as stored (AppendStored) included; a mismatch is
//     ErrCorrupt, never data.
//   - The index (package index) only holds locations of blobs in
//     committed packs, so a crash at any moment leaves at worst an
//     uncommitted temporary pack, which is ignored and later removed.
//   - Headers describe each blob fully, so the index can be rebuilt by
//     scanning packs.
package chunkstore

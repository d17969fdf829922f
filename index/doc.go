// Package index is cairn's only user of Badger. It owns the key layout and
// the binary encodings of the small records a vault keeps:
//
//   - block locations: content hash → (pack, offset, stored and raw length)
//   - point manifests: (resource, point ID) → an opaque encoded manifest
//   - packs: pack ID → size and blob count
//
// Invariants:
//   - Values are small (under a few KiB, except manifests of huge disks);
//     block payloads and block maps live in pack files, never here.
//   - A block location is written only after the pack holding it is
//     durable, so every location in the index points at committed data.
//   - Keys start with a one-byte prefix; integers are big-endian so byte
//     order is numeric order.
//
// All methods are safe for concurrent use. Byte slices returned by the
// index are copies owned by the caller.
package index

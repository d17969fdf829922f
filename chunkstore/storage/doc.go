// Package storage is the one seam through which a vault keeps everything
// it keeps: packs, point records, its config, policies. Everything above
// it (the block store, points, gc, replication, encryption) sees objects,
// never files, so that a local directory and an S3-compatible object store
// serve alike.
//
// Terms:
//   - object: a named, whole run of bytes, read whole (Get) or by range
//     (ReadAt), and replaced or deleted only whole.
//   - kind: the namespace of an object (Config, Packs, Points,
//     Policies). The same name in two kinds names two objects.
//   - name: 1 to MaxNameLen bytes of [A-Za-z0-9._@-], not starting with
//     "." and not ending with ".tmp"; CheckName is the one definition,
//     and every backend calls it before anything else.
//   - committed: visible to Get, ReadAt, Stat and List. Put commits at
//     once; Create's Writer commits when its Commit returns nil.
//   - temporary: a backend's object in the making. Never read, listed or
//     counted as an object.
//
// Invariants:
//   - The interface needs only what an object store offers: whole-object
//     puts, ranged gets, listings by prefix and deletes. It never renames
//     or appends, and no caller may take a listing, or a failed write, as
//     proof that an object is absent: a listing shows what existed while
//     it ran, and a write whose reply was lost may have landed.
//   - Readers see an object whole or not at all: never part of a Put,
//     never a Writer's bytes before its Commit.
//   - A nil error from Put, Commit or Delete means durable.
//   - Errors name the object in one line ("pack 1a2b….pack: ...") and wrap
//     the package's sentinels (ErrNotExist, ErrNoSpace, ErrInvalidName,
//     ErrClosed) and the ctx's error, so callers test with errors.Is.
//
// Backends: Dir (a vault directory, in the layout cairn has always used),
// Mem (in memory, for tests) and Faulty (a wrapper that injects faults,
// for tests of the layers above). Package storagetest holds the
// conformance suite that each of them passes.
package storage

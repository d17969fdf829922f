// Package storagetest is the conformance suite of package storage: every
// backend (a directory, memory, a fault injector with no rules, an object
// store) must pass Run unchanged. It checks the contract documented on
// storage.Storage and storage.Writer, through those interfaces only.
//
// Terms:
//   - open: a function returning a new, empty storage for one subtest.
//     The suite closes it when the subtest ends.
//
// Invariants the suite holds a backend to:
//   - A committed object reads back exactly; an uncommitted, aborted or
//     deleted one is ErrNotExist to Get, ReadAt and Stat and absent from
//     List.
//   - Kinds are separate namespaces.
//   - Invalid names and kinds, done contexts and closed storages fail
//     every call, with ErrInvalidName, the context's error and ErrClosed.
//   - Concurrent calls are safe (run the suite with -race) and Put is
//     atomic to concurrent readers.
package storagetest

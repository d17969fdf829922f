package storage

import (
	"context"
	"io"
)

// Kind is a namespace of objects. The same name in two kinds names two
// objects.
type Kind string

// The kinds a vault keeps.
const (
	Config   Kind = "config"   // the vault's settings (cairn.json)
	Packs    Kind = "packs"    // pack files of blobs
	Points   Kind = "points"   // point records
	Policies Kind = "policies" // backup policies
)

// Kinds returns every kind, in a fixed order (for replication and repair,
// which walk them all).
func Kinds() []Kind { return []Kind{Config, Packs, Points, Policies} }

// ObjectInfo describes a committed object.
type ObjectInfo struct {
	Kind Kind
	Name string
	Size int64
}

// Storage keeps named objects by kind. Every method takes ctx first and
// fails with an error wrapping ctx.Err() once ctx is done; every method
// refuses an unknown kind or an invalid name with ErrInvalidName. A
// Storage is safe for concurrent use. After Close, every call fails with
// ErrClosed.
type Storage interface {
	// Put stores a whole (small) object atomically and durably: readers
	// see the old object or the new one, never part of one. It replaces
	// an existing object. On an error the old object stays, unless the
	// backend cannot tell whether the put took place (see Commit). Put
	// does not keep data after it returns.
	Put(ctx context.Context, kind Kind, name string, data []byte) error
	// Create streams a large object (a pack). It is invisible to Get,
	// ReadAt, Stat and List until Commit returns nil, and durable then;
	// committing replaces an existing object of that name. ctx governs
	// the writer's whole life: once it is done, Write fails.
	Create(ctx context.Context, kind Kind, name string) (Writer, error)
	// Get returns a whole object, in a slice the caller owns.
	Get(ctx context.Context, kind Kind, name string) ([]byte, error)
	// ReadAt fills all of p from offset off, or fails; a range past the
	// end is an error wrapping io.ErrUnexpectedEOF (so a truncated pack
	// is detected), a negative offset is an error too.
	ReadAt(ctx context.Context, kind Kind, name string, p []byte, off int64) error
	// Stat describes an object.
	Stat(ctx context.Context, kind Kind, name string) (ObjectInfo, error)
	// List calls fn for every committed object of kind, in no particular
	// order, and never for a partial or temporary one. An error from fn
	// stops List, which returns it. An object put or deleted while List
	// runs may or may not be reported: a listing proves what exists, never
	// what does not.
	List(ctx context.Context, kind Kind, fn func(ObjectInfo) error) error
	// Delete removes an object, durably. Deleting one that does not exist
	// is not an error (as on S3).
	Delete(ctx context.Context, kind Kind, name string) error
	// Close releases the storage's resources. Writers still open must be
	// committed or aborted before.
	Close() error
}

// Writer receives a new object's bytes in order. It is used by one
// goroutine at a time.
type Writer interface {
	io.Writer
	// Commit makes the object durable and visible when it returns nil.
	// On an error the writer is finished (a later Abort is a no-op) and
	// the object is not visible, unless the backend cannot tell whether
	// the commit took place (an object store's lost reply, a directory
	// sync failing after the rename): so a failed Commit, like a listing,
	// is never proof that the object is absent.
	Commit(ctx context.Context) error
	// Abort discards the object. It is a no-op after Commit or Abort.
	Abort() error
}

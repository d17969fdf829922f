package storage

import (
	"errors"
	"fmt"
	"io/fs"
)

// Sentinel errors. Backends wrap them with the object they concern, so
// test with errors.Is.
var (
	// ErrNotExist: no such object. errors.Is(err, fs.ErrNotExist) holds too.
	ErrNotExist error = &sentinel{"object does not exist", fs.ErrNotExist}
	// ErrNoSpace: the store is full (ENOSPC, EDQUOT, a full bucket). A
	// backend keeps its own cause in the chain as well.
	ErrNoSpace = errors.New("storage is full")
	// ErrInvalidName: a name or kind the storage refuses (see CheckName).
	ErrInvalidName = errors.New("invalid object name")
	// ErrClosed: the storage was closed, or the writer was committed or
	// aborted. errors.Is(err, fs.ErrClosed) holds too.
	ErrClosed error = &sentinel{"storage is closed", fs.ErrClosed}
)

// sentinel is an error that refines a standard one, so callers may test
// for either: a caller that only knows io/fs still sees "not exist".
type sentinel struct {
	msg string
	std error
}

func (e *sentinel) Error() string { return e.msg }
func (e *sentinel) Unwrap() error { return e.std }

// objectError names the object an error concerns, in one line:
// "pack 1a2b….pack: object does not exist".
func objectError(kind Kind, name string, err error) error {
	return fmt.Errorf("%s %s: %w", kind.noun(), name, err)
}

// listError names the kind whose listing failed.
func listError(kind Kind, err error) error {
	return fmt.Errorf("listing %s: %w", kind, err)
}

// noun is how messages name one object of kind.
func (k Kind) noun() string {
	switch k {
	case Config:
		return "config"
	case Packs:
		return "pack"
	case Points:
		return "point"
	case Policies:
		return "policy"
	}
	return fmt.Sprintf("object of kind %q", string(k))
}

package storage

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// writeError names the object in err and turns a full disk or quota into
// ErrNoSpace, keeping the system's error (and its path) in the chain:
// errors.Is(err, syscall.ENOSPC) still holds.
func writeError(kind Kind, name string, err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		err = fmt.Errorf("%w: %w", ErrNoSpace, err)
	}
	return objectError(kind, name, err)
}

// readError is writeError for reads, which also turn a missing file into
// ErrNotExist. Writes do not: their ENOENT means a missing vault
// directory, which is no missing object.
func readError(kind Kind, name string, err error) error {
	if isNotExist(err) {
		return objectError(kind, name, ErrNotExist)
	}
	return writeError(kind, name, err)
}

func isNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }

// unlink removes a file, never a directory (os.Remove would rmdir an
// empty one).
func unlink(p string) error {
	for {
		err := syscall.Unlink(p)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return &fs.PathError{Op: "unlink", Path: p, Err: err}
		}
		return nil
	}
}

// syncDir makes the entries of dir durable: a rename or unlink in it, or a
// new sub-directory.
func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

package storage

import (
	"fmt"
	"strings"
)

// MaxNameLen bounds a name, leaving room within a file system's 255-byte
// limit for a backend's temporary suffix.
const MaxNameLen = 200

// tmpSuffix ends the names of temporary objects in backends that keep
// them beside committed ones (Dir, and cairn before this package), so no
// valid name may end with it.
const tmpSuffix = ".tmp"

// CheckKind refuses a kind this package does not know, with an error
// wrapping ErrInvalidName.
func CheckKind(kind Kind) error {
	switch kind {
	case Config, Packs, Points, Policies:
		return nil
	}
	return fmt.Errorf("%w: unknown kind %q", ErrInvalidName, string(kind))
}

// CheckName refuses an unknown kind or an invalid name, with an error
// wrapping ErrInvalidName. Every backend calls it first, so that a name
// valid for one is valid for all. A valid name is 1 to MaxNameLen bytes
// of [A-Za-z0-9._@-], does not start with "." (so "." and ".." and hidden
// files are out) and does not end with ".tmp" (the mark of a temporary).
func CheckName(kind Kind, name string) error {
	if err := CheckKind(kind); err != nil {
		return err
	}
	if err := checkName(name); err != nil {
		return fmt.Errorf("%s %q: %w", kind.noun(), name, err)
	}
	return nil
}

func checkName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty", ErrInvalidName)
	case len(name) > MaxNameLen:
		return fmt.Errorf("%w: longer than %d bytes", ErrInvalidName, MaxNameLen)
	case name[0] == '.':
		return fmt.Errorf("%w: starts with a dot", ErrInvalidName)
	case strings.HasSuffix(name, tmpSuffix):
		return fmt.Errorf("%w: ends with %s", ErrInvalidName, tmpSuffix)
	}
	for i := 0; i < len(name); i++ {
		if !nameByte(name[i]) {
			return fmt.Errorf("%w: byte %#02x at %d is not one of [A-Za-z0-9._@-]", ErrInvalidName, name[i], i)
		}
	}
	return nil
}

func nameByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return c == '.' || c == '_' || c == '@' || c == '-'
}

// objectKey is an object's identity within a backend.
type objectKey struct {
	kind Kind
	name string
}

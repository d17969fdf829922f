package storage

import (
	"fmt"
	"io"
)

// checkRange refuses to read n bytes at off of an object of size bytes
// unless they all lie within it; every backend's ReadAt shares it, so all
// fail alike.
func checkRange(size int64, n int, off int64) error {
	if off < 0 {
		return fmt.Errorf("read at negative offset %d", off)
	}
	if off > size || int64(n) > size-off {
		return fmt.Errorf("read %d bytes at %d of %d: %w", n, off, size, io.ErrUnexpectedEOF)
	}
	return nil
}

package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
)

// ReadAt reads through a cached read-only handle, so the hot path (a
// mount reading block after block) costs one pread and no open.
func (d *Dir) ReadAt(ctx context.Context, kind Kind, name string, p []byte, off int64) error {
	if err := d.begin(ctx, kind, name); err != nil {
		return err
	}
	of, err := d.files.acquire(objectKey{kind, name}, d.path(kind, name))
	if err != nil {
		return readError(kind, name, err)
	}
	defer d.files.release(of)
	if err := checkRange(of.size, len(p), off); err != nil {
		return objectError(kind, name, err)
	}
	if _, err := of.f.ReadAt(p, off); err != nil {
		if errors.Is(err, io.EOF) { // shorter than when it was opened
			err = fmt.Errorf("read %d bytes at %d: %w", len(p), off, io.ErrUnexpectedEOF)
		}
		return readError(kind, name, err)
	}
	return nil
}

package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// replaceFile writes path through a temporary file beside it: fill
// writes the content, which is then synced and renamed over path. On any
// error the temporary file is removed, so nothing half-written ever
// carries the final name. The file is created with mode 0600.
func replaceFile(path string, fill func(f *os.File) error) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".cairn-*")
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err // name the output, not the temporary file
		}
		return fmt.Errorf("%s: %w", path, err)
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := fill(f); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	ok = true
	return nil
}

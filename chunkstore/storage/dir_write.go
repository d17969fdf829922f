package storage

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

func (d *Dir) Create(ctx context.Context, kind Kind, name string) (Writer, error) {
	if err := d.begin(ctx, kind, name); err != nil {
		return nil, err
	}
	return d.create(ctx, kind, name)
}

// create opens a temporary file for object name in the directory the
// object will live in, so that the rename that commits it stays within
// one directory (and one file system).
func (d *Dir) create(ctx context.Context, kind Kind, name string) (*dirWriter, error) {
	dir := d.dir(kind, name)
	f, err := createTemp(dir, name)
	if errors.Is(err, fs.ErrNotExist) {
		if err = d.mkdir(dir); err == nil {
			f, err = createTemp(dir, name)
		}
	}
	if err != nil {
		return nil, writeError(kind, name, err)
	}
	return &dirWriter{d: d, ctx: ctx, kind: kind, name: name, f: f}, nil
}

// createTemp creates a temporary file for object name in dir: a name that
// no other writer uses (two may write one object at once; the last commit
// wins) and that is never a valid object name (it ends with tmpSuffix).
func createTemp(dir, name string) (*os.File, error) {
	f, err := os.CreateTemp(dir, name+".*"+tmpSuffix)
	if err != nil {
		return nil, err
	}
	if err := f.Chmod(fileMode); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, err
	}
	return f, nil
}

// mkdir creates dir, and its parents up to the vault root, with dirMode,
// and makes each new entry durable. It never creates the root itself: a
// vault directory that went away is an error.
func (d *Dir) mkdir(dir string) error {
	if len(dir) <= len(d.root) {
		return fmt.Errorf("vault directory %s is missing: %w", d.root, fs.ErrNotExist)
	}
	err := os.Mkdir(dir, dirMode)
	if errors.Is(err, fs.ErrNotExist) {
		if err = d.mkdir(filepath.Dir(dir)); err == nil {
			err = os.Mkdir(dir, dirMode)
		}
	}
	if errors.Is(err, fs.ErrExist) {
		return nil // made by another writer, or by an older cairn
	}
	if err != nil {
		return err
	}
	if err := os.Chmod(dir, dirMode); err != nil { // the umask took bits
		return err
	}
	return syncDir(filepath.Dir(dir))
}

// dirWriter streams an object into its temporary file.
type dirWriter struct {
	d    *Dir
	ctx  context.Context // of Create: bounds the writer's life
	kind Kind
	name string
	f    *os.File
	done bool
}

func (w *dirWriter) Write(p []byte) (int, error) {
	if w.done {
		return 0, objectError(w.kind, w.name, ErrClosed)
	}
	if err := w.ctx.Err(); err != nil {
		return 0, objectError(w.kind, w.name, err)
	}
	if err := w.d.roomFor(len(p)); err != nil {
		return 0, writeError(w.kind, w.name, err)
	}
	n, err := w.f.Write(p)
	if err != nil {
		return n, writeError(w.kind, w.name, err)
	}
	return n, nil
}

func (w *dirWriter) Commit(ctx context.Context) error {
	if w.done {
		return objectError(w.kind, w.name, ErrClosed)
	}
	w.done = true
	err := w.f.Sync()
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	// The rename is the commit: whatever happened until now, a ctx done
	// or a storage closed still means nothing is visible.
	if err == nil {
		err = w.ctx.Err()
	}
	if err == nil {
		err = ctx.Err()
	}
	if err == nil && w.d.closed.Load() {
		err = ErrClosed
	}
	final := filepath.Join(filepath.Dir(w.f.Name()), w.name)
	if err == nil {
		err = os.Rename(w.f.Name(), final)
	}
	if err != nil {
		os.Remove(w.f.Name())
		return writeError(w.kind, w.name, err)
	}
	// After the rename, so that no reader can cache the old file anew.
	w.d.files.drop(w.kind, w.name)
	if err := syncDir(filepath.Dir(final)); err != nil {
		return writeError(w.kind, w.name, err)
	}
	return nil
}

func (w *dirWriter) Abort() error {
	if w.done {
		return nil
	}
	w.done = true
	w.f.Close()
	if err := os.Remove(w.f.Name()); err != nil && !isNotExist(err) {
		return writeError(w.kind, w.name, err)
	}
	return nil
}

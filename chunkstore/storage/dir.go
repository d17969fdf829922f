package storage

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
)

// Modes of everything Dir creates, set explicitly whatever the umask: a
// vault holds whole disks and is its owner's alone.
const (
	dirMode  fs.FileMode = 0o700
	fileMode fs.FileMode = 0o600
)

// dirOpenFiles bounds the read-only handles Dir keeps open for ReadAt.
const dirOpenFiles = 64

// Dir keeps objects as files in a vault directory, in the layout existing
// vaults have (the config at the root, packs fanned out), with a directory
// each for the kinds that are new:
//
//	ROOT/cairn.json               Config objects, directly in ROOT
//	ROOT/packs/1a/1a2b….pack      Packs, fanned out by the name's first two characters
//	ROOT/points/web01@2026….      Points
//	ROOT/policies/NAME            Policies
//
// An object is a name that resolves to a regular file; anything else in
// these directories (the index, a socket, a temporary, a file with an
// invalid name) is not one. Objects are written to a temporary file in
// their own directory (NAME.RANDOM.tmp), synced, renamed into place and
// the directory synced; a crash leaves only temporaries, which are never
// read or listed, and CleanTemp removes. Directories Dir creates are 0700
// and files 0600, whatever the umask.
type Dir struct {
	root   string
	files  *openFiles
	closed atomic.Bool
	keep   atomic.Int64 // bytes writes leave free on the filesystem (KeepFree)
}

var _ Storage = (*Dir)(nil)

// NewDir returns the storage of the vault directory root, which must
// exist: a mistyped path is an error, not a new empty vault.
func NewDir(root string) (*Dir, error) {
	root = filepath.Clean(root)
	st, err := os.Stat(root)
	if err != nil {
		return nil, fmt.Errorf("vault directory: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("vault directory %s: not a directory", root)
	}
	return &Dir{root: root, files: newOpenFiles(dirOpenFiles)}, nil
}

// KeepFree makes writes fail with ErrNoSpace (and ENOSPC) when they would
// leave fewer than n bytes free on the filesystem of the vault, or an
// eighth of its size if that is less; 0 keeps nothing. The vault's index
// lives beside the objects and writes through memory maps: a process
// that writes to a mapped page the filesystem has no room for is killed
// by SIGBUS, so the objects must leave the index room.
func (d *Dir) KeepFree(n int64) { d.keep.Store(n) }

// roomFor returns the error of a write of n bytes that would leave less
// free than KeepFree asks; nil when there is room, or no way to tell
// (the write itself will say).
func (d *Dir) roomFor(n int) error {
	keep := d.keep.Load()
	if keep <= 0 {
		return nil
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(d.root, &st); err != nil {
		return nil
	}
	bs := int64(st.Bsize)
	keep = min(keep, int64(st.Blocks)*bs/8)
	free := int64(st.Bavail) * bs
	if free-int64(n) >= keep {
		return nil
	}
	return fmt.Errorf("%d bytes free on its filesystem, and %d are kept for the index: %w", max(free, 0), keep, syscall.ENOSPC)
}

// dir returns the directory that holds object name of kind.
func (d *Dir) dir(kind Kind, name string) string {
	switch kind {
	case Packs:
		return filepath.Join(d.root, "packs", fanout(name))
	case Points, Policies:
		return filepath.Join(d.root, string(kind))
	}
	return d.root
}

func (d *Dir) path(kind Kind, name string) string {
	return filepath.Join(d.dir(kind, name), name)
}

// fanout is the sub-directory of packs that holds pack name: its first two
// characters (all of a shorter name).
func fanout(name string) string { return name[:min(2, len(name))] }

// begin makes the checks every call makes first.
func (d *Dir) begin(ctx context.Context, kind Kind, name string) error {
	if err := CheckName(kind, name); err != nil {
		return err
	}
	if d.closed.Load() {
		return objectError(kind, name, ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return objectError(kind, name, err)
	}
	return nil
}

func (d *Dir) Put(ctx context.Context, kind Kind, name string, data []byte) error {
	if err := d.begin(ctx, kind, name); err != nil {
		return err
	}
	if err := d.roomFor(len(data)); err != nil {
		return writeError(kind, name, err)
	}
	w, err := d.create(ctx, kind, name)
	if err != nil {
		return err
	}
	if _, err := w.Write(data); err != nil {
		w.Abort()
		return err
	}
	return w.Commit(ctx)
}

func (d *Dir) Get(ctx context.Context, kind Kind, name string) ([]byte, error) {
	if err := d.begin(ctx, kind, name); err != nil {
		return nil, err
	}
	f, size, err := openObject(d.path(kind, name))
	if err != nil {
		return nil, readError(kind, name, err)
	}
	defer f.Close()
	buf := make([]byte, size)
	if _, err := io.ReadFull(f, buf); err != nil {
		return nil, readError(kind, name, err)
	}
	return buf, nil
}

func (d *Dir) Stat(ctx context.Context, kind Kind, name string) (ObjectInfo, error) {
	if err := d.begin(ctx, kind, name); err != nil {
		return ObjectInfo{}, err
	}
	st, err := os.Stat(d.path(kind, name))
	if err == nil && !st.Mode().IsRegular() {
		err = fs.ErrNotExist
	}
	if err != nil {
		return ObjectInfo{}, readError(kind, name, err)
	}
	return ObjectInfo{Kind: kind, Name: name, Size: st.Size()}, nil
}

func (d *Dir) Delete(ctx context.Context, kind Kind, name string) error {
	if err := d.begin(ctx, kind, name); err != nil {
		return err
	}
	p := d.path(kind, name)
	// Only an object is deleted: never the index directory or a socket
	// that happens to carry a valid name.
	if st, err := os.Stat(p); err != nil || !st.Mode().IsRegular() {
		if err == nil || isNotExist(err) {
			return nil
		}
		return writeError(kind, name, err)
	}
	if err := unlink(p); err != nil && !isNotExist(err) {
		return writeError(kind, name, err)
	}
	// After the unlink, so that no reader can cache the file anew.
	d.files.drop(kind, name)
	if err := syncDir(filepath.Dir(p)); err != nil {
		return writeError(kind, name, err)
	}
	return nil
}

// Close closes the cached read handles (each once its last reader is
// done); later calls fail with ErrClosed.
func (d *Dir) Close() error {
	d.closed.Store(true)
	d.files.closeAll()
	return nil
}

// openObject opens the file at p for reading and returns its size; a file
// that is not regular is not an object. It looks before it opens, as
// opening a socket fails and opening a fifo blocks.
func openObject(p string) (*os.File, int64, error) {
	if st, err := os.Stat(p); err != nil {
		return nil, 0, err
	} else if !st.Mode().IsRegular() {
		return nil, 0, fs.ErrNotExist
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, 0, err
	}
	st, err := f.Stat() // the size of the file opened, which a Put may have replaced meanwhile
	if err == nil && !st.Mode().IsRegular() {
		err = fs.ErrNotExist
	}
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, st.Size(), nil
}

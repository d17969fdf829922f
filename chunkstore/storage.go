package chunkstore

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Backend stores packs as named, immutable objects. A local directory is
// the only implementation today; an object store fits the same shape.
type Backend interface {
	// Create starts a new object. It becomes visible under name only when
	// the writer's Commit returns, and is durable then.
	Create(name string) (ObjectWriter, error)
	// Open returns a reader for a committed object.
	Open(name string) (Object, error)
	// List calls fn for every committed object.
	List(fn func(name string, size int64) error) error
	// Remove deletes a committed object.
	Remove(name string) error
}

// ObjectWriter receives an object's bytes in order.
type ObjectWriter interface {
	io.Writer
	// Commit makes the object durable and visible.
	Commit() error
	// Abort discards the object; it is safe after Commit (a no-op).
	Abort() error
}

// Object is a committed object open for reading. ReadAt may be called
// concurrently.
type Object interface {
	io.ReaderAt
	Size() int64
	Close() error
}

// ErrNoObject is returned by Open for an object that does not exist.
var ErrNoObject = errors.New("pack file missing")

// DirBackend keeps objects as files under a directory, fanned out into
// 256 sub-directories by the first two characters of the name. Objects
// being written carry a ".tmp" suffix until committed; a crash leaves
// only such files behind, which List ignores and CleanTemp removes.
type DirBackend struct {
	root string
}

// NewDirBackend returns a backend rooted at dir, creating it if needed.
func NewDirBackend(dir string) (*DirBackend, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	return &DirBackend{root: dir}, nil
}

const tmpSuffix = ".tmp"

func (b *DirBackend) path(name string) string {
	return filepath.Join(b.root, name[:2], name)
}

func (b *DirBackend) Create(name string) (ObjectWriter, error) {
	if len(name) < 3 || strings.ContainsAny(name, "/\\") {
		return nil, fmt.Errorf("invalid object name %q", name)
	}
	final := b.path(name)
	if err := os.MkdirAll(filepath.Dir(final), 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(final+tmpSuffix, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	return &fileWriter{f: f, final: final}, nil
}

type fileWriter struct {
	f     *os.File
	final string
	done  bool
}

func (w *fileWriter) Write(p []byte) (int, error) { return w.f.Write(p) }

func (w *fileWriter) Commit() error {
	if err := w.f.Sync(); err != nil {
		w.Abort()
		return err
	}
	if err := w.f.Close(); err != nil {
		os.Remove(w.f.Name())
		return err
	}
	if err := os.Rename(w.f.Name(), w.final); err != nil {
		os.Remove(w.f.Name())
		return err
	}
	w.done = true
	return syncDir(filepath.Dir(w.final))
}

func (w *fileWriter) Abort() error {
	if w.done {
		return nil
	}
	w.done = true
	w.f.Close()
	return os.Remove(w.f.Name())
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func (b *DirBackend) Open(name string) (Object, error) {
	f, err := os.Open(b.path(name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNoObject, name)
	}
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &fileObject{File: f, size: st.Size()}, nil
}

type fileObject struct {
	*os.File
	size int64
}

func (o *fileObject) Size() int64 { return o.size }

func (b *DirBackend) List(fn func(name string, size int64) error) error {
	subs, err := os.ReadDir(b.root)
	if err != nil {
		return err
	}
	for _, s := range subs {
		if !s.IsDir() {
			continue
		}
		ents, err := os.ReadDir(filepath.Join(b.root, s.Name()))
		if err != nil {
			return err
		}
		for _, e := range ents {
			if strings.HasSuffix(e.Name(), tmpSuffix) || !e.Type().IsRegular() {
				continue
			}
			info, err := e.Info()
			if err != nil {
				return err
			}
			if err := fn(e.Name(), info.Size()); err != nil {
				return err
			}
		}
	}
	return nil
}

func (b *DirBackend) Remove(name string) error { return os.Remove(b.path(name)) }

// CleanTemp removes objects left uncommitted by a crash. Only call it
// while no writer is active.
func (b *DirBackend) CleanTemp() (removed int, err error) {
	matches, err := filepath.Glob(filepath.Join(b.root, "*", "*"+tmpSuffix))
	if err != nil {
		return 0, err
	}
	for _, m := range matches {
		if err := os.Remove(m); err == nil {
			removed++
		}
	}
	return removed, nil
}

package storage

import (
	"bytes"
	"context"
	"fmt"
	"sync"
)

// Mem keeps objects in memory, for tests. It copies data on the way in and
// out, so no caller can change a stored object behind its back.
type Mem struct {
	mu     sync.RWMutex
	objs   map[objectKey][]byte
	closed bool
}

var _ Storage = (*Mem)(nil)

// NewMem returns an empty in-memory storage.
func NewMem() *Mem { return &Mem{objs: map[objectKey][]byte{}} }

// begin makes the checks every call makes first; m.mu is held.
func (m *Mem) begin(ctx context.Context, kind Kind, name string) error {
	if err := CheckName(kind, name); err != nil {
		return err
	}
	if m.closed {
		return objectError(kind, name, ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return objectError(kind, name, err)
	}
	return nil
}

func (m *Mem) Put(ctx context.Context, kind Kind, name string, data []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.begin(ctx, kind, name); err != nil {
		return err
	}
	m.objs[objectKey{kind, name}] = bytes.Clone(data)
	return nil
}

func (m *Mem) Get(ctx context.Context, kind Kind, name string) ([]byte, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	b, err := m.object(ctx, kind, name)
	if err != nil {
		return nil, err
	}
	return append([]byte{}, b...), nil // never nil, as from Dir
}

// object returns the stored bytes of an object; m.mu is held.
func (m *Mem) object(ctx context.Context, kind Kind, name string) ([]byte, error) {
	if err := m.begin(ctx, kind, name); err != nil {
		return nil, err
	}
	b, ok := m.objs[objectKey{kind, name}]
	if !ok {
		return nil, objectError(kind, name, ErrNotExist)
	}
	return b, nil
}

func (m *Mem) ReadAt(ctx context.Context, kind Kind, name string, p []byte, off int64) error {
	m.mu.RLock()
	defer m.mu.RUnlock()
	b, err := m.object(ctx, kind, name)
	if err != nil {
		return err
	}
	if err := checkRange(int64(len(b)), len(p), off); err != nil {
		return objectError(kind, name, err)
	}
	copy(p, b[off:])
	return nil
}

func (m *Mem) Stat(ctx context.Context, kind Kind, name string) (ObjectInfo, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	b, err := m.object(ctx, kind, name)
	if err != nil {
		return ObjectInfo{}, err
	}
	return ObjectInfo{Kind: kind, Name: name, Size: int64(len(b))}, nil
}

// List calls fn without holding Mem's lock, so fn may call Mem.
func (m *Mem) List(ctx context.Context, kind Kind, fn func(ObjectInfo) error) error {
	if err := CheckKind(kind); err != nil {
		return err
	}
	m.mu.RLock()
	var infos []ObjectInfo
	err := ctx.Err()
	if m.closed {
		err = ErrClosed
	}
	for k, b := range m.objs {
		if k.kind == kind {
			infos = append(infos, ObjectInfo{Kind: kind, Name: k.name, Size: int64(len(b))})
		}
	}
	m.mu.RUnlock()
	if err != nil {
		return listError(kind, err)
	}
	for _, info := range infos {
		if err := ctx.Err(); err != nil {
			return listError(kind, err)
		}
		if err := fn(info); err != nil {
			return err
		}
	}
	return nil
}

func (m *Mem) Delete(ctx context.Context, kind Kind, name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.begin(ctx, kind, name); err != nil {
		return err
	}
	delete(m.objs, objectKey{kind, name})
	return nil
}

// Close makes later calls fail with ErrClosed; the test helpers still
// work.
func (m *Mem) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	return nil
}

func (m *Mem) Create(ctx context.Context, kind Kind, name string) (Writer, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if err := m.begin(ctx, kind, name); err != nil {
		return nil, err
	}
	return &memWriter{m: m, ctx: ctx, key: objectKey{kind, name}}, nil
}

// memWriter collects an object's bytes until Commit.
type memWriter struct {
	m    *Mem
	ctx  context.Context // of Create: bounds the writer's life
	key  objectKey
	buf  []byte
	done bool
}

func (w *memWriter) Write(p []byte) (int, error) {
	if w.done {
		return 0, objectError(w.key.kind, w.key.name, ErrClosed)
	}
	if err := w.ctx.Err(); err != nil {
		return 0, objectError(w.key.kind, w.key.name, err)
	}
	w.buf = append(w.buf, p...)
	return len(p), nil
}

func (w *memWriter) Commit(ctx context.Context) error {
	if w.done {
		return objectError(w.key.kind, w.key.name, ErrClosed)
	}
	w.done = true
	m := w.m
	m.mu.Lock()
	defer m.mu.Unlock()
	err := w.ctx.Err()
	if err == nil {
		err = ctx.Err()
	}
	if err == nil && m.closed {
		err = ErrClosed
	}
	if err != nil {
		return objectError(w.key.kind, w.key.name, err)
	}
	m.objs[w.key] = w.buf // the writer is done with buf: no copy needed
	w.buf = nil
	return nil
}

func (w *memWriter) Abort() error {
	w.done = true
	w.buf = nil
	return nil
}

// Test helpers: ways to damage stored objects that no Storage method
// offers, so tests can check that the layers above detect damage.

// Damage overwrites the bytes of an object at off with data, as bit rot or
// a misdirected write would; the object keeps its size. For tests.
func (m *Mem) Damage(kind Kind, name string, off int64, data []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.objs[objectKey{kind, name}]
	if !ok {
		return objectError(kind, name, ErrNotExist)
	}
	if err := checkRange(int64(len(b)), len(data), off); err != nil {
		return objectError(kind, name, err)
	}
	copy(b[off:], data) // in place: readers copy out under m.mu
	return nil
}

// Truncate cuts an object to size bytes, as a lost tail would. For tests.
func (m *Mem) Truncate(kind Kind, name string, size int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.objs[objectKey{kind, name}]
	if !ok {
		return objectError(kind, name, ErrNotExist)
	}
	if size < 0 || size > int64(len(b)) {
		return objectError(kind, name, fmt.Errorf("cannot truncate %d bytes to %d", len(b), size))
	}
	m.objs[objectKey{kind, name}] = b[:size:size]
	return nil
}

package storage

import (
	"container/list"
	"os"
	"sync"
)

// openFiles is an LRU of read-only handles for Dir.ReadAt, so that the hot
// path (a mount reads thousands of blocks a second from a few packs) costs
// one pread and no open. A handle evicted, dropped or closed while readers
// use it is closed when its last reader releases it.
type openFiles struct {
	max int
	mu  sync.Mutex
	lru *list.List // of *openFile, most recently used first
	m   map[objectKey]*list.Element
	// epoch counts drops. A reader that opened a file while a drop took
	// place may hold the file the drop meant to forget (one renamed over
	// or unlinked meanwhile), so it uses its handle once and does not
	// cache it.
	epoch uint64
}

type openFile struct {
	key  objectKey
	f    *os.File
	size int64
	refs int
	gone bool // out of the cache: close when refs reaches 0
}

func newOpenFiles(max int) *openFiles {
	return &openFiles{max: max, lru: list.New(), m: map[objectKey]*list.Element{}}
}

// acquire returns a handle for the object at path p, from the cache or
// newly opened; the caller must release it.
func (c *openFiles) acquire(key objectKey, p string) (*openFile, error) {
	c.mu.Lock()
	if e, ok := c.m[key]; ok {
		c.lru.MoveToFront(e)
		of := e.Value.(*openFile)
		of.refs++
		c.mu.Unlock()
		return of, nil
	}
	epoch := c.epoch
	c.mu.Unlock()

	// Open outside the lock: a slow open must not stall cached reads.
	f, size, err := openObject(p)
	if err != nil {
		return nil, err
	}
	of := &openFile{key: key, f: f, size: size, refs: 1}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.epoch != epoch {
		of.gone = true
		return of, nil
	}
	if e, ok := c.m[key]; ok { // another reader opened it meanwhile
		f.Close()
		c.lru.MoveToFront(e)
		of = e.Value.(*openFile)
		of.refs++
		return of, nil
	}
	c.m[key] = c.lru.PushFront(of)
	for c.lru.Len() > c.max {
		c.remove(c.lru.Back())
	}
	return of, nil
}

func (c *openFiles) release(of *openFile) {
	c.mu.Lock()
	defer c.mu.Unlock()
	of.refs--
	if of.gone && of.refs == 0 {
		of.f.Close()
	}
}

// drop forgets the handle of an object that was replaced or deleted.
func (c *openFiles) drop(kind Kind, name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch++
	if e, ok := c.m[objectKey{kind, name}]; ok {
		c.remove(e)
	}
}

func (c *openFiles) closeAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch++
	for c.lru.Len() > 0 {
		c.remove(c.lru.Back())
	}
}

// remove takes e out of the cache; c.mu is held.
func (c *openFiles) remove(e *list.Element) {
	of := e.Value.(*openFile)
	c.lru.Remove(e)
	delete(c.m, of.key)
	of.gone = true
	if of.refs == 0 {
		of.f.Close()
	}
}

// cached reports whether the object's handle is in the cache (for tests).
func (c *openFiles) cached(kind Kind, name string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.m[objectKey{kind, name}]
	return ok
}

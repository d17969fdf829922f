package chunkstore

import (
	"container/list"
	"sync"
)

// blockCache is an LRU of decompressed, verified blocks bounded by bytes.
// Concurrent misses on the same hash share one load.
type blockCache struct {
	mu       sync.Mutex
	max, cur int64
	lru      *list.List // front = most recent; values are *cacheEntry
	byHash   map[Hash]*list.Element
	loading  map[Hash]*load
}

type cacheEntry struct {
	hash Hash
	data []byte
}

type load struct {
	done chan struct{}
	data []byte
	err  error
}

func newBlockCache(max int64) *blockCache {
	return &blockCache{max: max, lru: list.New(), byHash: map[Hash]*list.Element{}, loading: map[Hash]*load{}}
}

// get returns the cached block or calls fill once for all concurrent
// callers asking for the same hash. The returned slice is shared and
// must not be modified.
func (c *blockCache) get(h Hash, fill func() ([]byte, error)) ([]byte, error) {
	c.mu.Lock()
	if e, ok := c.byHash[h]; ok {
		c.lru.MoveToFront(e)
		data := e.Value.(*cacheEntry).data
		c.mu.Unlock()
		return data, nil
	}
	if l, ok := c.loading[h]; ok {
		c.mu.Unlock()
		<-l.done
		return l.data, l.err
	}
	l := &load{done: make(chan struct{})}
	c.loading[h] = l
	c.mu.Unlock()

	l.data, l.err = fill()

	c.mu.Lock()
	delete(c.loading, h)
	if l.err == nil {
		c.add(h, l.data)
	}
	c.mu.Unlock()
	close(l.done)
	return l.data, l.err
}

func (c *blockCache) add(h Hash, data []byte) {
	size := int64(len(data))
	if size > c.max {
		return
	}
	c.byHash[h] = c.lru.PushFront(&cacheEntry{h, data})
	c.cur += size
	for c.cur > c.max {
		e := c.lru.Back()
		ce := e.Value.(*cacheEntry)
		c.lru.Remove(e)
		delete(c.byHash, ce.hash)
		c.cur -= int64(len(ce.data))
	}
}

// contains reports whether h is cached, without touching recency.
func (c *blockCache) contains(h Hash) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.byHash[h]
	if !ok {
		_, ok = c.loading[h]
	}
	return ok
}

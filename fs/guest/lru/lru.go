// Package lru is the bounded cache the guest filesystem readers keep
// their metadata in: least recently used entries go first once the
// summed cost of the values passes the budget.
//
// Values must be treated as immutable once added: several goroutines may
// hold the same value at once. All methods are safe for concurrent use.
package lru

import (
	"container/list"
	"sync"
)

// Cache maps keys to values, bounded by the total cost of its values.
type Cache[K comparable, V any] struct {
	mu      sync.Mutex
	maxCost int
	cost    int
	ll      *list.List // front: most recently used
	m       map[K]*list.Element
}

type entry[K comparable, V any] struct {
	key  K
	val  V
	cost int
}

// New returns a cache holding values of total cost up to maxCost.
func New[K comparable, V any](maxCost int) *Cache[K, V] {
	return &Cache[K, V]{maxCost: maxCost, ll: list.New(), m: map[K]*list.Element{}}
}

// Get returns the value for k and marks it recently used.
func (c *Cache[K, V]) Get(k K) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[k]; ok {
		c.ll.MoveToFront(e)
		return e.Value.(*entry[K, V]).val, true
	}
	var zero V
	return zero, false
}

// Add stores v under k at the given cost (at least 1, so that a count of
// free entries cannot grow without bound); a value costlier than the
// whole budget is not kept.
func (c *Cache[K, V]) Add(k K, v V, cost int) {
	cost = max(cost, 1)
	if cost > c.maxCost {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[k]; ok {
		it := e.Value.(*entry[K, V])
		c.cost += cost - it.cost
		it.val, it.cost = v, cost
		c.ll.MoveToFront(e)
	} else {
		c.m[k] = c.ll.PushFront(&entry[K, V]{k, v, cost})
		c.cost += cost
	}
	for c.cost > c.maxCost {
		e := c.ll.Back()
		it := e.Value.(*entry[K, V])
		c.ll.Remove(e)
		delete(c.m, it.key)
		c.cost -= it.cost
	}
}

package fat

import (
	"container/list"
	"sync"
)

// lru is a mutex-guarded cache bounded by the summed cost of its values.
type lru[K comparable, V any] struct {
	mu      sync.Mutex
	maxCost int
	cost    int
	ll      *list.List
	m       map[K]*list.Element
}

type lruItem[K comparable, V any] struct {
	key  K
	val  V
	cost int
}

func newLRU[K comparable, V any](maxCost int) *lru[K, V] {
	return &lru[K, V]{maxCost: maxCost, ll: list.New(), m: map[K]*list.Element{}}
}

func (c *lru[K, V]) get(k K) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[k]; ok {
		c.ll.MoveToFront(e)
		return e.Value.(*lruItem[K, V]).val, true
	}
	var zero V
	return zero, false
}

// add stores v; a value costlier than the whole budget is not kept.
func (c *lru[K, V]) add(k K, v V, cost int) {
	if cost < 1 {
		cost = 1
	}
	if cost > c.maxCost {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[k]; ok {
		it := e.Value.(*lruItem[K, V])
		c.cost += cost - it.cost
		it.val, it.cost = v, cost
		c.ll.MoveToFront(e)
	} else {
		c.m[k] = c.ll.PushFront(&lruItem[K, V]{k, v, cost})
		c.cost += cost
	}
	for c.cost > c.maxCost {
		e := c.ll.Back()
		it := e.Value.(*lruItem[K, V])
		c.ll.Remove(e)
		delete(c.m, it.key)
		c.cost -= it.cost
	}
}

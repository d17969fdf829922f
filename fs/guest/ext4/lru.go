package ext4

import (
	"container/list"
	"sync"
)

// lru is a small cache bounded by the total cost of its values. Values
// must be treated as immutable once added: several goroutines may hold
// the same value at once.
type lru[K comparable, V any] struct {
	mu      sync.Mutex
	maxCost int
	cost    int
	ll      *list.List
	m       map[K]*list.Element
}

type lruEntry[K comparable, V any] struct {
	key  K
	val  V
	cost int
}

func newLRU[K comparable, V any](maxCost int) *lru[K, V] {
	return &lru[K, V]{maxCost: maxCost, ll: list.New(), m: make(map[K]*list.Element)}
}

func (c *lru[K, V]) get(k K) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[k]; ok {
		c.ll.MoveToFront(e)
		return e.Value.(*lruEntry[K, V]).val, true
	}
	var zero V
	return zero, false
}

// add stores v unless its cost alone exceeds the budget.
func (c *lru[K, V]) add(k K, v V, cost int) {
	if cost > c.maxCost {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[k]; ok {
		old := e.Value.(*lruEntry[K, V])
		c.cost += cost - old.cost
		old.val, old.cost = v, cost
		c.ll.MoveToFront(e)
	} else {
		c.m[k] = c.ll.PushFront(&lruEntry[K, V]{key: k, val: v, cost: cost})
		c.cost += cost
	}
	for c.cost > c.maxCost {
		e := c.ll.Back()
		old := e.Value.(*lruEntry[K, V])
		c.ll.Remove(e)
		delete(c.m, old.key)
		c.cost -= old.cost
	}
}

package lru

import "testing"

func TestEvictsLeastRecentlyUsedByCost(t *testing.T) {
	c := New[string, int](10)
	c.Add("a", 1, 4)
	c.Add("b", 2, 4)
	c.Get("a") // b is now the oldest
	c.Add("c", 3, 4)
	if _, ok := c.Get("b"); ok {
		t.Error("b should have been evicted")
	}
	if v, ok := c.Get("a"); !ok || v != 1 {
		t.Errorf("a = %v, %v", v, ok)
	}
	c.Add("huge", 9, 11)
	if _, ok := c.Get("huge"); ok {
		t.Error("a value over the whole budget was kept")
	}
	c.Add("a", 5, 2) // replacing updates value and cost
	if v, _ := c.Get("a"); v != 5 || c.cost != 6 {
		t.Errorf("after replace: a=%d cost=%d", v, c.cost)
	}
	for i := 0; i < 100; i++ {
		c.Add(string(rune('A'+i)), i, 0) // zero cost counts as 1
	}
	if len(c.m) > 10 {
		t.Errorf("%d entries kept with a budget of 10", len(c.m))
	}
}

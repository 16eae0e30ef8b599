package archive

import (
	"container/list"
	"sync"
)

// lru keeps values up to a total cost, dropping the least recently used.
type lru[T any] struct {
	mu    sync.Mutex
	max   int64
	used  int64
	cost  func(T) int64
	order *list.List // front: most recent
	byKey map[string]*list.Element
}

type lruItem[T any] struct {
	key  string
	val  T
	cost int64
}

func newLRU[T any](max int64, cost func(T) int64) *lru[T] {
	return &lru[T]{max: max, cost: cost, order: list.New(), byKey: map[string]*list.Element{}}
}

func (c *lru[T]) get(key string) (T, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.byKey[key]; ok {
		c.order.MoveToFront(e)
		return e.Value.(*lruItem[T]).val, true
	}
	var zero T
	return zero, false
}

// put keeps val under key; a value costing more than the whole cache is
// not kept.
func (c *lru[T]) put(key string, val T) {
	cost := c.cost(val)
	if cost > c.max {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.byKey[key]; ok {
		c.used -= e.Value.(*lruItem[T]).cost
		c.order.Remove(e)
	}
	c.byKey[key] = c.order.PushFront(&lruItem[T]{key: key, val: val, cost: cost})
	c.used += cost
	for c.used > c.max {
		e := c.order.Back()
		it := e.Value.(*lruItem[T])
		c.order.Remove(e)
		delete(c.byKey, it.key)
		c.used -= it.cost
	}
}

func (c *lru[T]) remove(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.byKey[key]; ok {
		c.used -= e.Value.(*lruItem[T]).cost
		c.order.Remove(e)
		delete(c.byKey, key)
	}
}

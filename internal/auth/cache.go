package auth

import (
	"container/list"
	"sync"
	"time"
)

// cache remembers accepted tokens until their deadline, at most max of them;
// beyond that the least recently used goes, so a flood of distinct tokens
// cannot grow memory.
type cache struct {
	mu    sync.Mutex
	max   int
	lru   *list.List // of *cached, most recently used first
	items map[tokenKey]*list.Element
}

type cached struct {
	key   tokenKey
	id    Identity
	until time.Time
}

func newCache(max int) *cache {
	return &cache{max: max, lru: list.New(), items: make(map[tokenKey]*list.Element)}
}

func (c *cache) get(key tokenKey, now time.Time) (Identity, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[key]
	if !ok {
		return Identity{}, false
	}
	e := el.Value.(*cached)
	if !now.Before(e.until) {
		c.lru.Remove(el)
		delete(c.items, key)
		return Identity{}, false
	}
	c.lru.MoveToFront(el)
	return e.id, true
}

// put remembers id for key until until; a deadline already passed is not kept.
func (c *cache) put(key tokenKey, id Identity, until, now time.Time) {
	if !now.Before(until) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[key]; ok {
		el.Value = &cached{key: key, id: id, until: until}
		c.lru.MoveToFront(el)
		return
	}
	c.items[key] = c.lru.PushFront(&cached{key: key, id: id, until: until})
	for c.lru.Len() > c.max {
		oldest := c.lru.Back()
		c.lru.Remove(oldest)
		delete(c.items, oldest.Value.(*cached).key)
	}
}

func (c *cache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}

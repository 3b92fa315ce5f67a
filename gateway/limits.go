package gateway

import (
	"context"
	"errors"
	"sync"
)

// errBusy: the client's (or everyone's) waiting room is full.
var errBusy = errors.New("too many requests waiting")

// limiter admits requests: at most maxActive at once, at most maxPerClient
// of one client's, and when slots are short it hands them out to the
// waiting clients in turn (round robin), so one client's many requests
// cannot starve another's single one. It owns no goroutine: a request
// waits on its own.
type limiter struct {
	maxActive, maxPerClient int
	maxWaiting, maxWaitPer  int

	mu      sync.Mutex
	active  int
	peak    int // the most active at once
	waiting int
	clients map[string]*clientState
	ring    []*clientState // clients with waiters, in turn order
	onWait  func()         // test hook: a request started waiting (under mu)
}

type clientState struct {
	key     string
	active  int
	waiters []*waiter
	inRing  bool
}

type waiter struct {
	ch      chan struct{}
	granted bool
}

func newLimiter(maxActive, maxPerClient, maxWaiting, maxWaitPer int) *limiter {
	return &limiter{
		maxActive: maxActive, maxPerClient: maxPerClient,
		maxWaiting: maxWaiting, maxWaitPer: maxWaitPer,
		clients: make(map[string]*clientState),
	}
}

// acquire takes a slot for key, waiting until one is free or ctx ends.
// It returns errBusy at once when the waiting room (overall or the
// client's) is full, and ctx's error if ctx ends first.
func (l *limiter) acquire(ctx context.Context, key string) error {
	l.mu.Lock()
	c := l.clients[key]
	if c == nil {
		c = &clientState{key: key}
		l.clients[key] = c
	}
	if l.active < l.maxActive && c.active < l.maxPerClient && len(c.waiters) == 0 {
		l.take(c)
		l.mu.Unlock()
		return nil
	}
	if l.waiting >= l.maxWaiting || len(c.waiters) >= l.maxWaitPer {
		l.forget(c)
		l.mu.Unlock()
		return errBusy
	}
	w := &waiter{ch: make(chan struct{})}
	c.waiters = append(c.waiters, w)
	l.waiting++
	if !c.inRing {
		c.inRing = true
		l.ring = append(l.ring, c)
	}
	if l.onWait != nil {
		l.onWait()
	}
	l.mu.Unlock()

	select {
	case <-w.ch:
		return nil
	case <-ctx.Done():
		l.mu.Lock()
		defer l.mu.Unlock()
		if w.granted {
			l.releaseLocked(c)
			return ctx.Err()
		}
		for i, x := range c.waiters {
			if x == w {
				c.waiters = append(c.waiters[:i], c.waiters[i+1:]...)
				break
			}
		}
		l.waiting--
		if len(c.waiters) == 0 {
			l.dropFromRing(c)
		}
		l.forget(c)
		return ctx.Err()
	}
}

// release gives back the slot of key's request.
func (l *limiter) release(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.releaseLocked(l.clients[key])
}

func (l *limiter) releaseLocked(c *clientState) {
	l.active--
	c.active--
	l.dispatch()
	l.forget(c)
}

// dispatch grants free slots to waiters, one client's at a time in turn.
func (l *limiter) dispatch() {
	for l.active < l.maxActive {
		granted := false
		for i, c := range l.ring {
			if c.active >= l.maxPerClient {
				continue
			}
			w := c.waiters[0]
			c.waiters = c.waiters[1:]
			l.waiting--
			w.granted = true
			close(w.ch)
			l.take(c)
			// This client goes to the back of the turn order.
			l.ring = append(l.ring[:i], l.ring[i+1:]...)
			if len(c.waiters) > 0 {
				l.ring = append(l.ring, c)
			} else {
				c.inRing = false
			}
			granted = true
			break
		}
		if !granted {
			return
		}
	}
}

func (l *limiter) take(c *clientState) {
	l.active++
	c.active++
	l.peak = max(l.peak, l.active)
}

func (l *limiter) dropFromRing(c *clientState) {
	if !c.inRing {
		return
	}
	for i, x := range l.ring {
		if x == c {
			l.ring = append(l.ring[:i], l.ring[i+1:]...)
			break
		}
	}
	c.inRing = false
}

// forget drops a client with nothing active or waiting, so the map holds
// only clients that have requests (at most maxActive + maxWaiting).
func (l *limiter) forget(c *clientState) {
	if c.active == 0 && len(c.waiters) == 0 {
		delete(l.clients, c.key)
	}
}

func (l *limiter) stat() (active, peak, waiting, clients int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.active, l.peak, l.waiting, len(l.clients)
}

// byteBudget bounds the bytes of blocks read from the blockstore and not
// yet written to their clients. Reservations are served in order (FIFO),
// so a large block is not starved by small ones.
type byteBudget struct {
	max int64

	mu      sync.Mutex
	used    int64
	peak    int64
	waiters []*byteWaiter
	onWait  func() // test hook: a reservation started waiting (under mu)
}

type byteWaiter struct {
	n       int64
	ch      chan struct{}
	granted bool
}

// reserve takes n bytes (clamped to the budget, so any block can be
// served), waiting until they are free or ctx ends.
func (b *byteBudget) reserve(ctx context.Context, n int64) (int64, error) {
	if n > b.max {
		n = b.max
	}
	b.mu.Lock()
	if len(b.waiters) == 0 && b.used+n <= b.max {
		b.take(n)
		b.mu.Unlock()
		return n, nil
	}
	w := &byteWaiter{n: n, ch: make(chan struct{})}
	b.waiters = append(b.waiters, w)
	if b.onWait != nil {
		b.onWait()
	}
	b.mu.Unlock()
	select {
	case <-w.ch:
		return n, nil
	case <-ctx.Done():
		b.mu.Lock()
		defer b.mu.Unlock()
		if w.granted {
			b.giveLocked(n)
			return 0, ctx.Err()
		}
		for i, x := range b.waiters {
			if x == w {
				b.waiters = append(b.waiters[:i], b.waiters[i+1:]...)
				break
			}
		}
		b.wake() // the head may have changed
		return 0, ctx.Err()
	}
}

func (b *byteBudget) take(n int64) {
	b.used += n
	if b.used > b.peak {
		b.peak = b.used
	}
}

func (b *byteBudget) give(n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.giveLocked(n)
}

func (b *byteBudget) giveLocked(n int64) {
	b.used -= n
	b.wake()
}

func (b *byteBudget) wake() {
	for len(b.waiters) > 0 && b.used+b.waiters[0].n <= b.max {
		w := b.waiters[0]
		b.waiters = b.waiters[1:]
		b.take(w.n)
		w.granted = true
		close(w.ch)
	}
}

func (b *byteBudget) stat() (used, peak int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used, b.peak
}

package engine

import (
	"context"
	"math"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/gobitswap/bitswap/internal/pq"
)

// Blockstore lookups run in the goroutine that asked for them (a peer's
// network delivery goroutine, a worker after the peer's turn, the refiller
// for wants that new blocks woke), so left alone the Go scheduler shares
// lookup time evenly between goroutines: with 200 peers each wanting 1,024
// blocks we lack, a newly arrived honest client's 1,000 lookups got a
// two-hundredth of it and took 12 s. The lookup gate admits a bounded number of lookup batches at a time
// and, when peers wait, gives the next slot to the one that has had the
// fewest lookups lately, so a peer with a little to ask goes ahead of peers
// that keep the blockstore busy.
const (
	// lookupSlots is how many lookup batches run at once: enough to keep
	// a blockstore that waits on a disk busy, few enough that a waiting
	// peer is admitted within a few batches.
	lookupSlots = 8
	// lookupBatch is the most lookups a peer does per admission.
	lookupBatch = 32
	// lookupHalfLife is how fast a peer's lookup count is forgotten.
	lookupHalfLife = time.Second
)

// lookupGate schedules lookup batches between peers (see above). Its
// counts are per connected peer: Engine.PeerDisconnected forgets them.
type lookupGate struct {
	mu      sync.Mutex
	free    int
	waiting pq.Heap[*gateWaiter]
	seq     uint64
	usage   map[peer.ID]*lookupUsage
}

// lookupUsage is a peer's recent lookups, decayed by lookupHalfLife.
type lookupUsage struct {
	count float64
	at    time.Time
}

type gateWaiter struct {
	score float64
	seq   uint64 // arrival order among equal scores
	ready chan struct{}
	index int
}

func (w *gateWaiter) Less(o *gateWaiter) bool {
	if w.score != o.score {
		return w.score < o.score
	}
	return w.seq < o.seq
}
func (w *gateWaiter) SetIndex(i int) { w.index = i }

func newLookupGate(slots int) *lookupGate {
	return &lookupGate{free: slots, usage: make(map[peer.ID]*lookupUsage)}
}

// acquire waits for a slot for a batch of n lookups for p. It returns false,
// holding no slot, if ctx ends first.
func (g *lookupGate) acquire(ctx context.Context, p peer.ID, n int) bool {
	now := time.Now()
	g.mu.Lock()
	u := g.usage[p]
	if u == nil {
		u = &lookupUsage{at: now}
		g.usage[p] = u
	}
	u.count = u.count*math.Exp2(-now.Sub(u.at).Seconds()/lookupHalfLife.Seconds()) + float64(n)
	u.at = now
	if g.free > 0 && g.waiting.Len() == 0 {
		g.free--
		g.mu.Unlock()
		return true
	}
	g.seq++
	w := &gateWaiter{score: u.count, seq: g.seq, ready: make(chan struct{})}
	g.waiting.Push(w)
	g.mu.Unlock()
	select {
	case <-w.ready:
		return true
	case <-ctx.Done():
		g.mu.Lock()
		defer g.mu.Unlock()
		if w.index >= 0 {
			g.waiting.Remove(w.index)
			return false
		}
		// Admitted as ctx ended: pass the slot on.
		g.releaseLocked()
		return false
	}
}

// release returns a slot, handing it to the waiter with the lowest score.
func (g *lookupGate) release() {
	g.mu.Lock()
	g.releaseLocked()
	g.mu.Unlock()
}

func (g *lookupGate) releaseLocked() {
	if g.waiting.Len() == 0 {
		g.free++
		return
	}
	close(g.waiting.Pop().ready)
}

// forget drops p's lookup count.
func (g *lookupGate) forget(p peer.ID) {
	g.mu.Lock()
	delete(g.usage, p)
	g.mu.Unlock()
}

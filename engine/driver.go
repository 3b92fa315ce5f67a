package engine

import (
	"context"
	"slices"
	"sync"

	cid "github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/gobitswap/bitswap/message"
)

// driver feeds the core and carries out the effects it returns: the one
// sequence of receive, look up, pop, send, done and refill. The Engine runs
// it with its lock, blockstore and workers; the tests run it with a map of
// block sizes, so that they exercise the Engine's sequence and not a copy
// of it. The core decides with mu held; lookups and sends run without it.
//
// Effects returned by driver methods are already settled: waking waiting
// turns is done with mu held when the core asks for it. What is left for
// the caller is the lookups, which apply carries out.
type driver struct {
	core *core
	// mu guards core, closed and the refill queue (the Engine's mutex,
	// which also guards its counters).
	mu sync.Locker
	// lookup answers lookups of p's wants, without mu, so that blockstore
	// reads do not hold up other peers.
	lookup func(ctx context.Context, p peer.ID, todo []lookup) []lookupResult
	// cond, when set, is what turns wait on for the task queue (the
	// Engine's workers); without it a turn with nothing ready returns at
	// once.
	cond   *sync.Cond
	closed bool
	// refills queues the peers whose lookups arriving blocks made due, for
	// the refiller, so that whoever stored the blocks does not wait for
	// them (refillQueued: the same, as a set; refillWake, of capacity 1,
	// signals the refiller).
	refills      []peer.ID
	refillQueued map[peer.ID]struct{}
	refillWake   chan struct{}
	// tags keeps the connection manager's tag on the peers the core has
	// work for (none unless the Engine sets its tagger).
	tags peerTags
}

// newDriver drives c under mu, answering lookups with lookup; with wait,
// turns wait for the task queue instead of returning when it has nothing
// ready.
func newDriver(c *core, mu sync.Locker, lookup func(context.Context, peer.ID, []lookup) []lookupResult, wait bool) *driver {
	d := &driver{core: c, mu: mu, lookup: lookup,
		refillQueued: make(map[peer.ID]struct{}), refillWake: make(chan struct{}, 1),
		tags: peerTags{mu: mu, tagged: make(map[peer.ID]*tagged)}}
	if wait {
		d.cond = sync.NewCond(mu)
	}
	return d
}

// turn is one peer's turn popped from the task queue: the tasks to send it,
// and the bytes still queued for it.
type turn struct {
	p       peer.ID
	tasks   []*task
	pending int
}

// sendOutcome is how sending a turn went, as the sender tells the driver.
type sendOutcome struct {
	sent bool // it went out, or there was nothing to send: not a failure
	// note, if set, runs with mu held as the core hears the outcome (the
	// Engine's stats, so that they agree with the core's counters); after,
	// if set, once mu is released again (the ledger, logging), before the
	// lookups the outcome makes due.
	note, after func()
}

// settle carries out, with mu held, the part of eff that needs it: waking
// waiting turns when the task queue may have one ready, and bringing the
// tags of ps, the peers the call was about, and of those the core says it
// touched besides, in line with their work.
func (d *driver) settle(eff effects, ps ...peer.ID) effects {
	if eff.ready && d.cond != nil {
		d.cond.Broadcast()
	}
	for _, p := range ps {
		d.tags.update(d.core, p)
	}
	for _, p := range eff.lookup {
		d.tags.update(d.core, p)
	}
	for _, p := range d.core.touched {
		d.tags.update(d.core, p)
	}
	clear(d.core.touched)
	d.core.touched = d.core.touched[:0]
	return eff
}

// apply carries out eff's lookups, peer by peer, without mu; the caller
// waits for them.
func (d *driver) apply(ctx context.Context, eff effects) {
	for _, p := range eff.lookup {
		d.refill(ctx, p)
		if ctx.Err() != nil {
			return
		}
	}
}

// receive gives the core a wantlist from p. It returns the effects, for
// apply, and how many wants the core dropped over a limit, and of them how
// many for a CID over the size limit.
func (d *driver) receive(p peer.ID, full bool, entries []message.Entry) (eff effects, dropped, oversized uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	c := d.core
	droppedBefore, oversizedBefore := c.droppedWants, c.oversized
	eff = d.settle(c.receive(p, full, entries), p)
	return eff, c.droppedWants - droppedBefore, c.oversized - oversizedBefore
}

// refill looks up p's unchecked wants, a batch of lookupBatch at a time
// (the lookup gate's unit), as long as the core asks for them, its active
// cap lets them go and ctx lasts.
func (d *driver) refill(ctx context.Context, p peer.ID) {
	for {
		todo, eff := d.lookupOnce(ctx, p, lookupBatch)
		if len(todo) == 0 || ctx.Err() != nil || !slices.Contains(eff.lookup, p) {
			return
		}
	}
}

// lookupOnce hands out up to max of p's lookups, answers them without mu
// and gives the core the results. It returns the lookups (none: p has none
// to do now) and the effects.
func (d *driver) lookupOnce(ctx context.Context, p peer.ID, max int) ([]lookup, effects) {
	d.mu.Lock()
	todo := d.core.nextLookups(p, max)
	d.mu.Unlock()
	if len(todo) == 0 {
		return nil, effects{}
	}
	results := d.lookup(ctx, p, todo)
	d.mu.Lock()
	defer d.mu.Unlock()
	return todo, d.settle(d.core.lookupDone(p, results), p)
}

// runTurn takes the next turn (see pop), has send send it without mu,
// tells the core how it went and carries out the lookups that makes due;
// also after a turn with nothing to send (its blocks vanished), since
// popping freed active slots that unchecked wants may be waiting for. It
// reports false when there was no turn to take.
func (d *driver) runTurn(ctx context.Context, target int, send func(turn) sendOutcome) bool {
	t, ok := d.pop(target)
	if !ok {
		return false
	}
	d.apply(ctx, d.done(t, send(t)))
	return true
}

// pop takes the next turn, of up to target bytes, from the task queue.
// With none ready it waits for one if the driver has a cond, and otherwise
// returns false; false also once the driver is closed.
func (d *driver) pop(target int) (t turn, ok bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for !d.closed && d.cond != nil && !d.core.tq.ready() {
		d.cond.Wait()
	}
	if d.closed {
		return turn{}, false
	}
	t.p, t.tasks, t.pending, ok = d.core.pop(target)
	return t, ok
}

// done tells the core how t went. It returns the effects, for apply.
func (d *driver) done(t turn, out sendOutcome) effects {
	d.mu.Lock()
	if out.note != nil {
		out.note()
	}
	if out.sent && slices.ContainsFunc(t.tasks, func(t *task) bool { return t.kind != sendDontHave }) {
		d.tags.served(t.p)
	}
	eff := d.settle(d.core.done(t.p, t.tasks, out.sent), t.p)
	d.mu.Unlock()
	if out.after != nil {
		out.after()
	}
	return eff
}

// arrived tells the core that blocks were stored. The lookups that makes
// due are queued for the refiller (see runRefills), not done here: whoever
// stored the blocks (a peer's delivery goroutine, through the BlockRouter)
// must not wait on other peers' lookups. It returns the effects as the core
// made them.
func (d *driver) arrived(keys []cid.Cid) effects {
	d.mu.Lock()
	eff := d.settle(d.core.blocksArrived(keys))
	queued := false
	for _, p := range eff.lookup {
		if _, ok := d.refillQueued[p]; !ok {
			d.refillQueued[p] = struct{}{}
			d.refills = append(d.refills, p)
			queued = true
		}
	}
	d.mu.Unlock()
	if queued {
		select {
		case d.refillWake <- struct{}{}:
		default:
		}
	}
	return eff
}

// refiller runs the refills arrived queues, as they come, until ctx is
// done: the Engine's refiller goroutine.
func (d *driver) refiller(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.refillWake:
		}
		if !d.runRefills(ctx) {
			return
		}
	}
}

// runRefills refills the queued peers one at a time, in the order they
// were queued, until none is left. It returns false if ctx ended.
func (d *driver) runRefills(ctx context.Context) bool {
	for {
		d.mu.Lock()
		if len(d.refills) == 0 {
			d.mu.Unlock()
			return true
		}
		p := d.refills[0]
		d.refills[0] = ""
		d.refills = d.refills[1:]
		delete(d.refillQueued, p)
		d.mu.Unlock()
		d.refill(ctx, p)
		if ctx.Err() != nil {
			return false
		}
	}
}

// close makes pop return false from now on, waking the turns that wait,
// and untags every peer.
func (d *driver) close() {
	d.mu.Lock()
	d.closed = true
	d.tags.close()
	if d.cond != nil {
		d.cond.Broadcast()
	}
	d.mu.Unlock()
}

package providers

import (
	"context"
	"slices"

	cid "github.com/ipfs/go-cid"
	"go.opentelemetry.io/otel/trace"
)

// core decides which queries run, which wait, which an ask joins and which
// go, over plain data: no locks, goroutines, clocks or I/O. The Finder
// holds it under its lock and carries out what it returns (starting a
// query's goroutine, cancelling one), so every decision can be tested by
// calling its methods in a row.
type core struct {
	maxRunning int // 0: no cap
	maxWaiting int // 0: no bound

	byCid   map[cid.Cid]*query // the live query of each CID: running or waiting
	waiting []*query           // oldest first
	running int                // running queries, those being cancelled included
	stat    Stat
}

type state int

const (
	waiting state = iota
	running
	ended // finished, dropped or abandoned: nothing more happens to it
)

// query is one CID's query. The core reads only c, askers, state and
// abandoned; the rest is the Finder's, kept here so that one map serves
// both.
type query struct {
	c      cid.Cid
	askers int // asks joined to it whose contexts have not ended
	state  state
	// abandoned: every asker left while it ran; it is being cancelled
	// and no longer in byCid.
	abandoned bool

	// The Finder's.
	parent  trace.Span         // the first asker's span, the query span's parent
	span    trace.Span         // the query's, from when it starts
	cancel  context.CancelFunc // set when it starts
	stops   []func() bool      // the askers' context.AfterFunc registrations
	askedBy []context.Context  // the askers' contexts
}

func newCore(maxRunning, maxWaiting int) core {
	return core{maxRunning: maxRunning, maxWaiting: maxWaiting, byCid: make(map[cid.Cid]*query)}
}

// ask handles an ask for c. It returns the query the ask is joined to and
// what became of it; dropped is the waiting query that made room for q,
// when the queue was full (it has ended: the Finder releases its askers).
func (k *core) ask(c cid.Cid) (q *query, o Outcome, dropped *query) {
	if q := k.byCid[c]; q != nil {
		q.askers++
		k.stat.Joined++
		return q, Joined, nil
	}
	q = &query{c: c, askers: 1}
	k.byCid[c] = q
	if k.maxRunning == 0 || k.running < k.maxRunning {
		k.start(q)
		return q, Started, nil
	}
	if k.maxWaiting > 0 && len(k.waiting) >= k.maxWaiting {
		// The oldest waiting query goes: Sessions ask again for what
		// they still lack, so the newest asks are the freshest, and the
		// oldest block may well have arrived meanwhile.
		dropped = k.waiting[0]
		k.waiting = slices.Delete(k.waiting, 0, 1)
		k.end(dropped)
		k.stat.Dropped++
	}
	q.state = waiting
	k.waiting = append(k.waiting, q)
	k.stat.Queued++
	return q, Queued, dropped
}

func (k *core) start(q *query) {
	q.state = running
	k.running++
	k.stat.Started++
}

// end takes q out of the live set, if it is still there.
func (k *core) end(q *query) {
	q.state = ended
	if k.byCid[q.c] == q {
		delete(k.byCid, q.c)
	}
}

// leave handles an asker of q leaving (its context ended). When it was the
// last one, q is abandoned: taken off the queue if it waits (it has ended),
// or, if it runs, out of the live set at once, so that a new ask for its
// CID starts afresh, and cancel is true: the Finder cancels it, and
// finished follows.
func (k *core) leave(q *query) (cancel bool) {
	if q.state == ended || q.abandoned {
		return false
	}
	if q.askers--; q.askers > 0 {
		return false
	}
	k.stat.Abandoned++
	if q.state == waiting {
		k.waiting = slices.DeleteFunc(k.waiting, func(x *query) bool { return x == q })
		k.end(q)
		return false
	}
	q.abandoned = true
	if k.byCid[q.c] == q {
		delete(k.byCid, q.c)
	}
	return true
}

// finished handles the end of a running query (timedOut: its time ran
// out) and returns the waiting queries to start in the slot it frees.
// A waiting query that alive says no asker waits on any more (their
// contexts have ended, and their leaving is still on its way) is
// abandoned instead of started.
func (k *core) finished(q *query, timedOut bool, alive func(*query) bool) (next []*query) {
	if q.state != running {
		return nil
	}
	k.running--
	k.end(q)
	if timedOut {
		k.stat.TimedOut++
	}
	for len(k.waiting) > 0 && (k.maxRunning == 0 || k.running < k.maxRunning) {
		n := k.waiting[0]
		k.waiting = slices.Delete(k.waiting, 0, 1)
		if !alive(n) {
			k.end(n)
			k.stat.Abandoned++
			continue
		}
		k.start(n)
		next = append(next, n)
	}
	return next
}

// clear ends every waiting query (the Finder is closing) and returns them.
func (k *core) clear() []*query {
	out := k.waiting
	k.waiting = nil
	for _, q := range out {
		k.end(q)
	}
	return out
}

// snapshot returns the counters with the gauges filled in.
func (k *core) snapshot() Stat {
	s := k.stat
	s.Running = k.running
	s.Waiting = len(k.waiting)
	return s
}

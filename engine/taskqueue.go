package engine

import (
	cid "github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/gobitswap/bitswap/internal/pq"
)

// taskKind is what a task sends.
type taskKind uint8

const (
	sendBlock taskKind = iota
	sendHave
	sendDontHave
)

// task is one thing to send to one peer. It is plain data: the queue never
// touches the blockstore or the network.
type task struct {
	cid      cid.Cid
	kind     taskKind
	priority int32
	size     int    // bytes this task adds to a message (block size, or CID size for presences)
	seq      uint64 // arrival order, for FIFO among equal priorities; also identifies the want
	index    int    // position in its peer's heap; -1 when not queued
}

// peerQueue holds one peer's pending tasks, highest priority first.
type peerQueue struct {
	id          peer.ID
	tasks       pq.Heap[*task]
	byCid       map[cid.Cid]*task
	outstanding int  // bytes popped and not yet reported done
	inRing      bool // whether the peer is in the round-robin ring
}

// taskQueue schedules tasks across peers. Each peer has a priority heap;
// peers take turns in a round-robin ring, one message's worth of tasks per
// turn, and a peer with maxOutstanding bytes in flight sits out until some of
// them are done.
//
// We use this rather than go-peertaskqueue because its default peer
// comparator, on equal active work, prefers the peer with the most pending
// tasks: a peer that keeps a long queue can keep winning while a newcomer
// waits. Strict turns bound a newcomer's wait by the number of busy peers,
// and the whole policy fits in this file, where tests drive it step by step.
//
// taskQueue is not safe for concurrent use; the Engine guards it.
type taskQueue struct {
	maxOutstanding int
	peers          map[peer.ID]*peerQueue
	ring           []*peerQueue // peers with pending tasks, in turn order
	next           int          // ring position of the next turn
	// recalls counts, per peer, blocks served and blocks recalled (queued,
	// then cancelled before their turn). Unlike peerQueue it outlives an
	// empty queue; clear (the peer left) drops it.
	recalls map[peer.ID]*recallCount
}

// A peer that cancels most of the blocks we queue for it takes one turn in
// wastefulSitOut+1 while other peers have tasks queued. A client toggling its wants
// (want, cancel, want, ...) and reading as fast as it can otherwise gets an
// equal share of the server, taking blocks it cancels a moment later; it
// doubled an honest client's fetch in the attack suite. An honest client
// rarely cancels a block queued for it: only when another peer delivered it
// first.
const (
	wastefulSitOut     = 7
	wastefulMinRecalls = 64   // evidence needed before a peer counts as wasteful
	recallWindow       = 4096 // counts are halved past this, so old behaviour fades
)

// recallCount is one peer's blocks served and recalled, and its turns sat
// out since it was last served.
type recallCount struct {
	served, recalled, satOut int
}

func (r *recallCount) wasteful() bool {
	return r.recalled >= wastefulMinRecalls && r.recalled > r.served
}

func (r *recallCount) fade() {
	if r.served+r.recalled > recallWindow {
		r.served /= 2
		r.recalled /= 2
	}
}

func newTaskQueue(maxOutstanding int) *taskQueue {
	return &taskQueue{maxOutstanding: maxOutstanding, peers: make(map[peer.ID]*peerQueue),
		recalls: make(map[peer.ID]*recallCount)}
}

func (q *taskQueue) recallsOf(p peer.ID) *recallCount {
	r := q.recalls[p]
	if r == nil {
		r = &recallCount{}
		q.recalls[p] = r
	}
	return r
}

// recall drops the queued task for c because p cancelled it, counting a
// recalled block.
func (q *taskQueue) recall(p peer.ID, c cid.Cid) {
	if peerq := q.peers[p]; peerq != nil {
		if t := peerq.byCid[c]; t != nil && t.kind == sendBlock {
			r := q.recallsOf(p)
			r.recalled++
			r.fade()
		}
	}
	q.remove(p, c)
}

func (q *taskQueue) peer(p peer.ID) *peerQueue {
	peerq := q.peers[p]
	if peerq == nil {
		peerq = &peerQueue{id: p, byCid: make(map[cid.Cid]*task)}
		q.peers[p] = peerq
	}
	return peerq
}

// push queues t for p, replacing any queued task for the same CID.
func (q *taskQueue) push(p peer.ID, t *task) {
	peerq := q.peer(p)
	if old := peerq.byCid[t.cid]; old != nil {
		peerq.tasks.Remove(old.index)
	}
	peerq.byCid[t.cid] = t
	peerq.tasks.Push(t)
	if !peerq.inRing {
		peerq.inRing = true
		q.ring = append(q.ring, peerq)
	}
}

// remove drops the queued task for c, if any, and reports whether it did.
func (q *taskQueue) remove(p peer.ID, c cid.Cid) bool {
	peerq := q.peers[p]
	if peerq == nil {
		return false
	}
	t := peerq.byCid[c]
	if t == nil {
		return false
	}
	peerq.tasks.Remove(t.index)
	delete(peerq.byCid, c)
	q.gc(peerq)
	return true
}

// clear forgets p's queued tasks. Bytes popped for p stay counted until
// their turns are reported done: workers are still sending them, and if p
// comes back meanwhile its cap must not start again from zero (nor its new
// turns be discounted by the old ones' done).
func (q *taskQueue) clear(p peer.ID) {
	delete(q.recalls, p)
	peerq := q.peers[p]
	if peerq == nil {
		return
	}
	peerq.tasks.Clear()
	clear(peerq.byCid)
	q.gc(peerq)
}

// ready reports whether pop would return something.
func (q *taskQueue) ready() bool {
	_, peerq := q.nextServable(false)
	return peerq != nil
}

func (q *taskQueue) canServe(peerq *peerQueue) bool {
	// A peer with nothing in flight may always take a turn, even when a
	// single task is larger than the cap (a 2 MiB block against 1 MiB).
	return peerq.tasks.Len() > 0 && (peerq.outstanding == 0 || peerq.outstanding < q.maxOutstanding)
}

// pop gives the next peer in turn that may be served up to target bytes of
// its highest-priority tasks (at least one task). It returns the bytes still
// queued for that peer afterwards. ok is false when no peer can be served.
// A wasteful peer (see wastefulSitOut) is passed over while another can be
// served, until it has sat out its turns.
func (q *taskQueue) pop(target int) (p peer.ID, tasks []*task, pending int, ok bool) {
	idx, peerq := q.nextServable(true)
	if peerq == nil {
		return "", nil, 0, false
	}
	if r := q.recalls[peerq.id]; r != nil {
		r.satOut = 0
	}
	size := 0
	for peerq.tasks.Len() > 0 {
		t := peerq.tasks.At(0)
		if len(tasks) > 0 && (size+t.size > target || peerq.outstanding+t.size > q.maxOutstanding) {
			break
		}
		peerq.tasks.Pop()
		delete(peerq.byCid, t.cid)
		if t.kind == sendBlock {
			if r := q.recalls[peerq.id]; r != nil {
				r.served++
				r.fade()
			}
		}
		tasks = append(tasks, t)
		size += t.size
		peerq.outstanding += t.size
	}
	for i := range peerq.tasks.Len() {
		pending += peerq.tasks.At(i).size
	}
	// The next turn goes to the peer after this one (gc adjusts this if
	// the peer leaves the ring).
	q.next = idx + 1
	q.gc(peerq)
	return peerq.id, tasks, pending, true
}

// nextServable finds the next peer in turn that may take a turn. A
// wasteful peer sitting out its turns is passed over while other peers have
// tasks queued, even if none of them can be served right now (their
// in-flight caps free up as sends complete); with pass, passing it over
// counts as one of the turns it sits out.
func (q *taskQueue) nextServable(pass bool) (int, *peerQueue) {
	n := len(q.ring)
	for i := 0; i < n; i++ {
		idx := (q.next + i) % n
		peerq := q.ring[idx]
		if !q.canServe(peerq) {
			continue
		}
		if r := q.recalls[peerq.id]; n > 1 && r != nil && r.wasteful() && r.satOut < wastefulSitOut {
			if pass {
				r.satOut++
			}
			continue
		}
		return idx, peerq
	}
	return 0, nil
}

// done reports that tasks popped for p have been sent (or given up).
func (q *taskQueue) done(p peer.ID, tasks []*task) {
	peerq := q.peers[p]
	if peerq == nil {
		return
	}
	for _, t := range tasks {
		peerq.outstanding -= t.size
	}
	if peerq.outstanding < 0 {
		peerq.outstanding = 0
	}
	q.gc(peerq)
}

// gc takes an idle peer out of the ring, and forgets it once nothing of it is
// in flight.
func (q *taskQueue) gc(peerq *peerQueue) {
	if peerq.tasks.Len() > 0 {
		return
	}
	if peerq.inRing {
		peerq.inRing = false
		for i, r := range q.ring {
			if r == peerq {
				q.ring = append(q.ring[:i], q.ring[i+1:]...)
				if i < q.next {
					q.next--
				}
				break
			}
		}
		if q.next >= len(q.ring) {
			q.next = 0
		}
	}
	if peerq.outstanding == 0 {
		delete(q.peers, peerq.id)
	}
}

// Less orders a peer's tasks: HAVEs and DONT_HAVEs first, since they are
// tiny and tell the client at once where to ask (a DONT_HAVE queued behind
// a megabyte of blocks reaches it only after them); then by priority
// (higher first), then arrival.
func (t *task) Less(o *task) bool {
	if tb, ob := t.kind == sendBlock, o.kind == sendBlock; tb != ob {
		return ob
	}
	if t.priority != o.priority {
		return t.priority > o.priority
	}
	return t.seq < o.seq
}

// SetIndex records t's position in its peer's queue.
func (t *task) SetIndex(i int) { t.index = i }

package engine

import (
	"container/heap"

	cid "github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
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
	tasks       taskHeap
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
}

func newTaskQueue(maxOutstanding int) *taskQueue {
	return &taskQueue{maxOutstanding: maxOutstanding, peers: make(map[peer.ID]*peerQueue)}
}

func (q *taskQueue) peer(p peer.ID) *peerQueue {
	pq := q.peers[p]
	if pq == nil {
		pq = &peerQueue{id: p, byCid: make(map[cid.Cid]*task)}
		q.peers[p] = pq
	}
	return pq
}

// push queues t for p, replacing any queued task for the same CID.
func (q *taskQueue) push(p peer.ID, t *task) {
	pq := q.peer(p)
	if old := pq.byCid[t.cid]; old != nil {
		heap.Remove(&pq.tasks, old.index)
	}
	pq.byCid[t.cid] = t
	heap.Push(&pq.tasks, t)
	if !pq.inRing {
		pq.inRing = true
		q.ring = append(q.ring, pq)
	}
}

// remove drops the queued task for c, if any, and reports whether it did.
func (q *taskQueue) remove(p peer.ID, c cid.Cid) bool {
	pq := q.peers[p]
	if pq == nil {
		return false
	}
	t := pq.byCid[c]
	if t == nil {
		return false
	}
	heap.Remove(&pq.tasks, t.index)
	delete(pq.byCid, c)
	q.gc(pq)
	return true
}

// clear forgets p entirely, queued tasks and outstanding bytes alike.
func (q *taskQueue) clear(p peer.ID) {
	pq := q.peers[p]
	if pq == nil {
		return
	}
	pq.tasks = nil
	clear(pq.byCid)
	pq.outstanding = 0
	q.gc(pq)
}

// ready reports whether pop would return something.
func (q *taskQueue) ready() bool {
	for _, pq := range q.ring {
		if q.canServe(pq) {
			return true
		}
	}
	return false
}

func (q *taskQueue) canServe(pq *peerQueue) bool {
	// A peer with nothing in flight may always take a turn, even when a
	// single task is larger than the cap (a 2 MiB block against 1 MiB).
	return len(pq.tasks) > 0 && (pq.outstanding == 0 || pq.outstanding < q.maxOutstanding)
}

// pop gives the next peer in turn that may be served up to target bytes of
// its highest-priority tasks (at least one task). It returns the bytes still
// queued for that peer afterwards. ok is false when no peer can be served.
func (q *taskQueue) pop(target int) (p peer.ID, tasks []*task, pending int, ok bool) {
	n := len(q.ring)
	for i := 0; i < n; i++ {
		idx := (q.next + i) % n
		pq := q.ring[idx]
		if !q.canServe(pq) {
			continue
		}
		size := 0
		for len(pq.tasks) > 0 {
			t := pq.tasks[0]
			if len(tasks) > 0 && (size+t.size > target || pq.outstanding+t.size > q.maxOutstanding) {
				break
			}
			heap.Pop(&pq.tasks)
			delete(pq.byCid, t.cid)
			tasks = append(tasks, t)
			size += t.size
			pq.outstanding += t.size
		}
		for _, t := range pq.tasks {
			pending += t.size
		}
		// The next turn goes to the peer after this one (gc adjusts this if
		// the peer leaves the ring).
		q.next = idx + 1
		q.gc(pq)
		return pq.id, tasks, pending, true
	}
	return "", nil, 0, false
}

// done reports that tasks popped for p have been sent (or given up).
func (q *taskQueue) done(p peer.ID, tasks []*task) {
	pq := q.peers[p]
	if pq == nil {
		return
	}
	for _, t := range tasks {
		pq.outstanding -= t.size
	}
	if pq.outstanding < 0 {
		pq.outstanding = 0
	}
	q.gc(pq)
}

// gc takes an idle peer out of the ring, and forgets it once nothing of it is
// in flight.
func (q *taskQueue) gc(pq *peerQueue) {
	if len(pq.tasks) > 0 {
		return
	}
	if pq.inRing {
		pq.inRing = false
		for i, r := range q.ring {
			if r == pq {
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
	if pq.outstanding == 0 {
		delete(q.peers, pq.id)
	}
}

// queued returns the number of tasks queued for p.
func (q *taskQueue) queued(p peer.ID) int {
	if pq := q.peers[p]; pq != nil {
		return len(pq.tasks)
	}
	return 0
}

// taskHeap orders tasks by priority (higher first), then arrival.
type taskHeap []*task

func (h taskHeap) Len() int { return len(h) }
func (h taskHeap) Less(i, j int) bool {
	if h[i].priority != h[j].priority {
		return h[i].priority > h[j].priority
	}
	return h[i].seq < h[j].seq
}
func (h taskHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}
func (h *taskHeap) Push(x any) {
	t := x.(*task)
	t.index = len(*h)
	*h = append(*h, t)
}
func (h *taskHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	old[len(old)-1] = nil
	t.index = -1
	*h = old[:len(old)-1]
	return t
}

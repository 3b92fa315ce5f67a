package engine

import (
	cid "github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/gobitswap/bitswap/internal/pq"
	"github.com/gobitswap/bitswap/message"
)

// wantState is where one inbound want is in its life.
type wantState uint8

const (
	// wantUnchecked: waiting for a blockstore lookup. Costs only memory.
	wantUnchecked wantState = iota
	// wantChecking: a lookup is in flight.
	wantChecking
	// wantQueued: a task for it is in the task queue.
	wantQueued
	// wantParked: we lack the block (or may not give it); waiting for
	// blocksArrived. Parked wants of all peers are in core.parked, and the
	// oldest are forgotten past limits.maxParked.
	wantParked
)

// want is one entry of a peer's inbound wantlist.
type want struct {
	cid          cid.Cid
	priority     int32
	wantType     message.WantType
	seq          uint64
	sendDontHave bool
	state        wantState
	dontHaveSent bool // a DONT_HAVE went out and nothing changed since
	// haveOnly: we said DONT_HAVE and the block arrived later. The client
	// has most likely asked another peer since, so unless the block is
	// small it hears HAVE rather than get a block it may already have; if
	// it still wants the block from us it asks again.
	haveOnly bool
	index    int32 // position in the unchecked heap; -1 when not in it
	// peer is whose want this is, so that eviction from core.parked finds
	// the wantlist to forget it from.
	peer peer.ID
	// prev and next link w into core.parked while it is parked (older,
	// newer); nil otherwise.
	prev, next *want
	// sameHash links the wants of all peers for w's multihash, oldest
	// first, from core.byHash: no allocation per want for the index, and
	// the struct stays in the 80-byte size class.
	sameHash *want
}

// peerWants is one peer's inbound wantlist.
type peerWants struct {
	wants     map[cid.Cid]*want
	unchecked pq.Heap[*want]
	// active counts wants checking or queued. It is capped by
	// maxActivePerPeer so that blockstore lookups and the task queue stay
	// small however many wants a peer sends; the rest wait, cheaply, as
	// unchecked. Parked wants are not active, so wants for blocks we lack
	// can never fill the cap and wedge the peer's other wants.
	active int
	// sendFailures counts consecutive failed sends to this peer.
	sendFailures int
	// rank is pw's position in core.byCount.
	rank int
	// sending holds, by CID, the latest task popped and not yet reported
	// done, with its want, so that a failed send restores the want as it
	// was. A cancel (or a full wantlist without the CID) deletes the entry:
	// what the peer cancelled while we were sending stays cancelled.
	sending map[cid.Cid]inFlight
}

// inFlight is a popped task and the want it answers.
type inFlight struct {
	t *task
	w *want
}

// lookup asks the driver to check the blockstore for one want.
type lookup struct {
	cid cid.Cid
	seq uint64
}

// lookupResult is the answer to a lookup.
type lookupResult struct {
	lookup
	have bool // the block is there and the peer may have it
	size int  // block size when have
	err  error
}

// effects is what the core asks of whoever drives it after a call, as
// data, so that one driver carries it out for the Engine and the tests
// alike: which peers have unchecked wants to look up (a blockstore read
// each, which the core cannot do), and whether waiting workers should wake
// because the task queue may have a turn ready.
type effects struct {
	lookup []peer.ID
	ready  bool
}

// lookupsDue is the effect of a call that may have left p with unchecked
// wants.
func lookupsDue(p peer.ID, pw *peerWants) effects {
	if pw.unchecked.Len() == 0 {
		return effects{}
	}
	return effects{lookup: []peer.ID{p}}
}

// limits bound what peers can make the server hold.
type limits struct {
	maxWantsPerPeer  int // entries held per peer, in any state
	maxWantsTotal    int // entries held for all peers together
	maxActivePerPeer int // entries checking or queued per peer
	maxCidSize       int // bytes of one CID
	maxReplaceSize   int // want-have for a block this small gets the block
	maxOutstanding   int // bytes in flight per peer
	maxSendFailures  int // consecutive failed sends before a peer's wants are dropped
	maxParked        int // parked entries held for all peers together, oldest evicted; 0: no cap
}

// core is the server's decision logic over plain data: inbound wantlists,
// the task queue, and what to do with each want. It does no I/O, reads no
// clock and takes no locks, so tests can drive it step by step; it is fed
// messages, lookup results and sends, and returns what to do next as
// effects, which the driver carries out.
type core struct {
	limits
	peers map[peer.ID]*peerWants
	// byHash finds the wants for a multihash across peers, so a block that
	// arrives under CIDv0 also serves a want for its CIDv1.
	byHash map[string]*want
	// byCount orders the peers by wants held, most first: over
	// maxWantsTotal, a new want displaces one of the top peer's.
	byCount pq.Heap[*peerWants]
	total   int
	seq     uint64
	tq      *taskQueue
	// parked holds every parked want, of all peers, in the order they were
	// parked, so that past maxParked the oldest is evicted in O(1).
	parked parkedList

	// counters
	droppedWants  uint64 // wants refused by a limit
	oversized     uint64 // of them, wants refused for a CID over maxCidSize
	evictedWants  uint64 // parked wants forgotten over maxParked
	displaced     uint64 // unchecked wants forgotten over maxWantsTotal for a peer holding fewer
	blockstoreErr uint64

	// touched lists peers other than the one a call was about whose work
	// the call may have changed (a peer whose want makeRoom displaced),
	// for the driver to bring their tags in line; it empties the list.
	touched []peer.ID

	// recordEvicted makes evict append to evicted, for FuzzCore's model.
	// Tests only: production never sets it, so nothing accumulates.
	recordEvicted bool
	evicted       []*want
	displacedLog  []displacement
}

// displacement is one want forgotten to make room for another, for
// FuzzCore's model.
type displacement struct {
	victim *want
	for_   wantRef
}

type wantRef struct {
	peer peer.ID
	cid  cid.Cid
}

func newCore(l limits) *core {
	return &core{
		limits: l,
		peers:  make(map[peer.ID]*peerWants),
		byHash: make(map[string]*want),
		tq:     newTaskQueue(l.maxOutstanding),
	}
}

// receive applies an inbound wantlist. Its effect is p's lookups, if it
// has wants that need one.
func (c *core) receive(p peer.ID, full bool, entries []message.Entry) effects {
	pw := c.peers[p]
	if full && pw != nil {
		keep := make(map[cid.Cid]struct{}, len(entries))
		for _, e := range entries {
			if !e.Cancel {
				keep[e.Cid] = struct{}{}
			}
		}
		for k := range pw.wants {
			if _, ok := keep[k]; !ok {
				c.cancel(p, pw, k)
			}
		}
		for k := range pw.sending {
			if _, ok := keep[k]; !ok {
				delete(pw.sending, k)
			}
		}
	}
	for _, e := range entries {
		if e.Cancel {
			if pw != nil {
				c.cancel(p, pw, e.Cid)
			}
			continue
		}
		if e.Cid.ByteLen() > c.maxCidSize {
			c.droppedWants++
			c.oversized++
			continue
		}
		if pw == nil {
			pw = &peerWants{wants: make(map[cid.Cid]*want)}
			c.peers[p] = pw
			c.byCount.Push(pw)
		}
		if w := pw.wants[e.Cid]; w != nil {
			c.update(p, pw, w, e)
			continue
		}
		c.add(p, pw, &want{cid: e.Cid, priority: e.Priority, wantType: e.WantType, sendDontHave: e.SendDontHave}, true)
	}
	if pw == nil {
		return effects{}
	}
	c.gcPeer(p, pw)
	return lookupsDue(p, pw)
}

// add makes w, new or restored, one of p's unchecked wants, as far as the
// limits allow. A new want (displace) over the total cap takes the place of
// one of the peer holding the most (see makeRoom).
func (c *core) add(p peer.ID, pw *peerWants, w *want, displace bool) {
	if len(pw.wants) >= c.maxWantsPerPeer ||
		c.total >= c.maxWantsTotal && !(displace && c.makeRoom(p, pw, w.cid)) {
		c.droppedWants++
		return
	}
	c.seq++
	w.seq, w.state, w.dontHaveSent = c.seq, wantUnchecked, false
	w.peer = p
	pw.wants[w.cid] = w
	c.byCount.Fix(pw.rank)
	c.total++
	w.sameHash = nil
	h := hashKey(w.cid)
	if head := c.byHash[h]; head == nil {
		c.byHash[h] = w
	} else {
		for head.sameHash != nil {
			head = head.sameHash
		}
		head.sameHash = w
	}
	pw.unchecked.Push(w)
}

// makeRoom forgets one unchecked want of the peer holding the most, if it
// holds at least two more than p, so that p's want k fits under the total
// cap; it reports whether it did. Peers that flood us with wants thus fill
// the total only until others ask: each peer keeps at least an equal
// share, and one asking for a few blocks is never locked out by many
// peers asking for thousands. The victim is the last of its unchecked
// heap (a leaf: never its most urgent) and was never looked up: its peer
// hears nothing, as with any want over a cap. Wants being looked up,
// queued or parked are not displaced: parked wants have their own cap,
// and active ones theirs per peer.
func (c *core) makeRoom(p peer.ID, pw *peerWants, k cid.Cid) bool {
	top := c.byCount.At(0)
	if len(top.wants) < len(pw.wants)+2 || top.unchecked.Len() == 0 {
		return false
	}
	w := top.unchecked.Remove(top.unchecked.Len() - 1)
	c.forget(w.peer, top, w) // top keeps at least one want: no gcPeer
	c.touched = append(c.touched, w.peer)
	c.displaced++
	if c.recordEvicted {
		c.displacedLog = append(c.displacedLog, displacement{victim: w, for_: wantRef{p, k}})
	}
	return true
}

// update applies a want for a CID the peer already wants. A changed request,
// or a repeat of one we could not answer before, is looked up afresh: clients
// repeat wants when they heard nothing, and a lookup is cheap.
func (c *core) update(p peer.ID, pw *peerWants, w *want, e message.Entry) {
	changed := w.wantType != e.WantType || w.sendDontHave != e.SendDontHave
	w.wantType, w.sendDontHave = e.WantType, e.SendDontHave
	if w.priority != e.Priority {
		w.priority = e.Priority
		if w.index >= 0 {
			pw.unchecked.Fix(int(w.index))
		}
	}
	if !changed && w.state != wantParked {
		return
	}
	switch w.state {
	case wantQueued:
		c.tq.remove(p, w.cid)
		pw.active--
	case wantChecking:
		// The lookup result will be ignored: it carries the old seq.
		pw.active--
	case wantUnchecked:
		return
	}
	w.haveOnly = false // asked again: serve it as asked
	c.recheck(pw, w)
}

// recheck makes w, parked or active (and no longer counted so), unchecked
// again; lookup results and tasks for it carry the old seq.
func (c *core) recheck(pw *peerWants, w *want) {
	c.parked.remove(w)
	c.seq++
	w.seq = c.seq
	w.dontHaveSent = false
	w.state = wantUnchecked
	pw.unchecked.Push(w)
}

// cancel forgets p's want for k.
func (c *core) cancel(p peer.ID, pw *peerWants, k cid.Cid) {
	delete(pw.sending, k)
	w := pw.wants[k]
	if w == nil {
		return
	}
	switch w.state {
	case wantQueued:
		c.tq.recall(p, k)
		pw.active--
	case wantChecking:
		pw.active--
	case wantUnchecked:
		pw.unchecked.Remove(int(w.index))
	}
	c.forget(p, pw, w)
}

// forget drops w from p's wantlist, the hash index and, if it is parked,
// the parked list.
func (c *core) forget(p peer.ID, pw *peerWants, w *want) {
	c.parked.remove(w)
	delete(pw.wants, w.cid)
	c.byCount.Fix(pw.rank)
	c.total--
	// Unlinked in place, so that the order of wakings (and the seqs they
	// hand out) does not depend on the order of forgetting.
	h := hashKey(w.cid)
	if head := c.byHash[h]; head == w {
		if w.sameHash == nil {
			delete(c.byHash, h)
		} else {
			c.byHash[h] = w.sameHash
		}
	} else {
		for ; head != nil; head = head.sameHash {
			if head.sameHash == w {
				head.sameHash = w.sameHash
				break
			}
		}
	}
	w.sameHash = nil
}

// nextLookups moves up to max of p's unchecked wants, highest priority
// first, to checking, as far as p's active cap allows.
func (c *core) nextLookups(p peer.ID, max int) []lookup {
	pw := c.peers[p]
	if pw == nil {
		return nil
	}
	n := min(c.maxActivePerPeer-pw.active, pw.unchecked.Len(), max)
	if n <= 0 {
		return nil
	}
	out := make([]lookup, 0, n)
	for range n {
		w := pw.unchecked.Pop()
		w.state = wantChecking
		pw.active++
		out = append(out, lookup{cid: w.cid, seq: w.seq})
	}
	return out
}

// lookupDone decides, for each looked-up want still current, what to send:
// the block, HAVE or DONT_HAVE; or parks it. Its effects: ready if tasks
// were queued, and p's next lookups while it has unchecked wants (parking
// frees active slots).
func (c *core) lookupDone(p peer.ID, results []lookupResult) effects {
	pw := c.peers[p]
	if pw == nil {
		return effects{}
	}
	queued := false
	for _, r := range results {
		w := pw.wants[r.cid]
		if w == nil || w.seq != r.seq || w.state != wantChecking {
			continue // cancelled or changed while we looked
		}
		if r.err != nil {
			c.blockstoreErr++
		}
		t := &task{cid: w.cid, priority: w.priority, seq: w.seq}
		switch {
		case r.have && ((w.wantType == message.WantBlock && !w.haveOnly) || r.size <= c.maxReplaceSize):
			// Size at least 1 so an empty block still counts as in flight.
			t.kind, t.size = sendBlock, max(r.size, 1)
		case r.have:
			t.kind, t.size = sendHave, w.cid.ByteLen()
		case r.err == nil && w.sendDontHave && !w.dontHaveSent:
			t.kind, t.size = sendDontHave, w.cid.ByteLen()
		default:
			// Keep the want: NotifyNewBlocks may bring the block later.
			// Parking may evict the oldest parked want, of any peer,
			// p's included; never w, the newest, and never p itself,
			// which still holds w. Nothing here ranges over what
			// eviction changes (wantlists, the hash index).
			pw.active--
			c.park(w)
			continue
		}
		w.state = wantQueued
		c.tq.push(p, t)
		queued = true
	}
	eff := lookupsDue(p, pw)
	eff.ready = queued
	return eff
}

// pop takes the next peer's turn from the task queue and settles the wants
// it answers: served wants leave the wantlist, a DONT_HAVE parks its want.
func (c *core) pop(target int) (p peer.ID, tasks []*task, pending int, ok bool) {
	p, tasks, pending, ok = c.tq.pop(target)
	if !ok {
		return
	}
	pw := c.peers[p]
	if pw.sending == nil {
		pw.sending = make(map[cid.Cid]inFlight)
	}
	for _, t := range tasks {
		w := pw.wants[t.cid]
		if w == nil || w.seq != t.seq {
			continue // cannot happen: cancels and updates unqueue their task
		}
		pw.sending[t.cid] = inFlight{t, w}
		pw.active--
		if t.kind == sendDontHave {
			// Parking may evict a parked want of p, even one whose
			// DONT_HAVE is in this turn; gcPeer leaves p alone while
			// pw.sending holds the turn, so pw stays valid.
			w.dontHaveSent = true
			c.park(w)
			continue
		}
		c.forget(p, pw, w)
	}
	c.gcPeer(p, pw)
	return
}

// done reports that popped tasks were sent (sent=true; also when nothing
// was left to send) or failed. After repeated failures the peer's wantlist
// is dropped; otherwise the wants of a failed send are restored as they
// were, so that nothing the peer asked for is lost, unless the peer has
// cancelled them meanwhile, or asked for them again (that want stands).
// Its effects: ready if the task queue has a turn ready (the peer's
// outstanding bytes went down, so it may go again), and p's lookups while
// it has unchecked wants (popping freed active slots, and restored wants
// need one).
func (c *core) done(p peer.ID, tasks []*task, sent bool) effects {
	c.tq.done(p, tasks)
	pw := c.peers[p]
	if pw == nil {
		return effects{ready: c.tq.ready()} // the peer left while we were sending
	}
	var failed []inFlight
	for _, t := range tasks {
		if f, ok := pw.sending[t.cid]; ok && f.t == t {
			delete(pw.sending, t.cid)
			failed = append(failed, f)
		}
	}
	switch {
	case sent:
		pw.sendFailures = 0
	case pw.sendFailures+1 >= c.maxSendFailures:
		c.removePeer(p)
		return effects{ready: c.tq.ready()}
	default:
		pw.sendFailures++
		for _, f := range failed {
			switch cur := pw.wants[f.t.cid]; {
			case cur == nil:
				c.add(p, pw, f.w, false) // served by this send: back, as it was
			case cur == f.w && cur.seq == f.t.seq:
				c.recheck(pw, cur) // parked by this DONT_HAVE: say it again
			}
		}
	}
	c.gcPeer(p, pw)
	eff := lookupsDue(p, pw)
	eff.ready = c.tq.ready()
	return eff
}

// blocksArrived wakes parked wants for the given blocks. Its effect is the
// lookups of the peers they belong to, each named once.
func (c *core) blocksArrived(keys []cid.Cid) effects {
	var out []peer.ID
	seen := make(map[peer.ID]struct{})
	for _, k := range keys {
		for w := c.byHash[hashKey(k)]; w != nil; w = w.sameHash {
			pw := c.peers[w.peer]
			if w.state != wantParked {
				continue
			}
			c.parked.remove(w)
			c.seq++
			w.seq = c.seq
			w.state = wantUnchecked
			w.haveOnly = w.dontHaveSent
			w.dontHaveSent = false
			pw.unchecked.Push(w)
			if _, ok := seen[w.peer]; !ok {
				seen[w.peer] = struct{}{}
				out = append(out, w.peer)
			}
		}
	}
	return effects{lookup: out}
}

// removePeer forgets everything about p.
func (c *core) removePeer(p peer.ID) {
	pw := c.peers[p]
	if pw != nil {
		for _, w := range pw.wants {
			c.forget(p, pw, w)
		}
		c.byCount.Remove(pw.rank)
		delete(c.peers, p)
	}
	c.tq.clear(p)
}

// park makes w, checking or queued until now, parked, and evicts the
// oldest parked want if that takes the parked list over maxParked. Parked
// wants are what a peer can make us hold for nothing: wants for blocks we
// lack cost memory until the peer cancels them or leaves, and many peers
// can park up to MaxWantsPerPeer each, so maxParked bounds them for all
// peers together without lowering maxWantsTotal, which would refuse
// honest peers' new wants once others filled it. The oldest go first: a
// want unanswered longest is the least likely to be served.
func (c *core) park(w *want) {
	w.state = wantParked
	c.parked.push(w)
	// w is the newest: with maxParked >= 1 the loop stops before it.
	for c.maxParked > 0 && c.parked.n > c.maxParked {
		c.evict(c.parked.head)
	}
}

// evict forgets the parked want w as if its peer had cancelled it: the
// peer heard DONT_HAVE if it asked for one (or will: a DONT_HAVE in flight
// stays in pw.sending, so a failed send restores the want and says it
// again), and loses only the notice if the block arrives later; a peer
// that asks again gets a fresh lookup. The peer is forgotten if that was
// all it held.
func (c *core) evict(w *want) {
	p := w.peer
	pw := c.peers[p]
	c.forget(p, pw, w)
	c.evictedWants++
	if c.recordEvicted {
		c.evicted = append(c.evicted, w)
	}
	c.gcPeer(p, pw)
}

// parkedList is a doubly-linked list of parked wants, linked through the
// wants' prev and next, oldest first: O(1) to add, remove and evict, and
// no allocation per want.
type parkedList struct {
	head, tail *want // oldest, newest
	n          int
}

func (l *parkedList) contains(w *want) bool { return w.prev != nil || l.head == w }

// push adds w, which must not be in the list, as the newest.
func (l *parkedList) push(w *want) {
	w.prev, w.next = l.tail, nil
	if l.tail != nil {
		l.tail.next = w
	} else {
		l.head = w
	}
	l.tail = w
	l.n++
}

// remove takes w out of the list if it is in it, and clears its links, so
// that a want restored or parked again later starts unlinked.
func (l *parkedList) remove(w *want) {
	if !l.contains(w) {
		return
	}
	if w.prev != nil {
		w.prev.next = w.next
	} else {
		l.head = w.next
	}
	if w.next != nil {
		w.next.prev = w.prev
	} else {
		l.tail = w.prev
	}
	w.prev, w.next = nil, nil
	l.n--
}

// gcPeer forgets p once it wants nothing and nothing of it is in flight
// (a failed send must still find the peer to restore its wants).
func (c *core) gcPeer(p peer.ID, pw *peerWants) {
	if len(pw.wants) == 0 && pw.active == 0 && pw.sendFailures == 0 && len(pw.sending) == 0 && c.tq.peers[p] == nil {
		if pw.rank >= 0 && c.peers[p] == pw {
			c.byCount.Remove(pw.rank)
		}
		delete(c.peers, p)
	}
}

// wantlist returns the CIDs p currently wants from us.
func (c *core) wantlist(p peer.ID) []cid.Cid {
	pw := c.peers[p]
	if pw == nil {
		return nil
	}
	out := make([]cid.Cid, 0, len(pw.wants))
	for k := range pw.wants {
		out = append(out, k)
	}
	return out
}

// Less orders unchecked wants by priority (higher first), then arrival.
func (w *want) Less(o *want) bool {
	if w.priority != o.priority {
		return w.priority > o.priority
	}
	return w.seq < o.seq
}

// SetIndex records w's position in the unchecked queue.
func (w *want) SetIndex(i int) { w.index = int32(i) }

// Less orders peers by wants held, most first.
func (pw *peerWants) Less(o *peerWants) bool { return len(pw.wants) > len(o.wants) }

// SetIndex records pw's position in core.byCount.
func (pw *peerWants) SetIndex(i int) { pw.rank = i }

// hashKey is c's multihash as a string that shares c's own bytes: the key
// of byHash, without the allocation that string(c.Hash()) costs for every
// want held.
func hashKey(c cid.Cid) string {
	s := c.KeyString()
	if c.Version() == 0 {
		return s // a CIDv0 is its multihash
	}
	i := 0
	for range 2 { // version and codec, uvarints
		for i < len(s) && s[i]&0x80 != 0 {
			i++
		}
		i++
	}
	return s[min(i, len(s)):]
}

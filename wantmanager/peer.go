package wantmanager

import (
	"context"
	"math"
	"slices"

	"github.com/gobitswap/bitswap/internal/pq"
	"github.com/gobitswap/bitswap/message"
	cid "github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
)

// want is what a reference asks for, or what a peer holds. Later values
// ask for more, so max combines references.
type want uint8

const (
	wantNone want = iota
	wantHave
	wantBlock
)

// ref is one session's reference to a (peer, CID) want.
type ref struct {
	s SessionID
	w want
}

// entry is one CID in one peer's wantlist. It exists while a session refers
// to it or while the
// peer holds it and its cancel has not been sent.
type entry struct {
	c    cid.Cid
	refs []ref // direct references, at most one per session
	// sent is what the peer's server holds of ours for c, as it went on the
	// wire (want-block for a want-have to a peer before 1.2.0): wantNone if
	// nothing (never sent, answered, cancelled, or the peer reconnected).
	sent want
	// seq orders the entry in its peer's queue; set when queued.
	seq uint64
	// index is the entry's position in its peer's queue, -1 if not queued.
	index int
	// dirty marks the entry as listed in its peer's dirty list.
	dirty bool
}

// peerState is our wantlist for one peer. Guarded by WantManager.mu.
type peerState struct {
	id peer.ID
	// conn is the current connection, nil when not connected.
	conn    *conn
	entries map[cid.Cid]*entry
	// queue holds the entries waiting for a window slot: wanted, not held
	// by the peer.
	queue pq.Heap[*entry]
	// dirty lists entries the peer holds that need a cancel or an upgrade
	// to want-block; these are sent whatever the window. It may list entries
	// removed since, which are skipped.
	dirty []*entry
	// outstanding counts entries with sent != wantNone.
	outstanding int
	// blocksOut counts entries with sent == wantBlock: the blocks the peer
	// may be sending us.
	blocksOut int
	// protected is whether the Protector was last told to protect the
	// peer (see syncProtect).
	protected bool
}

// setSent records that the peer's server now holds t (wantNone: nothing)
// of ours for e, keeping the peer's counts.
func (ps *peerState) setSent(e *entry, t want) {
	if e.sent != wantNone {
		ps.outstanding--
	}
	if e.sent == wantBlock {
		ps.blocksOut--
	}
	e.sent = t
	if t != wantNone {
		ps.outstanding++
	}
	if t == wantBlock {
		ps.blocksOut++
	}
}

// syncProtect protects the peer while it holds a want-block of ours (it may
// be sending us that block) and unprotects it once it holds none; the
// Protector hears only the changes. Called with mu held after anything
// that may change blocksOut, so that the calls keep the order of the
// changes.
func (wm *WantManager) syncProtect(ps *peerState) {
	if wm.protector == nil {
		return
	}
	switch want := ps.blocksOut > 0; {
	case want && !ps.protected:
		wm.protector.Protect(ps.id, wm.protectTag)
	case !want && ps.protected:
		wm.protector.Unprotect(ps.id, wm.protectTag)
	default:
		return
	}
	ps.protected = !ps.protected
}

// conn is one connection to a peer, served by one sender goroutine. Its
// fields other than ctx, cancel and wake are guarded by WantManager.mu.
type conn struct {
	ctx    context.Context
	cancel context.CancelFunc
	// wake has one slot; a value in it means "there may be work". It
	// carries no data.
	wake chan struct{}

	// version is the peer's protocol version, valid once anything has been
	// taken for sending.
	version message.Version
	// full marks the next message as a full wantlist.
	full bool
	// mustSend makes the next message go out even if it is empty, so that
	// a full wantlist replaces what the peer may hold after a failed send.
	mustSend bool
}

// signal wakes the peer's sender goroutine, if it is connected.
func (ps *peerState) signal() {
	if ps.conn == nil {
		return
	}
	select {
	case ps.conn.wake <- struct{}{}:
	default:
	}
}

// peer returns p's state, creating it.
func (wm *WantManager) peer(p peer.ID) *peerState {
	ps := wm.peers[p]
	if ps == nil {
		ps = &peerState{id: p, entries: make(map[cid.Cid]*entry)}
		wm.peers[p] = ps
	}
	return ps
}

// forgetIfIdle drops ps when it is neither connected nor wanted from.
func (wm *WantManager) forgetIfIdle(ps *peerState) {
	if ps.conn == nil && len(ps.entries) == 0 && wm.peers[ps.id] == ps {
		delete(wm.peers, ps.id)
	}
}

// entry returns ps's entry for c, creating an empty one.
func (ps *peerState) entry(c cid.Cid) *entry {
	e := ps.entries[c]
	if e == nil {
		e = &entry{c: c, index: -1}
		ps.entries[c] = e
	}
	return e
}

// info returns what is known of c, giving it the next sequence number if it
// is new.
func (wm *WantManager) info(c cid.Cid) *cidInfo {
	info := wm.cids[c]
	if info == nil {
		info = &cidInfo{seq: wm.seq}
		wm.seq++
		wm.cids[c] = info
	}
	return info
}

// forgetIfUnwanted drops c's info when no session refers to it.
func (wm *WantManager) forgetIfUnwanted(c cid.Cid) {
	if info := wm.cids[c]; info != nil && info.direct == 0 {
		delete(wm.cids, c)
	}
}

// addRef records that s wants w at e; a session's reference keeps the most
// it has asked for.
func (wm *WantManager) addRef(e *entry, s SessionID, w want) {
	info := wm.info(e.c)
	for i := range e.refs {
		if e.refs[i].s == s {
			e.refs[i].w = max(e.refs[i].w, w)
			return
		}
	}
	if len(e.refs) == 0 {
		info.direct++
	}
	e.refs = append(e.refs, ref{s: s, w: w})
}

// dropRef removes s's direct reference at e, reporting whether it had one.
func (wm *WantManager) dropRef(e *entry, s SessionID) bool {
	i := slices.IndexFunc(e.refs, func(r ref) bool { return r.s == s })
	if i < 0 {
		return false
	}
	e.refs = deleteAt(e.refs, i)
	if len(e.refs) == 0 {
		e.refs = nil
		if info := wm.cids[e.c]; info != nil {
			info.direct--
			wm.forgetIfUnwanted(e.c)
		}
	}
	return true
}

// wanted is the type the references at e ask of its peer: want-block if any
// reference wants the block, else want-have if any reference exists.
func (wm *WantManager) wanted(e *entry) want {
	w := wantNone
	for _, r := range e.refs {
		w = max(w, r.w)
	}
	return w
}

// enqueue queues e for sending if it is wanted and the peer holds nothing
// for it.
func (wm *WantManager) enqueue(ps *peerState, e *entry) {
	if e.index >= 0 || e.sent != wantNone || wm.wanted(e) == wantNone {
		return
	}
	e.seq = wm.cids[e.c].seq
	ps.queue.Push(e)
}

// settle brings e in line with its references after they changed: an
// unwanted entry leaves the queue and is cancelled if the peer holds it, or
// forgotten; an entry the peer holds as a want-have and that is now wanted
// as a block is marked for an upgrade. It never queues: a want goes out
// again only when asked again (see enqueue).
func (wm *WantManager) settle(ps *peerState, e *entry) {
	w := wm.wanted(e)
	switch {
	case w == wantNone && e.sent == wantNone:
		ps.remove(e)
	case w == wantNone:
		ps.unqueue(e)
		ps.markDirty(e)
	case e.sent != wantNone && w > e.sent:
		ps.markDirty(e)
	}
}

// answered records that the peer has answered e's want (with a block, or
// with a HAVE when have is true) and forgotten it.
func (wm *WantManager) answered(ps *peerState, e *entry, have bool) {
	ps.setSent(e, wantNone)
	w := wm.wanted(e)
	switch {
	case w == wantNone:
		ps.remove(e)
	case have && w == wantBlock:
		// An upgrade was waiting to go out; the want-have it would have
		// replaced is gone, so it needs a slot of its own.
		wm.enqueue(ps, e)
	}
}

// disconnect stops ps's connection and forgets what its server held.
func (wm *WantManager) disconnect(ps *peerState) {
	ps.conn.cancel()
	ps.conn = nil
	wm.reset(ps)
	wm.syncProtect(ps)
}

// reset forgets everything ps's server held of ours: entries no session
// refers to go, the others are unsent.
func (wm *WantManager) reset(ps *peerState) {
	for _, e := range ps.entries {
		e.sent = wantNone
		e.dirty = false
		if wm.wanted(e) == wantNone {
			ps.remove(e)
		}
	}
	clear(ps.dirty)
	ps.dirty = ps.dirty[:0]
	ps.outstanding = 0
	ps.blocksOut = 0
}

// requeue queues every wanted entry of ps that its server does not hold.
func (wm *WantManager) requeue(ps *peerState) {
	for _, e := range ps.entries {
		wm.enqueue(ps, e)
	}
}

// remove forgets e.
func (ps *peerState) remove(e *entry) {
	ps.unqueue(e)
	if ps.entries[e.c] == e {
		delete(ps.entries, e.c)
	}
}

// unqueue takes e out of the queue if it is there.
func (ps *peerState) unqueue(e *entry) {
	if e.index >= 0 {
		ps.queue.Remove(e.index)
	}
}

// markDirty lists e for the sender to look at whatever the window.
func (ps *peerState) markDirty(e *entry) {
	if !e.dirty {
		e.dirty = true
		ps.dirty = append(ps.dirty, e)
	}
}

// batch is what one wake of a sender sends.
type batch struct {
	full    bool
	entries []message.Entry
	// waiting is how many of the peer's wants were left in its queue,
	// waiting for a window slot, once entries were taken.
	waiting int
}

// take returns what c's peer should be sent now, at version v, and records
// it as sent: first the cancels and upgrades, then as many queued wants as
// the window allows, in sequence order. ok is false when there is nothing
// to send or c is no longer the peer's connection.
func (wm *WantManager) take(ps *peerState, c *conn, v message.Version) (b batch, ok bool) {
	wm.mu.Lock()
	defer wm.mu.Unlock()
	if ps.conn != c {
		return batch{}, false
	}
	c.version = v
	for _, e := range ps.dirty {
		e.dirty = false
		if ps.entries[e.c] != e || e.sent == wantNone {
			continue
		}
		w := wm.wanted(e)
		if w == wantNone {
			b.entries = append(b.entries, message.Entry{Cid: e.c, Cancel: true})
			ps.setSent(e, wantNone)
			ps.remove(e)
		} else if t := wireType(w, v); t > e.sent {
			b.entries = append(b.entries, wantEntry(e, t, v))
			ps.setSent(e, t)
		}
	}
	clear(ps.dirty)
	ps.dirty = ps.dirty[:0]
	for ps.outstanding < wm.window && ps.queue.Len() > 0 {
		e := ps.queue.Pop()
		t := wireType(wm.wanted(e), v)
		b.entries = append(b.entries, wantEntry(e, t, v))
		ps.setSent(e, t)
	}
	wm.syncProtect(ps)
	if len(b.entries) == 0 && !c.mustSend {
		return batch{}, false
	}
	b.full = c.full
	b.waiting = ps.queue.Len()
	c.full, c.mustSend = false, false
	return b, true
}

// sendFailed handles a failed send on c: what the peer holds is unknown, so
// everything it should hold is queued again, to go out as a full wantlist
// at the next wake (which the failure itself does not cause, so a peer that
// cannot be reached costs no busy loop).
func (wm *WantManager) sendFailed(ps *peerState, c *conn) {
	wm.mu.Lock()
	defer wm.mu.Unlock()
	if ps.conn != c {
		return
	}
	wm.reset(ps)
	wm.syncProtect(ps)
	wm.requeue(ps)
	c.full, c.mustSend = true, true
}

// wireType is what a want of type w is sent as to a peer speaking v:
// peers before 1.2.0 know only want-block.
func wireType(w want, v message.Version) want {
	if !v.SupportsHave() {
		return wantBlock
	}
	return w
}

// wantEntry is the wire entry asking for t (not wantNone) of e at version v.
func wantEntry(e *entry, t want, v message.Version) message.Entry {
	me := message.Entry{Cid: e.c, Priority: priority(e.seq), WantType: message.WantBlock}
	if t == wantHave {
		me.WantType = message.WantHave
	}
	me.SendDontHave = v.SupportsHave()
	return me
}

// priority is the wire priority of the CID with sequence number seq:
// MaxInt32 for the first, decreasing by one for each later CID, wrapping
// back to MaxInt32 after 2^31-1 of them, so always at least 1.
func priority(seq uint64) int32 {
	return int32(math.MaxInt32 - seq%math.MaxInt32)
}

// Less orders queued entries by seq, oldest first.
func (e *entry) Less(o *entry) bool { return e.seq < o.seq }

// SetIndex records e's position in its peer's queue.
func (e *entry) SetIndex(i int) { e.index = i }

func sortBySeq(es []*entry) {
	slices.SortFunc(es, func(a, b *entry) int {
		switch {
		case a.seq < b.seq:
			return -1
		case a.seq > b.seq:
			return 1
		}
		return 0
	})
}

// deleteAt removes s[i], not keeping order.
func deleteAt[T any](s []T, i int) []T {
	last := len(s) - 1
	s[i] = s[last]
	var zero T
	s[last] = zero
	return s[:last]
}

package network

import (
	"sync"

	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// eventQueue carries "look at this peer again" marks from libp2p's
// notification goroutines, the identify event reader and the stream code to
// the event goroutine. Marking never blocks, so libp2p's notifier is never
// held up by a slow Receiver. It holds at most one entry per peer (marks
// coalesce), so it is bounded by the number of peers libp2p lets connect,
// and entries keep the order in which peers were first marked.
type eventQueue struct {
	mu      sync.Mutex
	order   []peer.ID
	pending map[peer.ID]*peerMark
	wake    chan struct{} // capacity 1: "the queue is not empty"
}

// peerMark is what is pending for one peer.
type peerMark struct {
	// stream is set when a Bitswap stream was opened with the peer, which
	// proves it speaks Bitswap even before identify says so.
	stream bool
	// waiters are inbound stream handlers waiting for the peer to have been
	// reported before they deliver messages. Each gets true if the peer is
	// connected (and so reported), false if it is already gone.
	waiters []chan bool
}

func (q *eventQueue) init() {
	q.pending = make(map[peer.ID]*peerMark)
	q.wake = make(chan struct{}, 1)
}

// mark queues p to be examined by the event goroutine.
func (q *eventQueue) mark(p peer.ID, stream bool, waiter chan bool) {
	q.mu.Lock()
	m, ok := q.pending[p]
	if !ok {
		m = &peerMark{}
		q.pending[p] = m
		q.order = append(q.order, p)
	}
	m.stream = m.stream || stream
	if waiter != nil {
		m.waiters = append(m.waiters, waiter)
	}
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// take removes and returns everything pending, in order.
func (q *eventQueue) take() ([]peer.ID, map[peer.ID]*peerMark) {
	q.mu.Lock()
	defer q.mu.Unlock()
	order, pending := q.order, q.pending
	q.order, q.pending = nil, make(map[peer.ID]*peerMark)
	return order, pending
}

// runEvents is the event goroutine. It alone owns the set of reported
// peers, and it alone calls PeerConnected and PeerDisconnected, so those
// calls are made one at a time and in order.
func (n *Libp2pNetwork) runEvents() {
	reported := make(map[peer.ID]struct{})
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-n.events.wake:
		}
		order, pending := n.events.take()
		for _, p := range order {
			if n.ctx.Err() != nil {
				return
			}
			n.reconcile(reported, p, pending[p])
		}
	}
}

// reconcile compares what libp2p says about p now with what was reported
// and reports the difference (see the rule on Libp2pNetwork).
func (n *Libp2pNetwork) reconcile(reported map[peer.ID]struct{}, p peer.ID, m *peerMark) {
	connected := n.host.Network().Connectedness(p) == network.Connected
	_, was := reported[p]
	switch {
	case !connected:
		if was {
			delete(reported, p)
			n.receiver.PeerDisconnected(p)
		}
		n.dropSender(p)
		n.forgetGuard(p)
	case !was && (m.stream || n.speaksBitswap(p)):
		reported[p] = struct{}{}
		n.receiver.PeerConnected(p)
	}
	for _, w := range m.waiters {
		w <- connected // buffered: never blocks
	}
}

// speaksBitswap reports whether the peerstore lists an enabled Bitswap
// protocol for p.
func (n *Libp2pNetwork) speaksBitswap(p peer.ID) bool {
	ids, err := n.host.Peerstore().SupportsProtocols(p, n.protos...)
	return err == nil && len(ids) > 0
}

// awaitReported marks p as having opened a Bitswap stream and waits until
// the event goroutine has reported it connected. It returns false if p is
// no longer connected or the network is stopping.
func (n *Libp2pNetwork) awaitReported(p peer.ID) bool {
	w := make(chan bool, 1)
	n.events.mark(p, true, w)
	select {
	case ok := <-w:
		return ok
	case <-n.ctx.Done():
		return false
	}
}

// readBus turns identify events into marks. It reads until Stop closes
// the subscription, so the event bus never blocks on us.
func (n *Libp2pNetwork) readBus(sub event.Subscription) {
	for e := range sub.Out() {
		switch e := e.(type) {
		case event.EvtPeerIdentificationCompleted:
			n.events.mark(e.Peer, false, nil)
		case event.EvtPeerProtocolsUpdated:
			n.events.mark(e.Peer, false, nil)
		}
	}
}

// notifiee receives libp2p's connection notifications. Its methods only
// queue marks: libp2p calls them synchronously and must not be blocked.
type notifiee Libp2pNetwork

func (nn *notifiee) Connected(_ network.Network, c network.Conn) {
	(*Libp2pNetwork)(nn).events.mark(c.RemotePeer(), false, nil)
}

func (nn *notifiee) Disconnected(_ network.Network, c network.Conn) {
	(*Libp2pNetwork)(nn).events.mark(c.RemotePeer(), false, nil)
}

func (nn *notifiee) Listen(network.Network, ma.Multiaddr)      {}
func (nn *notifiee) ListenClose(network.Network, ma.Multiaddr) {}

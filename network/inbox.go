package network

import (
	"fmt"
	"sync"

	"github.com/gobitswap/bitswap/message"
	"github.com/libp2p/go-libp2p/core/peer"
)

// maxInboxBytes bounds the decoded messages waiting for the Receiver per
// peer, and maxInboxTotal for all peers together. Past either, read loops
// wait: backpressure on the streams. A peer whose queue is empty may always
// queue one message, so no peer is starved by the others. Small, because
// what waits here is memory a peer makes us hold: 2 MiB is a few messages
// of blocks (decoding one takes well under a millisecond) or one wantlist
// of 50,000 entries, and a 4 MiB message still queues alone.
const (
	maxInboxBytes = 2 << 20
	maxInboxTotal = 32 << 20
)

// inboxes decouple reading a peer's streams from handing its messages to
// the Receiver. A stream is read to its end, and closed, as soon as its
// bytes arrive, instead of staying open while the Receiver works. That
// matters because boxo and Kubo servers open a stream per message: holding
// each one through our processing piles up inbound streams until libp2p's
// resource manager resets new ones, and a lazily negotiated stream hides
// that reset from the sender, so its blocks are silently lost (seen against
// boxo v0.43.0). One goroutine per peer with queued messages delivers them
// in arrival order.
type inboxes struct {
	mu    sync.Mutex
	cond  *sync.Cond // signalled when a peer's queue shrinks or the network stops
	peers map[peer.ID]*inbox
	total int // bytes queued across peers
}

type inbox struct {
	msgs  [][]byte // message bodies as read, decoded when delivered
	bytes int
	// paced is set while the peer's next message waits for its wantlist
	// pace: its queue then holds one message at most, since a peer sending
	// faster than the pace would otherwise keep its queue full.
	paced bool
}

func (n *Libp2pNetwork) initInboxes() {
	n.in.peers = make(map[peer.ID]*inbox)
	n.in.cond = sync.NewCond(&n.in.mu)
}

// enqueue queues the message body from p for the Receiver, waiting while
// p's queue is full. It returns false if the network stopped.
func (n *Libp2pNetwork) enqueue(p peer.ID, body []byte) bool {
	size := len(body)
	in := &n.in
	in.mu.Lock()
	defer in.mu.Unlock()
	for {
		if n.ctx.Err() != nil {
			return false
		}
		b := in.peers[p]
		if b == nil {
			b = &inbox{}
			in.peers[p] = b
			if !n.goTracked(func() { n.drain(p, b) }) {
				delete(in.peers, p)
				return false
			}
		}
		// A message larger than the bounds still goes when the peer's
		// queue is empty.
		if b.bytes == 0 || (!b.paced && b.bytes+size <= maxInboxBytes && in.total+size <= maxInboxTotal) {
			b.msgs = append(b.msgs, body)
			b.bytes += size
			in.total += size
			in.cond.Broadcast()
			return true
		}
		in.cond.Wait()
	}
}

// drain decodes and delivers p's queued messages in order, reporting those
// that do not decode, and exits when the queue is empty (the next message
// starts a new drain) or the network stops.
func (n *Libp2pNetwork) drain(p peer.ID, b *inbox) {
	in := &n.in
	for {
		in.mu.Lock()
		for len(b.msgs) == 0 && n.ctx.Err() == nil {
			// Give the goroutine up when idle, unless a message is due at
			// once: a read loop that just created b is about to append.
			if in.peers[p] == b {
				delete(in.peers, p)
			}
			in.mu.Unlock()
			return
		}
		if n.ctx.Err() != nil {
			delete(in.peers, p)
			in.total -= b.bytes
			in.cond.Broadcast()
			in.mu.Unlock()
			return
		}
		body := b.msgs[0]
		b.msgs[0] = nil
		b.msgs = b.msgs[1:]
		b.bytes -= len(body)
		in.total -= len(body)
		in.cond.Broadcast()
		in.mu.Unlock()
		msg, err := message.Unmarshal(body)
		if err != nil {
			n.malformed(p, fmt.Errorf("bitswap: decoding %d-byte message from %s: %w", len(body), p, err))
			continue
		}
		if !n.pace(p, b, len(msg.Wantlist)) {
			continue // stopping: the loop sees it
		}
		if err := n.receiver.ReceiveMessage(n.ctx, p, msg); err != nil {
			n.rejected(p, err)
		}
	}
}

// wakeInboxes releases read loops waiting on a full queue (used by Stop).
func (n *Libp2pNetwork) wakeInboxes() {
	n.in.mu.Lock()
	n.in.cond.Broadcast()
	n.in.mu.Unlock()
}

// Package wantmanager owns our outbound wantlists: for every peer, which
// CIDs local sessions want from it and of which type, reference-counted per
// session; one send queue per
// connected peer that coalesces wants and cancels into messages of a target
// size; and a window that keeps the wants outstanding at each peer below
// what servers in the wild hold (boxo and Kubo keep 1,024 per peer and drop
// the rest silently). Wants past the window wait here, in the order they
// were first asked, and go out as blocks, HAVEs and cancels free slots. The
// whole wantlist of a peer is sent again, as a full wantlist, when it
// (re)connects.
//
// It must never decide which peer to ask or when to give up (sessions do),
// never look at blocks' contents (the block router does), and never touch
// another component's state. It imports only the message package of this
// module (the facade checks that the network satisfies its Network).
//
// # References
//
// A session refers to a (peer, CID) want through WantBlocks or WantHaves and
// drops the reference through Cancel or CancelAll (every peer at once). A
// session that wants to ask every peer asks each. The type sent to a peer is want-block if any session wants the
// block from it, else want-have. A cancel goes to a peer only when the last
// reference to a want it holds goes.
//
// # Priority
//
// Each CID gets a sequence number when a session first asks for it (from any
// peer), counting up from 0 across the WantManager; it is
// forgotten when no session refers to the CID any more. Wants waiting for a
// window slot leave in sequence order, and the priority sent in an entry is
// math.MaxInt32 - seq%math.MaxInt32: MaxInt32 for the first CID asked, one
// less for each later one, so a server serves earlier asks first. After
// 2^31-1 CIDs the priority wraps back to MaxInt32; it is never 0 or negative.
//
// # Memory
//
// Everything held is bounded by what local sessions asked for and by the
// number of connected peers: one entry per (peer, CID) a session wants
// directly, plus, until its
// cancel is sent, one per want a peer still holds after the last reference
// went (at most the window per peer). Peers can make nothing here grow:
// ReceivedFrom only looks up wants we made. A disconnected peer's state is
// kept only while sessions still refer to wants for it.
//
// # Concurrency
//
// One mutex guards all wantlist state. Each connected peer has one sender
// goroutine, woken through a one-slot channel that carries no data; it takes
// the next batch under the mutex and sends it without holding it. Every
// method is safe for concurrent use and none blocks on the network.
package wantmanager

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/gobitswap/bitswap/message"
	cid "github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
)

// SessionID identifies the session that holds a reference to a want. The
// WantManager only compares IDs; callers choose them.
type SessionID uint64

// Network is what the WantManager needs from the transport;
// network.Network satisfies it.
type Network interface {
	// SendMessage sends msg to p. The WantManager sends one message at a
	// time per peer and relies on the network's own timeouts and retries.
	SendMessage(ctx context.Context, p peer.ID, msg *message.Message) error
	// Version returns the protocol version spoken with p. It is asked once
	// per connection, before the first message to p.
	Version(ctx context.Context, p peer.ID) (message.Version, error)
}

// Defaults of the options.
const (
	// DefaultPeerWantWindow is the number of wants kept outstanding at one peer
	// unless WithPeerWantWindow says otherwise: a quarter of the 1,024 that boxo
	// and Kubo servers hold per peer, and with 4 KiB blocks exactly boxo's
	// 1 MiB of outstanding work per peer. A boxo server sends each message
	// on a stream of its own, so the window also sets how many streams it
	// keeps open at us (about window / blocks per message, more on links
	// with latency): on a host that keeps libp2p's default resource limits
	// (75 streams per protocol and peer) larger windows lose blocks to
	// refused streams (with 512, in 4 of 5 runs of 20,000 × 4 KiB), and
	// even 256 did in about half the runs; see network.ResourceManager.
	// Raise it, on such a host, for links with a large bandwidth-delay
	// product.
	DefaultPeerWantWindow = 256
	// DefaultTargetMessageSize is the encoded size messages are packed up
	// to unless WithTargetMessageSize says otherwise.
	DefaultTargetMessageSize = 16 << 10
)

// Option configures a WantManager.
type Option func(*config)

type config struct {
	window    int
	target    int
	log       *slog.Logger
	observe   func(peer.ID, int)
	protector Protector
}

// Protector is the part of the connection manager through which the
// WantManager protects the peers delivering blocks to us;
// network.Network satisfies it.
type Protector interface {
	Protect(p peer.ID, tag string)
	Unprotect(p peer.ID, tag string) bool
}

// ProtectTag is the tag under which the WantManager protects peers (see
// WithProtector).
const ProtectTag = "bs-wants"

// WithProtector has the WantManager protect, in pr, under ProtectTag,
// every peer that holds a want-block of ours (sent, and not yet answered
// by the block nor cancelled), so that a connection manager's trim does
// not cut a peer while it sends us blocks. Sessions' references are
// counted here, so one Protect covers all Sessions: a peer is protected
// from its first want-block on until it holds none (its blocks came, our
// Sessions cancelled them, it disconnected, or Close), and is then
// unprotected. Want-haves do not protect (a Session may ask every peer
// for a HAVE); to a peer on 1.0.0 or 1.1.0, which knows only want-block,
// every want is a want-block. pr is called with the WantManager's lock
// held and must not call back into it. nil: none (the default).
func WithProtector(pr Protector) Option {
	return func(c *config) { c.protector = pr }
}

// WithPeerWantWindow sets how many wants may be outstanding at one peer: sent
// and not yet answered by a block or a HAVE, nor cancelled. Keep it below
// what the peers' servers hold (1,024 for boxo and Kubo), or wants past
// that are dropped silently by the server. n < 1 leaves the default,
// DefaultPeerWantWindow.
func WithPeerWantWindow(n int) Option {
	return func(c *config) {
		if n >= 1 {
			c.window = n
		}
	}
}

// WithTargetMessageSize sets the encoded size, in bytes, up to which wants
// and cancels are packed into one message; a single entry larger than that
// still travels alone. n < 1 leaves the default, DefaultTargetMessageSize;
// n is capped at message.MaxMessageSize.
func WithTargetMessageSize(n int) Option {
	return func(c *config) {
		if n >= 1 {
			c.target = min(n, message.MaxMessageSize)
		}
	}
}

// WithLogger sets where failures to reach a peer and sends are logged
// (warnings) and each message sent (debug). The default discards everything.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) {
		if l != nil {
			c.log = l
		}
	}
}

// WithQueueObserver has f told, each time a peer's sender takes wants and
// cancels to send, how many of the peer's wants are still left waiting for
// a slot in its window (0 while the window has room): the depth of that
// peer's send queue, at the moment it is served. f runs in the peer's
// sender goroutine, before the message goes out, so it must return
// quickly. nil: none.
func WithQueueObserver(f func(p peer.ID, waiting int)) Option {
	return func(c *config) { c.observe = f }
}

// Stat is a snapshot of a WantManager's counters.
type Stat struct {
	// MessagesSent counts messages sent successfully.
	MessagesSent uint64
	// WantsSent counts want entries (want-block or want-have, upgrades
	// included) in messages sent successfully.
	WantsSent uint64
	// CancelsSent counts cancel entries in messages sent successfully.
	CancelsSent uint64
	// Senders is the number of peers with a sender running: one per
	// connection it was told of and not yet of its end. (Which peers are
	// connected is the PeerRouter's to say; this counts goroutines.)
	Senders int
	// Wants is the number of distinct CIDs some session wants, from some
	// peer.
	Wants int
	// Queued is the number of (peer, CID) wants waiting for a window slot,
	// summed over peers, connected or not.
	Queued int
	// Protected is the number of peers protected now (WithProtector):
	// those holding a want-block of ours.
	Protected int
}

// WantManager keeps our outbound wantlists and sends them. Create it with
// New, tell it about connections with PeerConnected and PeerDisconnected and
// about answers with ReceivedFrom, and Close it when done.
type WantManager struct {
	net     Network
	log     *slog.Logger
	window  int
	target  int
	observe func(peer.ID, int) // nil: none
	// protector protects peers holding want-blocks of ours, under
	// protectTag; nil: none.
	protector  Protector
	protectTag string

	// Owned by their goroutines' atomic operations only.
	messagesSent, wantsSent, cancelsSent atomic.Uint64

	// wg counts sender goroutines.
	wg sync.WaitGroup

	// mu guards everything below and all peerState, entry and cidInfo
	// values reachable from it.
	mu     sync.Mutex
	closed bool
	peers  map[peer.ID]*peerState
	// cids holds every CID some session refers to.
	cids map[cid.Cid]*cidInfo
	// seq is the sequence number the next new CID gets.
	seq uint64
}

// cidInfo is what the WantManager knows of one wanted CID across peers.
type cidInfo struct {
	seq    uint64 // when it was first asked; gives its priority
	direct int    // peers whose entry for it has references
}

// New returns a WantManager that sends through net. It starts no goroutine
// until a peer connects.
func New(net Network, opts ...Option) *WantManager {
	c := config{
		window: DefaultPeerWantWindow,
		target: DefaultTargetMessageSize,
		log:    slog.New(slog.DiscardHandler),
	}
	for _, o := range opts {
		o(&c)
	}
	return &WantManager{
		net:        net,
		log:        c.log,
		window:     c.window,
		target:     c.target,
		observe:    c.observe,
		protector:  c.protector,
		protectTag: ProtectTag,
		peers:      make(map[peer.ID]*peerState),
		cids:       make(map[cid.Cid]*cidInfo),
	}
}

// WantBlocks records that session s wants the blocks cids from p, and
// queues a want-block for each that p does not hold yet. To a 1.2.0 peer
// the entries ask for a DONT_HAVE when p lacks the block. If p holds a
// want-have of ours for a CID, a want-block replaces it at once, without
// waiting for the window. Calling it again for a want that p has already
// answered sends the want again. Wants for a peer that is not connected wait
// until it connects.
func (wm *WantManager) WantBlocks(s SessionID, p peer.ID, cids []cid.Cid) {
	wm.want(s, p, cids, wantBlock)
}

// WantHaves records that session s wants to know whether p has each of
// cids, and queues a want-have (with sendDontHave) for each that p does not
// hold yet. A 1.0.0 or 1.1.0 peer knows only want-block, so it gets a
// want-block without sendDontHave instead. A session that already wants the
// block from p keeps wanting it: asking for a HAVE does not downgrade.
// Otherwise it behaves as WantBlocks.
func (wm *WantManager) WantHaves(s SessionID, p peer.ID, cids []cid.Cid) {
	wm.want(s, p, cids, wantHave)
}

func (wm *WantManager) want(s SessionID, p peer.ID, cids []cid.Cid, w want) {
	if len(cids) == 0 {
		return
	}
	wm.mu.Lock()
	defer wm.mu.Unlock()
	if wm.closed {
		return
	}
	ps := wm.peer(p)
	for _, c := range cids {
		e := ps.entry(c)
		wm.addRef(e, s, w)
		wm.enqueue(ps, e)
		wm.settle(ps, e)
	}
	ps.signal()
}

// Cancel drops session s's references to cids at p, as made by WantBlocks
// and WantHaves. A want p holds is
// cancelled when its last reference goes; one that was only queued is
// forgotten. If the remaining references want only a HAVE where p holds a
// want-block, the want-block stays: servers do not downgrade wants.
func (wm *WantManager) Cancel(s SessionID, p peer.ID, cids []cid.Cid) {
	if len(cids) == 0 {
		return
	}
	wm.mu.Lock()
	defer wm.mu.Unlock()
	ps := wm.peers[p]
	if wm.closed || ps == nil {
		return
	}
	for _, c := range cids {
		if e := ps.entries[c]; e != nil && wm.dropRef(e, s) {
			wm.settle(ps, e)
		}
	}
	ps.signal()
	wm.forgetIfIdle(ps)
}

// CancelAll drops every reference session s holds to cids, at every peer.
// Call it when the block arrived or the session no longer
// needs it. Peers holding a want that no session refers to any more get a
// cancel; a peer that sent the block has forgotten the want and gets none.
func (wm *WantManager) CancelAll(s SessionID, cids []cid.Cid) {
	if len(cids) == 0 {
		return
	}
	wm.mu.Lock()
	defer wm.mu.Unlock()
	if wm.closed {
		return
	}
	for _, c := range cids {
		info := wm.cids[c]
		if info == nil {
			continue
		}
		for _, ps := range wm.peers {
			e := ps.entries[c]
			if e == nil {
				continue
			}
			if wm.dropRef(e, s) {
				wm.settle(ps, e)
			}
		}
		wm.forgetIfUnwanted(c)
	}
	for _, ps := range wm.peers {
		ps.signal()
		wm.forgetIfIdle(ps)
	}
}

// ReceivedFrom tells the WantManager what p answered. A block frees its
// want's window slot at p, and p's server has forgotten the want, so p gets
// no cancel for it later. A HAVE does the same for a want-have (a later
// upgrade goes out as a new want-block); a HAVE for a want-block changes
// nothing. DONT_HAVEs change nothing: servers keep such wants until they
// are cancelled, so they keep their slot until then. CIDs we did not ask p
// for are ignored.
func (wm *WantManager) ReceivedFrom(p peer.ID, blocks, haves, dontHaves []cid.Cid) {
	_ = dontHaves // deliberately unused: see the doc comment
	wm.mu.Lock()
	defer wm.mu.Unlock()
	ps := wm.peers[p]
	if wm.closed || ps == nil || ps.conn == nil {
		return
	}
	freed := false
	for _, c := range blocks {
		if e := ps.entries[c]; e != nil && e.sent != wantNone {
			wm.answered(ps, e, false)
			freed = true
		}
	}
	for _, c := range haves {
		if e := ps.entries[c]; e != nil && e.sent == wantHave {
			wm.answered(ps, e, true)
			freed = true
		}
	}
	if freed {
		wm.syncProtect(ps)
		ps.signal()
		wm.forgetIfIdle(ps)
	}
}

// PeerConnected tells the WantManager that p is connected, or connected
// again. p's server holds nothing of ours yet, so everything sessions want
// from p is queued, and the first message sent
// is marked as a full wantlist. The wants go out, up to the window, from a
// sender goroutine that the call starts; it asks p's protocol version first.
func (wm *WantManager) PeerConnected(p peer.ID) {
	wm.mu.Lock()
	defer wm.mu.Unlock()
	if wm.closed {
		return
	}
	ps := wm.peer(p)
	if ps.conn != nil {
		// Connected again without hearing of the disconnection.
		wm.disconnect(ps)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &conn{ctx: ctx, cancel: cancel, wake: make(chan struct{}, 1), full: true}
	ps.conn = c
	wm.requeue(ps)
	wm.wg.Add(1)
	go wm.run(ps, c)
	ps.signal()
}

// PeerDisconnected tells the WantManager that p is gone. Its server has
// forgotten our wants, so none is outstanding there any more; the wants
// sessions still refer to are kept (they may still be cancelled) and sent
// again when p reconnects. p's sender goroutine is stopped; the call does
// not wait for it.
func (wm *WantManager) PeerDisconnected(p peer.ID) {
	wm.mu.Lock()
	defer wm.mu.Unlock()
	ps := wm.peers[p]
	if wm.closed || ps == nil || ps.conn == nil {
		return
	}
	wm.disconnect(ps)
	wm.forgetIfIdle(ps)
}

// WantlistForPeer returns the wants p currently holds of ours: sent and not
// yet answered by a block or HAVE, and not yet cancelled on the wire (a want
// whose cancel is still waiting to be sent is included), in priority order,
// as they were last sent. It returns nil for a peer that is not connected.
func (wm *WantManager) WantlistForPeer(p peer.ID) []message.Entry {
	wm.mu.Lock()
	defer wm.mu.Unlock()
	ps := wm.peers[p]
	if ps == nil || ps.conn == nil {
		return nil
	}
	var held []*entry
	for _, e := range ps.entries {
		if e.sent != wantNone {
			held = append(held, e)
		}
	}
	sortBySeq(held)
	out := make([]message.Entry, len(held))
	for i, e := range held {
		out[i] = wantEntry(e, e.sent, ps.conn.version)
	}
	return out
}

// Stat returns the WantManager's counters.
func (wm *WantManager) Stat() Stat {
	st := Stat{
		MessagesSent: wm.messagesSent.Load(),
		WantsSent:    wm.wantsSent.Load(),
		CancelsSent:  wm.cancelsSent.Load(),
	}
	wm.mu.Lock()
	defer wm.mu.Unlock()
	st.Wants = len(wm.cids)
	for _, ps := range wm.peers {
		if ps.conn != nil {
			st.Senders++
		}
		st.Queued += ps.queue.Len()
		if ps.protected {
			st.Protected++
		}
	}
	return st
}

// Close stops every sender goroutine and returns once they have exited.
// Every peer it protected (WithProtector) is unprotected.
// Sends in progress are abandoned: their context is cancelled, and Close
// waits for SendMessage to return. Later calls of any method do nothing;
// Close may be called more than once.
func (wm *WantManager) Close() {
	wm.mu.Lock()
	if !wm.closed {
		wm.closed = true
		for _, ps := range wm.peers {
			if ps.conn != nil {
				ps.conn.cancel()
				ps.conn = nil
			}
			ps.blocksOut = 0
			wm.syncProtect(ps)
		}
		wm.peers = make(map[peer.ID]*peerState)
		wm.cids = make(map[cid.Cid]*cidInfo)
	}
	wm.mu.Unlock()
	wm.wg.Wait()
}

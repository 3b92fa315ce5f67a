package network

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobitswap/bitswap/message"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/host/eventbus"
	manet "github.com/multiformats/go-multiaddr/net"
)

// Bitswap protocol IDs. V100 is served under two IDs.
const (
	ProtocolBitswap        protocol.ID = "/ipfs/bitswap/1.2.0" // message.V120
	ProtocolBitswapOneOne  protocol.ID = "/ipfs/bitswap/1.1.0" // message.V110
	ProtocolBitswapOneZero protocol.ID = "/ipfs/bitswap/1.0.0" // message.V100
	ProtocolBitswapNoVers  protocol.ID = "/ipfs/bitswap"       // message.V100
)

// ErrStopped is returned by operations on a Libp2pNetwork after Stop.
var ErrStopped = errors.New("bitswap network stopped")

// protocolIDs returns the protocol IDs for vs, keeping the order of vs,
// each after prefix (see WithProtocolPrefix).
func protocolIDs(prefix protocol.ID, vs []message.Version) []protocol.ID {
	var ids []protocol.ID
	for _, v := range vs {
		switch v {
		case message.V120:
			ids = append(ids, prefix+ProtocolBitswap)
		case message.V110:
			ids = append(ids, prefix+ProtocolBitswapOneOne)
		case message.V100:
			ids = append(ids, prefix+ProtocolBitswapOneZero, prefix+ProtocolBitswapNoVers)
		}
	}
	return ids
}

// versionOf maps a negotiated protocol ID, which starts with prefix, to
// its message version.
func versionOf(prefix, id protocol.ID) (message.Version, bool) {
	rest, ok := strings.CutPrefix(string(id), string(prefix))
	if !ok {
		return 0, false
	}
	switch protocol.ID(rest) {
	case ProtocolBitswap:
		return message.V120, true
	case ProtocolBitswapOneOne:
		return message.V110, true
	case ProtocolBitswapOneZero, ProtocolBitswapNoVers:
		return message.V100, true
	}
	return 0, false
}

// Lifecycle states of a Libp2pNetwork.
const (
	stateNew = iota
	stateStarted
	stateStopped
)

// Libp2pNetwork is the Network over a libp2p host.
//
// Inbound: every stream on an enabled Bitswap protocol is read frame after
// frame until the remote closes it, so both peers that send many messages
// on one stream (recent Kubo) and peers that open a stream per message
// (older ones) work. Outbound: one sender per peer keeps one stream open and
// reuses it for every message; sends to one peer are serialised, sends to
// different peers run in parallel.
//
// Connection events follow one rule: a peer is reported by PeerConnected
// once it has a direct (not limited) connection and is known to speak an
// enabled Bitswap protocol, either because identify says so (peerstore
// protocols, checked on EvtPeerIdentificationCompleted,
// EvtPeerProtocolsUpdated and connection notifications) or because a
// Bitswap stream was opened in either direction. PeerConnected always comes
// before the first ReceiveMessage of the stream that triggered it. A
// reported peer is reported by PeerDisconnected when its last connection
// closes; a protocol removal alone does not disconnect it. Events are
// level-triggered: a disconnect and reconnect that both happen before the
// event goroutine looks at the peer are seen as no change. Peers connected
// before Start are examined at Start.
//
// A message already read from a stream when the peer's last connection
// closes may still reach ReceiveMessage after PeerDisconnected. Streams are
// read to their end as fast as bytes arrive and closed; their messages wait
// in a per-peer queue (at most 2 MiB) for the Receiver, so that peers which
// open a stream per message never pile up streams against libp2p's
// resource limits while we process.
type Libp2pNetwork struct {
	host   host.Host
	cfg    config
	protos []protocol.ID // enabled protocol IDs, newest first; immutable

	// ctx is cancelled by Stop. Every blocking operation watches it, so
	// Stop never waits longer than an operation takes to notice.
	ctx    context.Context
	cancel context.CancelFunc
	// wg counts the goroutines we start and the stream handlers running in
	// libp2p's goroutines; Stop waits for it. Add is only called under mu
	// while the state is not stopped, so it never races with Wait.
	wg sync.WaitGroup

	// events is the queue between libp2p notifications and the event
	// goroutine; it has its own lock.
	events eventQueue

	// in queues decoded messages per peer for the Receiver; see inboxes.
	in inboxes

	// reserve bounds the bodies allocated ahead of their bytes.
	reserve bodyReserve

	msgsSent, msgsRecv, bytesSent, bytesRecv atomic.Uint64
	malformedRecv, peersDropped              atomic.Uint64
	rejectedRecv, throttled, refused         atomic.Uint64
	abandonedSends, peersBanned              atomic.Uint64

	laneTurn atomic.Uint64 // spreads block messages over busy lanes

	// mu guards the fields below. It is held only for map and state
	// updates, never across I/O or a Receiver call.
	mu       sync.Mutex
	state    int
	receiver Receiver                    // set once by Start, before anything reads it
	sub      event.Subscription          // identify events; nil before Start
	senders  map[senderKey]*sender       // one per lane to each peer we send to
	inbound  map[network.Stream]struct{} // inbound streams being read or closed
	guards   map[peer.ID]*guard          // strikes and pace per connected peer
	banned   map[peer.ID]time.Time       // peers whose streams are refused, until when
	held     map[peer.ID]struct{}        // banned peers with a stream held unread
	abandons map[peer.ID]*abandonCount   // transfers peers walked away from, across connections
}

var _ Network = (*Libp2pNetwork)(nil)

// NewFromHost returns a Network that moves Bitswap messages over h. It
// registers nothing with h until Start. Invalid options panic (see
// WithProtocols).
func NewFromHost(h host.Host, opts ...Option) *Libp2pNetwork {
	cfg := defaultConfig()
	for _, o := range opts {
		o(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &Libp2pNetwork{
		host:     h,
		cfg:      cfg,
		protos:   protocolIDs(cfg.prefix, cfg.versions),
		ctx:      ctx,
		cancel:   cancel,
		senders:  make(map[senderKey]*sender),
		inbound:  make(map[network.Stream]struct{}),
		guards:   make(map[peer.ID]*guard),
		banned:   make(map[peer.ID]time.Time),
		held:     make(map[peer.ID]struct{}),
		abandons: make(map[peer.ID]*abandonCount),
	}
	n.events.init()
	n.initInboxes()
	return n
}

// Self returns the host's peer ID.
func (n *Libp2pNetwork) Self() peer.ID { return n.host.ID() }

// Start subscribes to identify events and connection notifications, starts
// the event goroutine, looks at the peers already connected and registers a
// stream handler per enabled protocol. It panics if called twice or after
// Stop.
func (n *Libp2pNetwork) Start(r Receiver) {
	n.mu.Lock()
	if n.state != stateNew {
		n.mu.Unlock()
		panic("network: Start called twice or after Stop")
	}
	n.state = stateStarted
	n.receiver = r
	n.mu.Unlock()

	// Subscribe before taking stock of current peers, so that a peer whose
	// identify finishes in between is seen by one or the other.
	sub, err := n.host.EventBus().Subscribe(
		[]any{new(event.EvtPeerIdentificationCompleted), new(event.EvtPeerProtocolsUpdated)},
		eventbus.Name("gobitswap/network"),
	)
	if err == nil {
		n.mu.Lock()
		n.sub = sub
		n.mu.Unlock()
		n.goTracked(func() { n.readBus(sub) })
	}
	// Without the subscription (it only fails for invalid event types),
	// peers are still found by connection notifications and streams.
	n.host.Network().Notify((*notifiee)(n))
	for _, p := range n.host.Network().Peers() {
		n.events.mark(p, false, nil)
	}
	n.goTracked(n.runEvents)
	n.checkResourceLimits()
	for _, id := range n.protos {
		n.host.SetStreamHandler(id, n.handleStream)
	}
}

// Stop removes the stream handlers, stops the notifications, resets every
// stream, waits for every goroutine of this network to return, and leaves
// senders unusable (SendMessage and Version return ErrStopped). Once it
// returns the Receiver gets no more calls. It must not be called from a
// Receiver method, which Stop would wait for. Calling it again is a no-op.
func (n *Libp2pNetwork) Stop() {
	n.mu.Lock()
	if n.state == stateStopped {
		n.mu.Unlock()
		return
	}
	started := n.state == stateStarted
	n.state = stateStopped
	senders := n.senders
	n.senders = make(map[senderKey]*sender)
	inbound := make([]network.Stream, 0, len(n.inbound))
	for s := range n.inbound {
		inbound = append(inbound, s)
	}
	sub := n.sub
	n.mu.Unlock()

	if started {
		for _, id := range n.protos {
			n.host.RemoveStreamHandler(id)
		}
		n.host.Network().StopNotify((*notifiee)(n))
	}
	// Cancelling first makes every operation that holds a sender lock give
	// up (stream opens, writes, closes), so the lock waits below are short.
	n.cancel()
	n.wakeInboxes()
	for _, s := range inbound {
		_ = s.Reset()
	}
	if sub != nil {
		_ = sub.Close() // ends readBus
	}
	for _, s := range senders {
		s.lock <- struct{}{}
		s.discard()
		<-s.lock
	}
	n.wg.Wait()
}

// goTracked runs f in a goroutine counted by wg, unless the network is
// stopped, in which case it returns false and does nothing.
func (n *Libp2pNetwork) goTracked(f func()) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.state == stateStopped {
		return false
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		f()
	}()
	return true
}

// Connect dials p unless it is this node or already connected.
func (n *Libp2pNetwork) Connect(ctx context.Context, ai peer.AddrInfo) error {
	if ai.ID == n.host.ID() {
		return nil
	}
	return n.host.Connect(ctx, ai)
}

// DisconnectFrom closes every connection to p.
func (n *Libp2pNetwork) DisconnectFrom(_ context.Context, p peer.ID) error {
	return n.host.Network().ClosePeer(p)
}

// Latency returns the peerstore's moving average of the latency to p (fed
// by libp2p's ping and identify), or 0 if none was measured.
func (n *Libp2pNetwork) Latency(p peer.ID) time.Duration {
	return n.host.Peerstore().LatencyEWMA(p)
}

// TagPeer sets a tag on p in the host's connection manager (with
// libp2p's default, the null connection manager, it does nothing).
// libp2p's basic connection manager forgets a peer's tags when its last
// connection closes; protections it keeps until Unprotect.
func (n *Libp2pNetwork) TagPeer(p peer.ID, tag string, value int) {
	n.host.ConnManager().TagPeer(p, tag, value)
}

// UntagPeer removes a tag from p in the host's connection manager.
func (n *Libp2pNetwork) UntagPeer(p peer.ID, tag string) {
	n.host.ConnManager().UntagPeer(p, tag)
}

// Protect protects p's connections under tag in the host's connection
// manager.
func (n *Libp2pNetwork) Protect(p peer.ID, tag string) {
	n.host.ConnManager().Protect(p, tag)
}

// Unprotect removes tag's protection of p in the host's connection
// manager, reporting whether another tag still protects it.
func (n *Libp2pNetwork) Unprotect(p peer.ID, tag string) bool {
	return n.host.ConnManager().Unprotect(p, tag)
}

// Local reports whether some connection to p is on a loopback, private
// (LAN) or link-local address.
func (n *Libp2pNetwork) Local(p peer.ID) bool {
	for _, c := range n.host.Network().ConnsToPeer(p) {
		a := c.RemoteMultiaddr()
		if manet.IsIPLoopback(a) || manet.IsPrivateAddr(a) || manet.IsIP6LinkLocal(a) {
			return true
		}
	}
	return false
}

// Stats returns the traffic counters. Each field is read atomically; the
// four are not a single snapshot.
func (n *Libp2pNetwork) Stats() Stats {
	return Stats{
		MessagesSent:      n.msgsSent.Load(),
		MessagesReceived:  n.msgsRecv.Load(),
		BytesSent:         n.bytesSent.Load(),
		BytesReceived:     n.bytesRecv.Load(),
		MalformedReceived: n.malformedRecv.Load(),
		PeersDisconnected: n.peersDropped.Load(),
		RejectedReceived:  n.rejectedRecv.Load(),
		ThrottledMessages: n.throttled.Load(),
		StreamsRefused:    n.refused.Load(),
		AbandonedSends:    n.abandonedSends.Load(),
		PeersBanned:       n.peersBanned.Load(),
	}
}

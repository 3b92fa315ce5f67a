package httpnet

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/gobitswap/bitswap/message"
	"github.com/gobitswap/bitswap/network"
)

// Router is a network.Network over two: a Bitswap one (libp2p's, or any)
// and an HTTP one. Each peer's messages go to the network that connected
// it: a peer connected over HTTP (Connect with HTTP addresses that
// answered the probe) is the HTTP network's, every other peer the Bitswap
// network's. Both networks' events reach one Receiver, connection events
// one at a time. So Sessions see HTTP endpoints and Bitswap peers alike,
// and one Policy chooses among them all.
//
// Give it to bitswap.New as the Network:
//
//	net := httpnet.NewRouter(network.NewFromHost(h), httpnet.New(httpnet.WithSelf(h.ID())))
//	bsw := bitswap.New(ctx, net, bs)
type Router struct {
	bs   network.Network
	http *Network
}

var _ network.Network = (*Router)(nil)

// NewRouter routes between bs and h.
func NewRouter(bs network.Network, h *Network) *Router { return &Router{bs: bs, http: h} }

// HTTP returns the HTTP network (for its HTTPStats, or ConnectURL).
func (r *Router) HTTP() *Network { return r.http }

// Bitswap returns the other network.
func (r *Router) Bitswap() network.Network { return r.bs }

// Self is the Bitswap network's.
func (r *Router) Self() peer.ID { return r.bs.Self() }

// Start starts both networks on rc, serialising their connection events.
func (r *Router) Start(rc network.Receiver) {
	s := &serialEvents{Receiver: rc}
	r.http.Start(s)
	r.bs.Start(s)
}

// Stop stops both.
func (r *Router) Stop() {
	r.http.Stop()
	r.bs.Stop()
}

func (r *Router) pick(p peer.ID) network.Network {
	if r.http.Has(p) {
		return r.http
	}
	return r.bs
}

// SendMessage sends through p's network.
func (r *Router) SendMessage(ctx context.Context, p peer.ID, msg *message.Message) error {
	return r.pick(p).SendMessage(ctx, p, msg)
}

// Connect connects ai over HTTP when it has HTTP addresses, and over the
// Bitswap network when it has none, or when HTTP failed and it has other
// addresses (or none at all, for the Bitswap network to look up).
func (r *Router) Connect(ctx context.Context, ai peer.AddrInfo) error {
	httpAddrs, others := SplitAddrs(ai.Addrs)
	if len(httpAddrs) == 0 {
		return r.bs.Connect(ctx, ai)
	}
	err := r.http.Connect(ctx, peer.AddrInfo{ID: ai.ID, Addrs: httpAddrs})
	if err == nil || len(others) == 0 {
		return err
	}
	if berr := r.bs.Connect(ctx, peer.AddrInfo{ID: ai.ID, Addrs: others}); berr != nil {
		return fmt.Errorf("over HTTP: %v; over Bitswap: %w", err, berr)
	}
	return nil
}

// DisconnectFrom disconnects p on its network.
func (r *Router) DisconnectFrom(ctx context.Context, p peer.ID) error {
	return r.pick(p).DisconnectFrom(ctx, p)
}

// Version asks p's network.
func (r *Router) Version(ctx context.Context, p peer.ID) (message.Version, error) {
	return r.pick(p).Version(ctx, p)
}

// Latency asks p's network.
func (r *Router) Latency(p peer.ID) time.Duration { return r.pick(p).Latency(p) }

// Local asks p's network.
func (r *Router) Local(p peer.ID) bool { return r.pick(p).Local(p) }

// Named reports whether p is an HTTP endpoint (see Network.Named).
func (r *Router) Named(p peer.ID) bool { return r.http.Named(p) }

// Stats adds the two networks' counters.
func (r *Router) Stats() network.Stats {
	a, b := r.bs.Stats(), r.http.Stats()
	return network.Stats{
		MessagesSent:      a.MessagesSent + b.MessagesSent,
		MessagesReceived:  a.MessagesReceived + b.MessagesReceived,
		BytesSent:         a.BytesSent + b.BytesSent,
		BytesReceived:     a.BytesReceived + b.BytesReceived,
		MalformedReceived: a.MalformedReceived + b.MalformedReceived,
		PeersDisconnected: a.PeersDisconnected + b.PeersDisconnected,
		RejectedReceived:  a.RejectedReceived + b.RejectedReceived,
		ThrottledMessages: a.ThrottledMessages + b.ThrottledMessages,
		StreamsRefused:    a.StreamsRefused + b.StreamsRefused,
		AbandonedSends:    a.AbandonedSends + b.AbandonedSends,
		PeersBanned:       a.PeersBanned + b.PeersBanned,
	}
}

// Tags and protections go to p's network: the host's connection manager
// for a Bitswap peer, nowhere for an HTTP endpoint (it has no libp2p
// connection to keep, and the connection manager would keep an entry for
// a peer it never saw).
func (r *Router) TagPeer(p peer.ID, tag string, v int) { r.pick(p).TagPeer(p, tag, v) }
func (r *Router) UntagPeer(p peer.ID, tag string)      { r.pick(p).UntagPeer(p, tag) }
func (r *Router) Protect(p peer.ID, tag string)        { r.pick(p).Protect(p, tag) }
func (r *Router) Unprotect(p peer.ID, tag string) bool { return r.pick(p).Unprotect(p, tag) }

// serialEvents passes everything on, connection events one at a time
// across both networks.
type serialEvents struct {
	network.Receiver
	mu sync.Mutex
}

func (s *serialEvents) PeerConnected(p peer.ID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.Receiver.PeerConnected(p)
}

func (s *serialEvents) PeerDisconnected(p peer.ID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.Receiver.PeerDisconnected(p)
}

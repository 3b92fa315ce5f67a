package testutil

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/gobitswap/bitswap/message"
	"github.com/libp2p/go-libp2p/core/peer"
	mh "github.com/multiformats/go-multihash"
)

// Errors wrapped by VirtualPeer methods, with the peer named. Test for them
// with errors.Is.
var (
	// ErrUnknownPeer means the peer was never created on this network.
	ErrUnknownPeer = errors.New("peer unknown to the virtual network")
	// ErrPeerStopped means the peer (the remote one, or the caller itself)
	// has been stopped.
	ErrPeerStopped = errors.New("peer stopped")
	// ErrNotConnected means the connection closed while a message was being
	// queued on it.
	ErrNotConnected = errors.New("peer not connected")
)

// PeerID returns the i-th deterministic test peer ID: the sha2-256
// multihash of a fixed string and i. It needs no key generation or
// randomness, and VirtualNetwork numbers its peers with it from 0.
func PeerID(i int) peer.ID {
	h, err := mh.Sum(fmt.Appendf(nil, "gobitswap testutil peer %d", i), mh.SHA2_256, -1)
	if err != nil {
		panic(err) // sha2-256 is always available
	}
	return peer.ID(h)
}

// VNetOption configures a VirtualNetwork.
type VNetOption func(*VirtualNetwork)

// WithLatency sets the default one-way latency of every link.
func WithLatency(d time.Duration) VNetOption {
	return func(vn *VirtualNetwork) { vn.defaults.latency = d }
}

// WithBandwidth sets the default bandwidth of every link in each direction,
// in bytes per second; 0 means unlimited.
func WithBandwidth(bytesPerSecond int) VNetOption {
	return func(vn *VirtualNetwork) { vn.defaults.bandwidth = bytesPerSecond }
}

// linkParams describe one directed link. Loss and churn, when added, belong
// here (per-link drop probability) and in VirtualNetwork (peer up/down
// schedules), applied at the single delivery point, link.run.
type linkParams struct {
	latency   time.Duration // one way
	bandwidth int           // bytes/s, 0 = unlimited
}

// serialisation is how long size bytes take to go onto the link.
func (p linkParams) serialisation(size int) time.Duration {
	if p.bandwidth <= 0 {
		return 0
	}
	return time.Duration(int64(size) * int64(time.Second) / int64(p.bandwidth))
}

// VirtualNetwork is an in-memory network of VirtualPeers. Messages between
// peers travel as framed wire bytes over links with latency and bandwidth;
// each directed link delivers in order from its own goroutine using only
// timers, so a VirtualNetwork created inside a testing/synctest bubble runs
// in virtual time (create it inside the bubble, so that its goroutines and
// channels belong to it). Link queues are unbounded, so SendMessage never
// blocks. Its methods are safe for concurrent use. Call Close, or Stop every
// peer, before the test ends, or the link goroutines remain.
type VirtualNetwork struct {
	mu       sync.Mutex
	defaults linkParams
	links    map[[2]peer.ID]linkParams // by ordered pair, see pairKey
	peers    map[peer.ID]*VirtualPeer
	order    []*VirtualPeer // in creation order
}

// NewVirtualNetwork returns an empty network: no latency and unlimited
// bandwidth unless options say otherwise.
func NewVirtualNetwork(opts ...VNetOption) *VirtualNetwork {
	vn := &VirtualNetwork{
		links: make(map[[2]peer.ID]linkParams),
		peers: make(map[peer.ID]*VirtualPeer),
	}
	for _, o := range opts {
		o(vn)
	}
	return vn
}

// PeerOption configures a VirtualPeer.
type PeerOption func(*VirtualPeer)

// WithVersion makes the peer speak at most protocol version v (the default
// is message.V120). A link between two peers uses the lower of their
// versions, as protocol negotiation would.
func WithVersion(v message.Version) PeerOption {
	return func(p *VirtualPeer) { p.version = v }
}

// NewPeer adds a peer, with the next deterministic ID (see PeerID). It is not
// connected to anyone and not started.
func (vn *VirtualNetwork) NewPeer(opts ...PeerOption) *VirtualPeer {
	vn.mu.Lock()
	defer vn.mu.Unlock()
	p := newVirtualPeer(vn, PeerID(len(vn.order)))
	for _, o := range opts {
		o(p)
	}
	vn.peers[p.id] = p
	vn.order = append(vn.order, p)
	return p
}

// SetLink sets the one-way latency and the bandwidth (bytes/s, 0 =
// unlimited) of the link between a and b, in both directions, overriding the
// network defaults. It applies to messages sent from now on, on existing
// connections too; messages already in flight keep their timing.
func (vn *VirtualNetwork) SetLink(a, b peer.ID, latency time.Duration, bandwidth int) {
	vn.mu.Lock()
	defer vn.mu.Unlock()
	vn.links[pairKey(a, b)] = linkParams{latency: latency, bandwidth: bandwidth}
}

// ConnectAll connects every pair of peers that are not stopped. Peers need
// not be started: events wait for their receiver.
func (vn *VirtualNetwork) ConnectAll() {
	vn.mu.Lock()
	defer vn.mu.Unlock()
	for i, a := range vn.order {
		for _, b := range vn.order[i+1:] {
			if !a.stopped && !b.stopped {
				vn.connectLocked(a, b)
			}
		}
	}
}

// Close stops every peer (see VirtualPeer.Stop) and returns when all of the
// network's goroutines have exited.
func (vn *VirtualNetwork) Close() {
	vn.mu.Lock()
	ps := append([]*VirtualPeer(nil), vn.order...)
	vn.mu.Unlock()
	for _, p := range ps {
		p.Stop()
	}
}

// NewSwarm adds n peers to vn, with opts, and connects them pairwise. They
// are not started: the caller starts each with its Receiver, which then
// learns of the connections.
func NewSwarm(vn *VirtualNetwork, n int, opts ...PeerOption) []*VirtualPeer {
	ps := make([]*VirtualPeer, n)
	for i := range ps {
		ps[i] = vn.NewPeer(opts...)
	}
	vn.mu.Lock()
	defer vn.mu.Unlock()
	for i, a := range ps {
		for _, b := range ps[i+1:] {
			vn.connectLocked(a, b)
		}
	}
	return ps
}

func pairKey(a, b peer.ID) [2]peer.ID {
	if b < a {
		a, b = b, a
	}
	return [2]peer.ID{a, b}
}

// paramsLocked returns the parameters of the link between a and b.
func (vn *VirtualNetwork) paramsLocked(a, b peer.ID) linkParams {
	if p, ok := vn.links[pairKey(a, b)]; ok {
		return p
	}
	return vn.defaults
}

// lookupLocked returns the live peer p, or an error naming it.
func (vn *VirtualNetwork) lookupLocked(p peer.ID) (*VirtualPeer, error) {
	vp, ok := vn.peers[p]
	if !ok {
		return nil, fmt.Errorf("testutil: peer %s: %w", p, ErrUnknownPeer)
	}
	if vp.stopped {
		return nil, fmt.Errorf("testutil: peer %s: %w", p, ErrPeerStopped)
	}
	return vp, nil
}

// connectLocked connects a and b if they are not connected already. Both
// must be live. Each side's receiver learns of the other from the new link
// that delivers to it, before any message on that link.
func (vn *VirtualNetwork) connectLocked(a, b *VirtualPeer) {
	if _, ok := a.out[b.id]; ok {
		return
	}
	a.out[b.id] = a.newLink(b)
	b.out[a.id] = b.newLink(a)
}

// disconnectLocked closes the connection between a and b, if any. Messages
// in flight are lost. The receiver of each side that is not stopping learns
// of the disconnection after every earlier call about the other peer.
func (vn *VirtualNetwork) disconnectLocked(a, b *VirtualPeer) {
	ab, ok := a.out[b.id]
	if !ok {
		return
	}
	ba := b.out[a.id]
	delete(a.out, b.id)
	delete(b.out, a.id)
	ab.close(!b.stopped)
	ba.close(!a.stopped)
}

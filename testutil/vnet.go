package testutil

import (
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
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
	// ErrUnreachable means a dial failed because the two peers are kept
	// apart: by VirtualNetwork.Disconnect until Reconnect, or because one of
	// them has left the network (see ScheduleChurn).
	ErrUnreachable = errors.New("peer unreachable")
	// ErrMessageLost is wrapped by the error a Receiver gets, at the time the
	// message would have arrived, for each message lost on a lossy link (see
	// WithLoss). It also wraps message.ErrIncomplete.
	ErrMessageLost = errors.New("message lost: stream reset mid-message")
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

// DefaultSendBuffer is how many bytes a link takes from its sender beyond
// what it has put on the wire before SendMessage blocks (WithSendBuffer):
// yamux's initial stream window, 256 KiB, which is what a libp2p stream
// lets a writer get ahead of its reader before a Write blocks. (The window
// can grow to 16 MiB on a long fat link, and the kernel's TCP buffer sits
// below it; boxo's "10 seeds" figures move little between 0 and 4 MiB.)
const DefaultSendBuffer = 256 << 10

// WithSendBuffer sets how many bytes a link buffers for its sender: a
// SendMessage returns once no more than that many bytes of the frame, and
// of the frames before it on the link, are still to be put on the wire
// (immediately, without a bandwidth cap). 0 returns only once the whole
// frame is on the wire; a negative size never blocks (every frame queues
// at once, as before links pushed back). Like a real stream's buffer,
// what is in it is committed: a later cancel cannot recall it, and only a
// broken connection (or the sender giving up on the send) drops it.
func WithSendBuffer(bytes int) VNetOption {
	return func(vn *VirtualNetwork) { vn.sendBuffer = bytes }
}

// WithAccessLinks gives every peer an access link, shared by all of its
// connections: up bytes/s for everything it sends and down bytes/s for
// everything it receives (0: unlimited, the default). A frame goes at the
// rate of the slowest of the sender's uplink, the pair's link and the
// receiver's downlink, and occupies each of them, one frame after another
// in the order sent, for its size at that one's rate. So ten seeds sending
// to one leech share its downlink. SetAccessLink overrides it per peer.
func WithAccessLinks(up, down int) VNetOption {
	return func(vn *VirtualNetwork) { vn.defaultAccess = access{up: up, down: down} }
}

// WithLoss sets the default loss probability of every link: each message is
// lost with probability p (0 <= p <= 1), independently, drawn from the
// network's seeded generator (see WithSeed). SetLoss overrides it per pair.
//
// libp2p streams are reliable: bytes are never silently lost, so a lost
// message here models a stream reset in the middle of a message. As the
// libp2p network does then, the receiver's ReceiveError is called, at the
// time the message would have arrived, with an error wrapping
// ErrMessageLost (and message.ErrIncomplete); the message itself is never
// delivered. The sender is not told: SendMessage returned when the message
// was queued, as a write returns once buffered. A lost message still takes
// its full time on the link, and the messages after it are unaffected. Lost
// messages are counted by Dropped and Traffic.
func WithLoss(p float64) VNetOption {
	checkLoss(p)
	return func(vn *VirtualNetwork) { vn.defaultLoss = p }
}

// WithSeed seeds the generator that decides which messages are lost (the
// default seed is 0). Each directed link draws from its own stream, derived
// from the seed and the two peer IDs, one draw per message sent on a lossy
// link, so with the same seed the same messages are lost on every run as
// long as each link's messages are sent in the same order, whatever the
// interleaving of other links.
func WithSeed(seed int64) VNetOption {
	return func(vn *VirtualNetwork) { vn.seed = seed }
}

func checkLoss(p float64) {
	if !(p >= 0 && p <= 1) {
		panic(fmt.Sprintf("testutil: loss probability %v is not in [0, 1]", p))
	}
}

// linkParams describe one directed link. Loss is kept apart (see
// VirtualNetwork.loss), so that SetLink and SetLoss do not undo each other.
type linkParams struct {
	latency   time.Duration // one way
	bandwidth int           // bytes/s, 0 = unlimited
}

// serialisation is how long size bytes take to go onto the link.
func (p linkParams) serialisation(size int) time.Duration {
	return transmit(size, p.bandwidth)
}

// transmit is how long size bytes take at bandwidth bytes/s (0: none).
func transmit(size, bandwidth int) time.Duration {
	if bandwidth <= 0 {
		return 0
	}
	return time.Duration(int64(size) * int64(time.Second) / int64(bandwidth))
}

// access is a peer's access link, bytes/s each way (0: unlimited).
type access struct{ up, down int }

// slowest returns the least of the positive rates, 0 if none is.
func slowest(rates ...int) int {
	r := 0
	for _, x := range rates {
		if x > 0 && (r == 0 || x < r) {
			r = x
		}
	}
	return r
}

// VirtualNetwork is an in-memory network of VirtualPeers. Messages between
// peers travel as framed wire bytes over links with latency, bandwidth and
// optional loss; each directed link delivers in order from its own goroutine
// using only timers, so a VirtualNetwork created inside a testing/synctest
// bubble runs in virtual time (create it inside the bubble, so that its
// goroutines and channels belong to it). A send blocks while the link's
// send buffer is full (WithSendBuffer), as a stream write does; peers may
// also have access links shared by all their connections
// (WithAccessLinks). Its methods are safe for concurrent use.
//
// Faults can be injected: message loss (WithLoss, SetLoss), cut connections
// (Disconnect, Reconnect), peers leaving and returning (ScheduleChurn) and
// peers that never answer (SetUnresponsive). Traffic reports what the links
// carried. Nothing uses the wall clock or real randomness, so a run under
// synctest is reproducible.
//
// Call Close before the test ends: it stops every peer and waits for every
// goroutine of the network (links, churn schedules, content router
// queries). Stopping every peer instead ends the link and churn goroutines,
// but not pending ContentRouter queries.
type VirtualNetwork struct {
	mu          sync.Mutex
	defaults    linkParams
	links       map[[2]peer.ID]linkParams // by ordered pair, see pairKey
	defaultLoss float64
	loss        map[[2]peer.ID]float64 // by ordered pair
	seed        int64
	rngs        map[[2]peer.ID]*rand.Rand // by directed pair (from, to)
	cut         map[[2]peer.ID]bool       // by ordered pair: kept apart by Disconnect
	peers       map[peer.ID]*VirtualPeer
	order       []*VirtualPeer // in creation order

	closed bool
	done   chan struct{}  // closed by Close
	bg     sync.WaitGroup // churn and content-router goroutines; Add under mu while !closed

	tmu     sync.Mutex              // guards traffic; taken after mu or a link's mu, never before
	traffic map[[2]peer.ID]*Traffic // by directed pair (from, to)

	sendBuffer    int // see WithSendBuffer
	defaultAccess access
	// amu guards access and the peers' access-link schedules (upBusy,
	// downBusy); taken after a link's mu, never before.
	amu    sync.Mutex
	access map[peer.ID]access
}

// NewVirtualNetwork returns an empty network: no latency and unlimited
// bandwidth unless options say otherwise.
func NewVirtualNetwork(opts ...VNetOption) *VirtualNetwork {
	vn := &VirtualNetwork{
		links:   make(map[[2]peer.ID]linkParams),
		loss:    make(map[[2]peer.ID]float64),
		rngs:    make(map[[2]peer.ID]*rand.Rand),
		cut:     make(map[[2]peer.ID]bool),
		peers:   make(map[peer.ID]*VirtualPeer),
		done:    make(chan struct{}),
		traffic: make(map[[2]peer.ID]*Traffic),

		sendBuffer: DefaultSendBuffer,
		access:     make(map[peer.ID]access),
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

// SetLoss sets the loss probability p (0 <= p <= 1) of the link between a
// and b, in both directions, overriding the network default (see WithLoss
// for what a lost message is). It applies to messages sent from now on.
func (vn *VirtualNetwork) SetLoss(a, b peer.ID, p float64) {
	checkLoss(p)
	vn.mu.Lock()
	defer vn.mu.Unlock()
	vn.loss[pairKey(a, b)] = p
}

// ConnectAll connects every pair of peers that are not stopped, except
// pairs kept apart by Disconnect and peers that have left (ScheduleChurn).
// Peers need not be started: events wait for their receiver.
func (vn *VirtualNetwork) ConnectAll() {
	vn.mu.Lock()
	defer vn.mu.Unlock()
	for i, a := range vn.order {
		for _, b := range vn.order[i+1:] {
			if vn.reachableLocked(a, b) == nil {
				vn.connectLocked(a, b)
			}
		}
	}
}

// ConnectPairs connects a to each of bs, as a.Connect would, and returns
// the first error, naming the peer (the others are still tried).
func (vn *VirtualNetwork) ConnectPairs(a peer.ID, bs ...peer.ID) error {
	vn.mu.Lock()
	defer vn.mu.Unlock()
	vp, err := vn.lookupLocked(a)
	if err != nil {
		return err
	}
	var first error
	for _, b := range bs {
		if _, err := vp.dialLocked(b); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// Peer returns the peer with ID id, stopped or not, or nil if there is none
// on this network.
func (vn *VirtualNetwork) Peer(id peer.ID) *VirtualPeer {
	vn.mu.Lock()
	defer vn.mu.Unlock()
	return vn.peers[id]
}

// Peers returns every peer of the network, stopped or not, in creation
// order.
func (vn *VirtualNetwork) Peers() []*VirtualPeer {
	vn.mu.Lock()
	defer vn.mu.Unlock()
	return append([]*VirtualPeer(nil), vn.order...)
}

// Close stops every peer (see VirtualPeer.Stop), cancels churn schedules and
// pending ContentRouter queries (their channels close), and returns when all
// of the network's goroutines have exited. It may be called more than once.
// Peers created after Close are not tracked by it.
func (vn *VirtualNetwork) Close() {
	vn.mu.Lock()
	if !vn.closed {
		vn.closed = true
		close(vn.done)
	}
	ps := append([]*VirtualPeer(nil), vn.order...)
	vn.mu.Unlock()
	for _, p := range ps {
		p.Stop()
	}
	vn.bg.Wait()
}

// background runs f on a goroutine that Close waits for, and reports
// whether it did: once the network is closed it does not.
func (vn *VirtualNetwork) background(f func()) bool {
	vn.mu.Lock()
	defer vn.mu.Unlock()
	if vn.closed {
		return false
	}
	vn.bg.Add(1)
	go func() {
		defer vn.bg.Done()
		f()
	}()
	return true
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

// SwarmOf adds n peers to vn with opts, connects them pairwise (see
// NewSwarm), and builds one node on each with build, in order, returning the
// nodes. build typically constructs the component under test over the
// peer, which is its network.Network, and so starts the peer.
func SwarmOf[T any](vn *VirtualNetwork, n int, build func(i int, p *VirtualPeer) T, opts ...PeerOption) []T {
	ps := NewSwarm(vn, n, opts...)
	out := make([]T, n)
	for i, p := range ps {
		out[i] = build(i, p)
	}
	return out
}

// SetAccessLink sets p's access link: up bytes/s for all it sends, down
// bytes/s for all it receives (0: unlimited), overriding WithAccessLinks.
// It applies to frames sent from now on.
func (vn *VirtualNetwork) SetAccessLink(p peer.ID, up, down int) {
	vn.amu.Lock()
	defer vn.amu.Unlock()
	vn.access[p] = access{up: up, down: down}
}

// accessOf returns p's access link. Callers hold vn.amu.
func (vn *VirtualNetwork) accessOf(p peer.ID) access {
	if a, ok := vn.access[p]; ok {
		return a
	}
	return vn.defaultAccess
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

// lossLocked returns the loss probability of the link between a and b.
func (vn *VirtualNetwork) lossLocked(a, b peer.ID) float64 {
	if p, ok := vn.loss[pairKey(a, b)]; ok {
		return p
	}
	return vn.defaultLoss
}

// loseLocked decides whether the next message from one peer to another is
// lost, drawing from that directed link's own stream.
func (vn *VirtualNetwork) loseLocked(from, to peer.ID) bool {
	p := vn.lossLocked(from, to)
	if p <= 0 {
		return false
	}
	k := [2]peer.ID{from, to}
	rng, ok := vn.rngs[k]
	if !ok {
		h := fnv.New64a()
		h.Write([]byte(from))
		h.Write([]byte{0})
		h.Write([]byte(to))
		rng = rand.New(rand.NewPCG(uint64(vn.seed), h.Sum64()))
		vn.rngs[k] = rng
	}
	return rng.Float64() < p
}

// reachableLocked returns nil if a and b, both live, may connect: neither
// has left the network and the pair is not kept apart by Disconnect.
func (vn *VirtualNetwork) reachableLocked(a, b *VirtualPeer) error {
	switch {
	case a.stopped:
		return fmt.Errorf("testutil: peer %s: %w", a.id, ErrPeerStopped)
	case b.stopped:
		return fmt.Errorf("testutil: peer %s: %w", b.id, ErrPeerStopped)
	case a.offline > 0:
		return fmt.Errorf("testutil: peer %s has left the network: %w", a.id, ErrUnreachable)
	case b.offline > 0:
		return fmt.Errorf("testutil: peer %s has left the network: %w", b.id, ErrUnreachable)
	case vn.cut[pairKey(a.id, b.id)]:
		return fmt.Errorf("testutil: peers %s and %s are disconnected: %w", a.id, b.id, ErrUnreachable)
	}
	return nil
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

package testutil

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobitswap/bitswap/message"
	"github.com/gobitswap/bitswap/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// VirtualPeer is one peer of a VirtualNetwork. It implements network.Network;
// its connection manager (TagPeer, Protect...) keeps and records what it is
// told and trims only when told (see Tags, Protections, ConnMgrCalls,
// TrimConnections).
// Its Receiver is called only from link goroutines, never while a lock of
// this package is held, so it may call back into the network; calls about
// one remote peer are made in order (connected, messages, disconnected) from
// one goroutine at a time.
type VirtualPeer struct {
	vn      *VirtualNetwork
	id      peer.ID
	version message.Version

	// started is closed by Start, after receiver and ctx are set; link
	// goroutines wait on it before their first delivery.
	started  chan struct{}
	receiver network.Receiver
	ctx      context.Context
	cancel   context.CancelFunc

	// Guarded by vn.mu.
	stopped   bool
	startedOK bool
	out       map[peer.ID]*link // current outbound link to each connected peer
	lastOut   map[peer.ID]*link // newest outbound link ever made to each peer
	offline   int               // churn absences in progress; reachable only at 0
	rejoin    []peer.ID         // peers to reconnect to when offline returns to 0

	// down is closed by Stop, ending the peer's churn schedules.
	down chan struct{}
	// unresponsive makes deliveries to this peer swallow messages.
	unresponsive atomic.Bool
	// remote makes the peer not local to anyone (see Local).
	remote atomic.Bool

	// stopping is set at the start of Stop, so that link goroutines stop
	// delivering to this peer at once.
	stopping atomic.Bool
	// links counts the goroutines of every link from or to this peer, for
	// Stop to wait on.
	links sync.WaitGroup

	msgsSent, msgsRecv, bytesSent, bytesRecv atomic.Uint64

	// cm is the peer's connection manager (TagPeer, Protect...), which
	// records, and trims only in TrimConnections.
	cm connMgr

	// upBusy and downBusy are when the peer's access links finish what
	// they carry (see WithAccessLinks). Guarded by vn.amu.
	upBusy, downBusy time.Time
}

var _ network.Network = (*VirtualPeer)(nil)

func newVirtualPeer(vn *VirtualNetwork, id peer.ID) *VirtualPeer {
	return &VirtualPeer{
		vn:      vn,
		id:      id,
		version: message.V120,
		started: make(chan struct{}),
		down:    make(chan struct{}),
		out:     make(map[peer.ID]*link),
		lastOut: make(map[peer.ID]*link),
	}
}

// Self returns the peer's ID.
func (vp *VirtualPeer) Self() peer.ID { return vp.id }

// String returns the peer's ID, for test failure messages.
func (vp *VirtualPeer) String() string { return vp.id.String() }

// Start begins delivering messages and connection events to r, including
// PeerConnected for connections made before Start. It panics if called
// twice or after Stop: both are bugs in the test.
func (vp *VirtualPeer) Start(r network.Receiver) {
	vp.vn.mu.Lock()
	defer vp.vn.mu.Unlock()
	if vp.startedOK || vp.stopped {
		panic(fmt.Sprintf("testutil: Start of peer %s called twice or after Stop", vp.id))
	}
	vp.startedOK = true
	vp.receiver = r
	vp.ctx, vp.cancel = context.WithCancel(context.Background())
	close(vp.started)
}

// Stop disconnects the peer from everyone, losing messages in flight, and
// returns once every goroutine of its links has exited. The peers it was
// connected to receive PeerDisconnected; its own Receiver receives nothing
// more once Stop returns (and nothing new once it is called). Sends to a
// stopped peer fail with ErrPeerStopped. Stop may be called more than once,
// and on a peer never started, but not from within its own Receiver.
func (vp *VirtualPeer) Stop() {
	vp.stopping.Store(true)
	vn := vp.vn
	vn.mu.Lock()
	if !vp.stopped {
		vp.stopped = true
		close(vp.down)
		for id := range vp.out {
			vn.disconnectLocked(vp, vn.peers[id])
		}
		if vp.cancel != nil {
			vp.cancel()
		}
	}
	vn.mu.Unlock()
	vp.links.Wait()
}

// SendMessage encodes msg for the version of the link to p, as a length
// prefixed frame, and queues it on the link, connecting first if needed (as
// libp2p dials). It returns once the link's send buffer has room for the
// rest of the frame (WithSendBuffer; at once without a bandwidth cap), not
// when it is delivered; if ctx ends or the connection breaks meanwhile it
// fails, and the part of the frame not yet on the wire is lost: the
// receiver sees an incomplete message, as from a reset stream. It
// fails, naming the peer, if p is unknown or stopped, if this peer is
// stopped, if a dial is needed and the two are kept apart (ErrUnreachable:
// see VirtualNetwork.Disconnect and ScheduleChurn), or if the message is
// over message.MaxMessageSize (ErrTooLarge), as the libp2p network does.
// On a lossy link (WithLoss) the message may be lost after it is queued.
func (vp *VirtualPeer) SendMessage(ctx context.Context, p peer.ID, msg *message.Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	l, v, err := vp.outbound(p)
	if err != nil {
		return fmt.Errorf("testutil: sending message from %s to %s: %w", vp.id, p, err)
	}
	if size := msg.Size(v); size > message.MaxMessageSize {
		return fmt.Errorf("testutil: sending message from %s to %s: %d bytes is over the %d-byte limit: %w",
			vp.id, p, size, message.MaxMessageSize, message.ErrTooLarge)
	}
	it := messageItem(message.AppendFrame(nil, msg, v))
	vn := vp.vn
	vn.mu.Lock()
	params := vn.paramsLocked(vp.id, p)
	it.lost = vn.loseLocked(vp.id, p)
	vn.mu.Unlock()
	release, abort, ok := l.enqueue(it, params)
	if !ok {
		return fmt.Errorf("testutil: sending message from %s to %s: %w", vp.id, p, ErrNotConnected)
	}
	vp.msgsSent.Add(1)
	vp.bytesSent.Add(uint64(len(it.frame)))
	if err := l.waitRoom(ctx, release); err != nil {
		abort.Store(true)
		return fmt.Errorf("testutil: sending message from %s to %s: %w", vp.id, p, err)
	}
	return nil
}

// outbound returns the link to p, connecting if needed, with the link's
// version.
func (vp *VirtualPeer) outbound(p peer.ID) (*link, message.Version, error) {
	vn := vp.vn
	vn.mu.Lock()
	defer vn.mu.Unlock()
	other, err := vp.dialLocked(p)
	if err != nil {
		return nil, 0, err
	}
	return vp.out[p], min(vp.version, other.version), nil
}

// dialLocked connects to p if needed and returns it.
func (vp *VirtualPeer) dialLocked(p peer.ID) (*VirtualPeer, error) {
	if vp.stopped {
		return nil, fmt.Errorf("testutil: peer %s (self): %w", vp.id, ErrPeerStopped)
	}
	if p == vp.id {
		return nil, fmt.Errorf("testutil: peer %s cannot dial itself", p)
	}
	other, err := vp.vn.lookupLocked(p)
	if err != nil {
		return nil, err
	}
	if _, ok := vp.out[p]; !ok {
		if err := vp.vn.reachableLocked(vp, other); err != nil {
			return nil, err
		}
	}
	vp.vn.connectLocked(vp, other)
	return other, nil
}

// Connect connects to ai.ID if not connected. Both sides' receivers get
// PeerConnected. It fails, naming the peer, if ai.ID is unknown, stopped or
// this peer itself, if this peer is stopped, or if the two are kept apart
// (ErrUnreachable: see VirtualNetwork.Disconnect and ScheduleChurn).
func (vp *VirtualPeer) Connect(ctx context.Context, ai peer.AddrInfo) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	vp.vn.mu.Lock()
	defer vp.vn.mu.Unlock()
	_, err := vp.dialLocked(ai.ID)
	return err
}

// DisconnectFrom closes the connection to p, if any, losing messages in
// flight; both sides' receivers get PeerDisconnected after any earlier call
// about the other peer. It does not wait for the events to be delivered.
func (vp *VirtualPeer) DisconnectFrom(ctx context.Context, p peer.ID) error {
	vn := vp.vn
	vn.mu.Lock()
	defer vn.mu.Unlock()
	if other, ok := vn.peers[p]; ok {
		vn.disconnectLocked(vp, other)
	}
	return nil
}

// Version returns the protocol version of the link to p: the lower of the
// two peers' versions. Like the libp2p network, it connects to find out, and
// fails as Connect does.
func (vp *VirtualPeer) Version(ctx context.Context, p peer.ID) (message.Version, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	vp.vn.mu.Lock()
	defer vp.vn.mu.Unlock()
	other, err := vp.dialLocked(p)
	if err != nil {
		return 0, fmt.Errorf("testutil: version of %s: %w", p, err)
	}
	return min(vp.version, other.version), nil
}

// Latency returns the round-trip time to p, the sum of the one-way
// latencies of both directions, as libp2p's peerstore measures it; 0 when
// not connected.
func (vp *VirtualPeer) Latency(p peer.ID) time.Duration {
	vn := vp.vn
	vn.mu.Lock()
	defer vn.mu.Unlock()
	if _, ok := vp.out[p]; !ok {
		return 0
	}
	return vn.paramsLocked(vp.id, p).latency + vn.paramsLocked(p, vp.id).latency
}

// Local reports whether p is local to this peer: every peer of the
// virtual network is, as on loopback, unless either was marked remote
// (VirtualNetwork.SetRemote).
func (vp *VirtualPeer) Local(p peer.ID) bool {
	vn := vp.vn
	vn.mu.Lock()
	q := vn.peers[p]
	vn.mu.Unlock()
	return !vp.remote.Load() && (q == nil || !q.remote.Load())
}

// Stats returns the messages and framed bytes (length prefixes included)
// this peer has sent (queued) and received (delivered) so far. Bytes of an
// inbound frame that fails to decode count as received; the message does
// not. Messages lost (WithLoss), swallowed (SetUnresponsive) or cut off in
// flight count as sent but not received; VirtualNetwork.Traffic says which.
func (vp *VirtualPeer) Stats() network.Stats {
	return network.Stats{
		MessagesSent:     vp.msgsSent.Load(),
		MessagesReceived: vp.msgsRecv.Load(),
		BytesSent:        vp.bytesSent.Load(),
		BytesReceived:    vp.bytesRecv.Load(),
	}
}

// IsConnected reports whether this peer is connected to p.
func (vp *VirtualPeer) IsConnected(p peer.ID) bool {
	vp.vn.mu.Lock()
	defer vp.vn.mu.Unlock()
	_, ok := vp.out[p]
	return ok
}

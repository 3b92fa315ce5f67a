package vtime

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	bsmsg "github.com/ipfs/boxo/bitswap/message"
	bsnet "github.com/ipfs/boxo/bitswap/network"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/ping"

	"github.com/gobitswap/bitswap/message"
	"github.com/gobitswap/bitswap/network"
	"github.com/gobitswap/bitswap/testutil"
)

// BoxoNetwork puts boxo's Bitswap on our virtual network: it implements
// boxo's BitSwapNetwork on top of a testutil.VirtualPeer, speaking
// /ipfs/bitswap/1.2.0. Each side keeps its own codec: an outgoing boxo
// message is marshalled by boxo (ToNetV1), and the frame is decoded with our
// message.Unmarshal and queued on the virtual link, which re-encodes it with
// our codec (so the link carries, and Traffic counts, the bytes our encoder
// writes for that message); an incoming message is marshalled by our codec
// for 1.2.0 and decoded by boxo (bsmsg.FromNet) before boxo's receivers see
// it. Connection events of the virtual peer become boxo's
// PeerConnected/PeerDisconnected.
type BoxoNetwork struct {
	vp *testutil.VirtualPeer

	mu        sync.Mutex
	receivers []bsnet.Receiver

	msgsSent, msgsRecv atomic.Uint64
	// nativeBytes counts the framed bytes boxo's own encoder produced for
	// the messages it sent, to compare with what our encoder put on the link.
	nativeBytes atomic.Uint64
	convErrs    atomic.Uint64
}

var (
	_ bsnet.BitSwapNetwork = (*BoxoNetwork)(nil)
	_ network.Receiver     = (*BoxoNetwork)(nil)
)

// NewBoxoNetwork wraps vp, which must not be started: boxo's bitswap.New
// starts it (through Start).
func NewBoxoNetwork(vp *testutil.VirtualPeer) *BoxoNetwork {
	return &BoxoNetwork{vp: vp}
}

// NativeBytes returns the framed bytes boxo's encoder produced for every
// message sent so far (our encoder's count of the same messages is in the
// virtual network's Traffic).
func (n *BoxoNetwork) NativeBytes() uint64 { return n.nativeBytes.Load() }

// ConversionErrors counts messages that failed to cross between the codecs
// (boxo's bytes not decoding with ours, or the reverse).
func (n *BoxoNetwork) ConversionErrors() uint64 { return n.convErrs.Load() }

// toOurs converts a boxo message into ours through boxo's wire bytes.
func (n *BoxoNetwork) toOurs(m bsmsg.BitSwapMessage) (*message.Message, error) {
	var buf bytes.Buffer
	if err := m.ToNetV1(&buf); err != nil {
		return nil, fmt.Errorf("vtime: boxo encode: %w", err)
	}
	n.nativeBytes.Add(uint64(buf.Len()))
	body, rest, err := message.ParseFrame(buf.Bytes(), message.MaxMessageSize)
	if err == nil && len(rest) != 0 {
		err = fmt.Errorf("%d bytes after the frame", len(rest))
	}
	if err != nil {
		n.convErrs.Add(1)
		return nil, fmt.Errorf("vtime: boxo frame: %w", err)
	}
	msg, err := message.Unmarshal(body)
	if err != nil {
		n.convErrs.Add(1)
		return nil, fmt.Errorf("vtime: boxo message does not decode with ours: %w", err)
	}
	return msg, nil
}

// toBoxo converts one of our messages into boxo's through our wire bytes.
func toBoxo(m *message.Message) (bsmsg.BitSwapMessage, error) {
	frame := message.AppendFrame(nil, m, message.V120)
	bm, _, err := bsmsg.FromNet(bytes.NewReader(frame))
	if err != nil {
		return nil, fmt.Errorf("vtime: our message does not decode with boxo's: %w", err)
	}
	return bm, nil
}

// SendMessage implements bsnet.BitSwapNetwork.
func (n *BoxoNetwork) SendMessage(ctx context.Context, p peer.ID, m bsmsg.BitSwapMessage) error {
	msg, err := n.toOurs(m)
	if err != nil {
		return err
	}
	if err := n.vp.SendMessage(ctx, p, msg); err != nil {
		return err
	}
	n.msgsSent.Add(1)
	return nil
}

// Start implements bsnet.BitSwapNetwork: it starts the virtual peer with the
// adapter as its Receiver.
func (n *BoxoNetwork) Start(rs ...bsnet.Receiver) {
	n.mu.Lock()
	n.receivers = append([]bsnet.Receiver(nil), rs...)
	n.mu.Unlock()
	n.vp.Start(n)
}

// Stop implements bsnet.BitSwapNetwork: it stops the virtual peer.
func (n *BoxoNetwork) Stop() { n.vp.Stop() }

func (n *BoxoNetwork) each(f func(bsnet.Receiver)) {
	n.mu.Lock()
	rs := n.receivers
	n.mu.Unlock()
	for _, r := range rs {
		f(r)
	}
}

// ReceiveMessage implements our network.Receiver.
func (n *BoxoNetwork) ReceiveMessage(ctx context.Context, from peer.ID, msg *message.Message) error {
	bm, err := toBoxo(msg)
	if err != nil {
		n.convErrs.Add(1)
		n.each(func(r bsnet.Receiver) { r.ReceiveError(err) })
		return nil
	}
	n.msgsRecv.Add(1)
	n.each(func(r bsnet.Receiver) { r.ReceiveMessage(ctx, from, bm) })
	return nil
}

// ReceiveError implements our network.Receiver.
func (n *BoxoNetwork) ReceiveError(from peer.ID, err error) {
	n.each(func(r bsnet.Receiver) { r.ReceiveError(fmt.Errorf("from %s: %w", from, err)) })
}

// PeerConnected implements our network.Receiver.
func (n *BoxoNetwork) PeerConnected(p peer.ID) {
	n.each(func(r bsnet.Receiver) { r.PeerConnected(p) })
}

// PeerDisconnected implements our network.Receiver.
func (n *BoxoNetwork) PeerDisconnected(p peer.ID) {
	n.each(func(r bsnet.Receiver) { r.PeerDisconnected(p) })
}

// Connect implements bsnet.BitSwapNetwork.
func (n *BoxoNetwork) Connect(ctx context.Context, ai peer.AddrInfo) error {
	return n.vp.Connect(ctx, ai)
}

// DisconnectFrom implements bsnet.BitSwapNetwork.
func (n *BoxoNetwork) DisconnectFrom(ctx context.Context, p peer.ID) error {
	return n.vp.DisconnectFrom(ctx, p)
}

// IsConnectedToPeer implements bsnet.BitSwapNetwork.
func (n *BoxoNetwork) IsConnectedToPeer(_ context.Context, p peer.ID) bool {
	return n.vp.IsConnected(p)
}

// NewMessageSender implements bsnet.BitSwapNetwork. Like boxo's libp2p
// network, it connects first and fails if it cannot.
func (n *BoxoNetwork) NewMessageSender(ctx context.Context, p peer.ID, _ *bsnet.MessageSenderOpts) (bsnet.MessageSender, error) {
	if err := n.vp.Connect(ctx, peer.AddrInfo{ID: p}); err != nil {
		return nil, err
	}
	return &boxoSender{n: n, to: p}, nil
}

// Host implements bsnet.BitSwapNetwork. There is no libp2p host: boxo asks
// for one only for broadcast reduction with MaxPeers set and neither
// LocalPeers nor PeeredPeers (client.New), which the defaults do not enable.
func (n *BoxoNetwork) Host() host.Host { return nil }

// Stats implements bsnet.BitSwapNetwork.
func (n *BoxoNetwork) Stats() bsnet.Stats {
	return bsnet.Stats{MessagesSent: n.msgsSent.Load(), MessagesRecvd: n.msgsRecv.Load()}
}

// Self implements bsnet.BitSwapNetwork.
func (n *BoxoNetwork) Self() peer.ID { return n.vp.Self() }

// Ping implements bsnet.Pinger with the link's round-trip time.
func (n *BoxoNetwork) Ping(_ context.Context, p peer.ID) ping.Result {
	return ping.Result{RTT: n.vp.Latency(p)}
}

// Latency implements bsnet.Pinger with the link's round-trip time.
func (n *BoxoNetwork) Latency(p peer.ID) time.Duration { return n.vp.Latency(p) }

// TagPeer is a no-op.
func (n *BoxoNetwork) TagPeer(peer.ID, string, int) {}

// UntagPeer is a no-op.
func (n *BoxoNetwork) UntagPeer(peer.ID, string) {}

// Protect is a no-op.
func (n *BoxoNetwork) Protect(peer.ID, string) {}

// Unprotect is a no-op.
func (n *BoxoNetwork) Unprotect(peer.ID, string) bool { return false }

// boxoSender is boxo's MessageSender for one peer: each SendMsg queues the
// message on the virtual link, which returns once queued (as a buffered
// stream write does).
type boxoSender struct {
	n  *BoxoNetwork
	to peer.ID
}

func (s *boxoSender) SendMsg(ctx context.Context, m bsmsg.BitSwapMessage) error {
	return s.n.SendMessage(ctx, s.to, m)
}

func (s *boxoSender) Reset() error { return nil }

func (s *boxoSender) SupportsHave() bool { return true }

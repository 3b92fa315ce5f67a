// Package bitswap is an embeddable implementation of IPFS Bitswap, the
// block-exchange protocol of IPFS, wire-compatible with boxo, Kubo, Helia and
// Iroh on /ipfs/bitswap/1.2.0, 1.1.0 and 1.0.0.
//
// Bitswap is a thin facade: it wires the network to the Engine (the server,
// which answers other peers' wants from the blockstore) and shares one Ledger
// between them. It holds no protocol logic of its own. The client half
// (sessions, GetBlocks) plugs into the same receiver.
package bitswap

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"

	blocks "github.com/ipfs/go-block-format"
	cid "github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/gobitswap/bitswap/blockstore"
	"github.com/gobitswap/bitswap/engine"
	"github.com/gobitswap/bitswap/ledger"
	"github.com/gobitswap/bitswap/message"
	"github.com/gobitswap/bitswap/network"
)

// Option configures a Bitswap instance.
type Option func(*config)

type config struct {
	engineOpts []engine.Option
	logger     *slog.Logger
}

// WithTaskWorkerCount sets how many server workers read blocks and send them
// in parallel (default engine.DefaultTaskWorkerCount, 8).
func WithTaskWorkerCount(n int) Option { return engineOption(engine.WithTaskWorkerCount(n)) }

// WithTargetMessageSize sets how many bytes of blocks and presences the
// server packs into one message (default 16 KiB; a larger block goes alone).
func WithTargetMessageSize(n int) Option { return engineOption(engine.WithTargetMessageSize(n)) }

// WithMaxOutstandingBytesPerPeer caps the bytes the server has taken off the
// queue for one peer and not yet sent (default 1 MiB).
func WithMaxOutstandingBytesPerPeer(n int) Option {
	return engineOption(engine.WithMaxOutstandingBytesPerPeer(n))
}

// WithMaxActiveWantsPerPeer caps the wants per peer that the server is
// looking up or has queued for sending (default 1,024). Further wants are
// held, unchecked, up to WithMaxWantsPerPeer.
func WithMaxActiveWantsPerPeer(n int) Option {
	return engineOption(engine.WithMaxActiveWantsPerPeer(n))
}

// WithMaxWantsPerPeer caps the wantlist entries held for one peer (default
// 32,768). Wants over the cap are dropped and counted.
func WithMaxWantsPerPeer(n int) Option { return engineOption(engine.WithMaxWantsPerPeer(n)) }

// WithMaxWantsTotal caps the wantlist entries held for all peers together
// (default 262,144).
func WithMaxWantsTotal(n int) Option { return engineOption(engine.WithMaxWantsTotal(n)) }

// WithMaxCidSize sets the largest CID, in bytes, that a peer may want
// (default 168).
func WithMaxCidSize(n int) Option { return engineOption(engine.WithMaxCidSize(n)) }

// WithWantHaveReplaceSize sets the largest block the server sends instead of
// a HAVE in answer to a want-have (default 1,024 bytes; 0 disables).
func WithWantHaveReplaceSize(n int) Option { return engineOption(engine.WithMaxReplaceSize(n)) }

// WithPeerBlockRequestFilter lets the application refuse a peer a block: when
// f returns false the server behaves as if it lacked the block.
func WithPeerBlockRequestFilter(f engine.PeerBlockRequestFilter) Option {
	return engineOption(engine.WithPeerBlockRequestFilter(f))
}

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option {
	return func(c *config) {
		c.logger = l
		c.engineOpts = append(c.engineOpts, engine.WithLogger(l))
	}
}

func engineOption(o engine.Option) Option {
	return func(c *config) { c.engineOpts = append(c.engineOpts, o) }
}

// Bitswap exchanges blocks with peers over a Network.
type Bitswap struct {
	net    network.Network
	bs     blockstore.Blockstore
	ledger *ledger.Ledger
	engine *engine.Engine
	logger *slog.Logger

	stopOnCtx func() bool
	closeOnce sync.Once

	messagesReceived atomic.Uint64
	receiveErrors    atomic.Uint64

	mu    sync.Mutex // guards peers
	peers map[peer.ID]struct{}
}

// New starts Bitswap on net, serving blocks from bs. It runs until Close is
// called or ctx is cancelled. net is started here and stopped by Close; use
// network.NewFromHost to build one from a libp2p host.
func New(ctx context.Context, net network.Network, bs blockstore.Blockstore, opts ...Option) *Bitswap {
	cfg := config{logger: slog.Default()}
	for _, o := range opts {
		o(&cfg)
	}
	l := ledger.New()
	b := &Bitswap{
		net:    net,
		bs:     bs,
		ledger: l,
		engine: engine.New(bs, net, l, cfg.engineOpts...),
		logger: cfg.logger,
		peers:  make(map[peer.ID]struct{}),
	}
	b.engine.Start()
	net.Start((*receiver)(b))
	b.stopOnCtx = context.AfterFunc(ctx, func() { _ = b.Close() })
	return b
}

// NotifyNewBlocks tells Bitswap that these blocks are now in the blockstore,
// so that peers waiting for them are served. Bitswap does not store them:
// put them in the blockstore first.
func (b *Bitswap) NotifyNewBlocks(ctx context.Context, blks ...blocks.Block) error {
	b.engine.NotifyNewBlocks(ctx, blks...)
	return nil
}

// LedgerForPeer returns what we have exchanged with p.
func (b *Bitswap) LedgerForPeer(p peer.ID) *ledger.Receipt {
	r := b.ledger.Receipt(p)
	return &r
}

// WantlistForPeer returns the CIDs that p currently wants from us.
func (b *Bitswap) WantlistForPeer(p peer.ID) []cid.Cid {
	return b.engine.WantlistForPeer(p)
}

// Stat is a snapshot of Bitswap's counters.
type Stat struct {
	// Peers are the connected Bitswap peers.
	Peers            []string
	BlocksSent       uint64
	DataSent         uint64
	MessagesReceived uint64
	// Server holds the server's detailed counters.
	Server engine.Stat
	// Network holds the transport's counters.
	Network network.Stats
}

// Stat returns a snapshot of Bitswap's counters.
func (b *Bitswap) Stat() (*Stat, error) {
	es := b.engine.Stat()
	s := &Stat{
		BlocksSent:       es.BlocksSent,
		DataSent:         es.DataSent,
		MessagesReceived: b.messagesReceived.Load(),
		Server:           es,
		Network:          b.net.Stats(),
	}
	b.mu.Lock()
	for p := range b.peers {
		s.Peers = append(s.Peers, p.String())
	}
	b.mu.Unlock()
	return s, nil
}

// Close stops serving and stops the network. It is safe to call more than
// once.
func (b *Bitswap) Close() error {
	b.closeOnce.Do(func() {
		if b.stopOnCtx != nil {
			b.stopOnCtx()
		}
		b.net.Stop()
		b.engine.Close()
	})
	return nil
}

// receiver is Bitswap's side of network.Receiver, kept off the public method
// set.
type receiver Bitswap

func (r *receiver) ReceiveMessage(ctx context.Context, from peer.ID, msg *message.Message) {
	r.messagesReceived.Add(1)
	r.engine.MessageReceived(ctx, from, msg)
	// Incoming blocks and presences belong to the client half (BlockRouter),
	// which is not wired yet; the server has no use for them.
}

func (r *receiver) ReceiveError(from peer.ID, err error) {
	r.receiveErrors.Add(1)
	r.logger.Debug("bitswap: bad inbound stream", "peer", from, "err", err)
}

func (r *receiver) PeerConnected(p peer.ID) {
	r.mu.Lock()
	r.peers[p] = struct{}{}
	r.mu.Unlock()
}

func (r *receiver) PeerDisconnected(p peer.ID) {
	r.mu.Lock()
	delete(r.peers, p)
	r.mu.Unlock()
	r.engine.PeerDisconnected(p)
}

// Package bitswap is an embeddable implementation of IPFS Bitswap, the
// block-exchange protocol of IPFS, wire-compatible with boxo, Kubo, Helia and
// Iroh on /ipfs/bitswap/1.2.0, 1.1.0 and 1.0.0.
//
// Bitswap is a thin facade that wires the components together and holds no
// protocol logic: GetBlocks calls become Sessions, which decide where to send
// wants and hand them to the WantManager; incoming messages go to the Engine
// (the server: other peers' wants), the BlockRouter (blocks, to the Sessions
// and the blockstore) and the PeerRouter (HAVE/DONT_HAVE, connections). The
// Ledger is shared. *Bitswap has the method set of boxo's exchange.Interface,
// and a Session that of exchange.Fetcher; the boxocompat module makes it
// boxo's exchange.SessionExchange. docs/migrating-from-boxo.md maps boxo's
// options and calls to these.
//
// Observability: Stat has the counters; package metrics exports them, and
// histograms an Observer feeds, to Prometheus; OpenTelemetry spans with
// boxo's names go to the global tracer provider (WithTracerProvider).
package bitswap

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	blocks "github.com/ipfs/go-block-format"
	cid "github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/routing"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/gobitswap/bitswap/blockrouter"
	"github.com/gobitswap/bitswap/blockstore"
	"github.com/gobitswap/bitswap/engine"
	"github.com/gobitswap/bitswap/ledger"
	"github.com/gobitswap/bitswap/message"
	"github.com/gobitswap/bitswap/network"
	"github.com/gobitswap/bitswap/peerrouter"
	"github.com/gobitswap/bitswap/providers"
	"github.com/gobitswap/bitswap/session"
	"github.com/gobitswap/bitswap/wantmanager"
)

// Option configures a Bitswap instance. One rule holds for every option
// that takes a number or a duration, here and in every library package
// (testutil, test scaffolding, documents its own): 0 keeps the default; a
// negative value means none (no cap, no retries, never) where the option's
// doc says what none is, and otherwise keeps the default too. No option
// panics.
type Option func(*config)

type config struct {
	engineOpts     []engine.Option
	routerOpts     []blockrouter.Option
	wmOpts         []wantmanager.Option
	session        session.Config
	routing        routing.ContentDiscovery
	providers      providers.Config
	logger         *slog.Logger
	noServer       bool
	tracer         Tracer
	notifier       func(peer.ID, []ReceivedBlock)
	observers      []Observer
	tracerProvider trace.TracerProvider
	// The connection manager (WithPeerTagging and the options after it).
	noTagging, noProtect        bool
	sessionTagVal, serverTagVal int
	protected                   []peer.ID
}

// The facade wires the network into the WantManager.
var _ wantmanager.Network = network.Network(nil)

// Client defaults (see the With... options).
const (
	DefaultPeerTimeout            = session.DefaultPeerTimeout
	DefaultRebroadcastInterval    = session.DefaultRebroadcastInterval
	DefaultProviderSearchDelay    = session.DefaultProviderSearchDelay
	DefaultPeerWantWindow         = wantmanager.DefaultPeerWantWindow
	DefaultProviderSearchInterval = session.DefaultProviderSearchInterval
)

// WithContentRouting lets Sessions ask r for providers of blocks that no
// connected peer has (e.g. a go-libp2p-kad-dht). The searches of all
// Sessions go through one provider query layer (package providers, as
// boxo's providerquerymanager): one query per CID however many Sessions
// ask for it, at most 8 at once (WithMaxProviderQueries), each at most
// 10 s (WithProviderQueryTimeout) and 10 providers
// (WithMaxProvidersPerQuery); each provider found is connected to and
// told to every Session that wants the CID. If r also implements
// routing.PeerRouting (a DHT does), a provider whose addresses fail is
// looked up with FindPeer and dialled once more (WithPeerRouting sets
// another). Nothing is ever provided (announced) through r: that is the
// application's business, as with boxo's client, which takes the same
// routing.ContentDiscovery. Any routing.ContentRouting is one. Without it,
// or with nil, only connected peers are asked.
func WithContentRouting(r routing.ContentDiscovery) Option {
	return func(c *config) { c.routing = r }
}

// WithMaxProviderQueries caps the provider queries running at once, for
// all Sessions together (default 8, boxo's; negative: no cap). Further
// queries wait their turn; see WithProviderQueryQueue.
func WithMaxProviderQueries(n int) Option {
	return func(c *config) { c.providers.MaxConcurrent = n }
}

// WithProviderQueryQueue caps the provider queries waiting for a slot
// (default 256; negative: no bound). When it is full the oldest waiting
// query is dropped for the new one, and counted in
// Stat().Providers.Dropped: a Session asks again for what it still lacks.
func WithProviderQueryQueue(n int) Option {
	return func(c *config) { c.providers.MaxQueued = n }
}

// WithProviderQueryTimeout bounds one provider query, from when it starts
// (default 10 s, boxo's; negative: none).
func WithProviderQueryTimeout(d time.Duration) Option {
	return func(c *config) { c.providers.Timeout = d }
}

// WithMaxProvidersPerQuery sets how many providers one query connects to
// and hands to the Sessions before it stops (default 10, boxo's;
// negative: no cap).
func WithMaxProvidersPerQuery(n int) Option {
	return func(c *config) { c.providers.MaxProviders = n }
}

// WithIgnoredProviders lists peers that provider queries never connect to
// nor hand to Sessions, whatever content routing says of them (this node
// is always ignored). Each call replaces the list.
func WithIgnoredProviders(ps ...peer.ID) Option {
	return func(c *config) { c.providers.Ignore = append([]peer.ID(nil), ps...) }
}

// WithPeerRouting sets where provider queries look up fresh addresses of
// a provider that could not be connected to at those content routing gave
// (one FindPeer, then one more dial if it names an address not tried).
// Default, or nil: the content router, if it implements
// routing.PeerRouting; else no retry.
func WithPeerRouting(r routing.PeerRouting) Option {
	return func(c *config) { c.providers.PeerRouting = r }
}

// WithProviderSearchDelay sets how long a want may go unanswered by any HAVE
// before content routing is asked (default 500 ms; boxo waits 1 s). When
// every broadcast target has said DONT_HAVE the search starts at once. d <= 0
// keeps the default, as for every duration option of the client.
func WithProviderSearchDelay(d time.Duration) Option {
	return func(c *config) { c.session.ProviderSearchDelay = d }
}

// WithRebroadcastInterval sets how often a want that no peer is working on
// is asked again, with want-have, of the broadcast targets that have not
// said DONT_HAVE for it (default 1 min, boxo's; d <= 0 keeps it).
func WithRebroadcastInterval(d time.Duration) Option {
	return func(c *config) { c.session.RebroadcastInterval = d }
}

// WithBroadcastControl(false) sends want-haves about wants nobody is known
// to have to every connected peer, as boxo does by default. With it on, the
// default, they go only to the broadcast targets: peers that have sent this
// node a HAVE or a wanted block since they connected, peers named by
// WithBroadcastPeers, local peers (loopback, LAN; see
// WithBroadcastControlLocal), and a few random others
// (WithBroadcastRandomPeers), at most WithBroadcastMaxPeers per want; and
// while a Session knows no peer that has served it, its want-blocks go to
// these targets only. Peers outside them are reached through content
// routing. boxo's BroadcastControlEnable, on by default here (as in Kubo).
func WithBroadcastControl(enabled bool) Option {
	return func(c *config) { c.session.BroadcastAll = !enabled }
}

// WithBroadcastMaxPeers caps the peers one want is broadcast to in one
// round (default 64; n < 0: no cap). Served peers come first, then named,
// local and random ones. boxo's BroadcastControlMaxPeers, except that 0
// keeps the default.
func WithBroadcastMaxPeers(n int) Option {
	return func(c *config) { c.session.BroadcastMaxPeers = n }
}

// WithBroadcastRandomPeers sets how many peers that are no broadcast target
// otherwise are asked all the same, chosen at random for each Session and
// rebroadcast round (default 3; n < 0: none). boxo's
// BroadcastControlMaxRandomPeers.
func WithBroadcastRandomPeers(n int) Option {
	return func(c *config) { c.session.BroadcastRandomPeers = n }
}

// WithBroadcastControlLocal(true) applies broadcast control to local peers
// too; by default they are always asked. boxo's
// BroadcastControlLocalPeers.
func WithBroadcastControlLocal(enabled bool) Option {
	return func(c *config) { c.session.BroadcastControlLocal = enabled }
}

// WithBroadcastPeers names peers that are always broadcast targets (a
// peering agreement, say: boxo's PeeredPeers, which it learns from the
// connection manager's peering tag). Each call adds to the list.
func WithBroadcastPeers(ids ...peer.ID) Option {
	return func(c *config) { c.protected = append(c.protected, ids...) }
}

type providersKey struct{}

// WithProviders returns a context under which GetBlock, GetBlocks and
// NewSession ask only these peers: no broadcast, no provider search (a
// request that knows where its data is; boxo has no such thing, Helia has a
// providers hint). Each is asked want-block as if it had said HAVE; peers
// not connected are dialled with the addresses given (none: the host's
// peerstore). A Session made under it keeps the set for all its requests;
// requests to a Session ignore it.
func WithProviders(ctx context.Context, ais ...peer.AddrInfo) context.Context {
	return context.WithValue(ctx, providersKey{}, slices.Clone(ais))
}

func providersOf(ctx context.Context) []peer.AddrInfo {
	ais, _ := ctx.Value(providersKey{}).([]peer.AddrInfo)
	return ais
}

// WithPeerTimeout sets the least time a peer with our wants outstanding may
// stay silent before they are moved to other peers (default 1 s; it grows
// with the peer's measured latency and per-block time; d <= 0 keeps it).
func WithPeerTimeout(d time.Duration) Option {
	return func(c *config) { c.session.PeerTimeout = d }
}

// WithRequestBuffer bounds, in bytes, the blocks one GetBlocks request
// holds that its reader has not taken (default 256 MiB; negative: no
// bound): a request asks for more blocks only as its reader takes them, so
// a slow reader slows its own request and no other. See
// session.Config.RequestBuffer.
func WithRequestBuffer(n int) Option {
	return func(c *config) { c.session.RequestBuffer = n }
}

// WithPeerWantWindow caps the wants outstanding at one peer (default 256).
// Servers in the wild hold at most 1,024 wants per peer and drop the rest
// silently, so more would stall; the rest wait here and go out as answers
// come back.
func WithPeerWantWindow(n int) Option {
	return func(c *config) { c.wmOpts = append(c.wmOpts, wantmanager.WithPeerWantWindow(n)) }
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
// (default 262,144). At the cap a new want displaces a want not yet looked
// up of the peer holding the most (if it holds at least two more than the
// asker; counted in Stat().Server.WantsDisplaced), so peers that fill the
// total cannot lock out one that asks later.
func WithMaxWantsTotal(n int) Option { return engineOption(engine.WithMaxWantsTotal(n)) }

// WithMaxParkedWants caps the wants held for all peers together for blocks
// the server lacks, waiting in case they arrive (default 32,768; negative
// for no cap). Past it the oldest such want is forgotten, as if its peer had
// cancelled it, and counted in Stat().Server.WantsEvicted; new wants are
// never refused for it, so peers asking for blocks we lack cannot crowd out
// the rest.
func WithMaxParkedWants(n int) Option { return engineOption(engine.WithMaxParkedWants(n)) }

// WithMaxCidSize sets the largest CID, in bytes, that a peer may want
// (default 168).
func WithMaxCidSize(n int) Option { return engineOption(engine.WithMaxCidSize(n)) }

// WithWantHaveReplaceSize sets the largest block the server sends instead of
// a HAVE in answer to a want-have (default 1,024 bytes; negative disables).
func WithWantHaveReplaceSize(n int) Option { return engineOption(engine.WithWantHaveReplaceSize(n)) }

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
		c.wmOpts = append(c.wmOpts, wantmanager.WithLogger(l))
	}
}

// WithMaxUnrequested sets how far the blocks a peer sends unasked may
// outnumber those we wanted from it, during one connection, before its
// messages count against it like malformed ones (and it is disconnected
// after a few; see network.WithMaxMalformed). The default is
// blockrouter.DefaultMaxUnrequested; n < 0 tolerates any number.
func WithMaxUnrequested(n int) Option {
	return func(c *config) { c.routerOpts = append(c.routerOpts, blockrouter.WithMaxUnrequested(n)) }
}

// Connection-manager defaults (see WithPeerTagging).
const (
	DefaultSessionPeerTagValue = 5
	DefaultServerPeerTagValue  = 3
)

// WithPeerTagging(false) keeps Bitswap from telling the host's connection
// manager which peers matter; the default, true, tells it through the
// Network (network.PeerTagger; a libp2p host's ConnManager), so that a
// trim down to the host's watermarks cuts idle peers and never a
// transfer:
//
//   - A Session tags each peer that sends it a block or a HAVE
//     "bs-ses-<id>" (boxo's name) with WithSessionPeerTagValue's value,
//     until the peer disconnects or the Session ends (a one-off Session of
//     GetBlocks ends with its request).
//   - A peer that holds a want-block of ours, and may be sending us the
//     block, is protected under "bs-wants" (wantmanager.ProtectTag) until
//     it holds none (WithPeerProtection). Want-haves, which a Session may
//     send to every peer, do not protect.
//   - The server tags each peer it has work for "bs-engine-queued" with
//     WithServerPeerTagValue's value, lower than a Session's: while its
//     wants are looked up, queued or sent, and 5 s more if it was sent a
//     block or a HAVE.
//
// Everything is released as it stops being true, and all of it by Close.
// Two Bitswap instances on one host share these tag names.
func WithPeerTagging(enabled bool) Option {
	return func(c *config) { c.noTagging = !enabled }
}

// WithSessionPeerTagValue sets the value of the tag a Session puts on its
// peers (default DefaultSessionPeerTagValue, 5, as boxo's; negative: no
// such tag).
func WithSessionPeerTagValue(n int) Option {
	return func(c *config) { c.sessionTagVal = n }
}

// WithServerPeerTagValue sets the value of the tag the server puts on the
// peers it has work for (default DefaultServerPeerTagValue, 3; negative: no
// such tag). It has no effect on a client-only node.
func WithServerPeerTagValue(n int) Option {
	return func(c *config) { c.serverTagVal = n }
}

// WithPeerProtection(false) keeps Bitswap from protecting the peers that
// hold want-blocks of ours (see WithPeerTagging): a trim may then cut one
// whose tags are worth less than others', even while it sends us blocks.
// The default is true.
func WithPeerProtection(enabled bool) Option {
	return func(c *config) { c.noProtect = !enabled }
}

// tagValue is the value an option set to n gives a tag whose default is
// def: 0 keeps the default, a negative n means none (0).
func tagValue(n, def int) int {
	switch {
	case n == 0:
		return def
	case n < 0:
		return 0
	}
	return n
}

// WithServerEnabled(false) makes a client-only node: it fetches as any
// other, but serves nothing. Its Engine is never started and the wantlists
// peers send are ignored, so a peer that asks it for blocks hears nothing
// at all (no block, HAVE or DONT_HAVE), as from boxo's node with the same
// option; it waits out its own timeouts and asks elsewhere. The node still
// speaks Bitswap (it must, to receive blocks), so peers see it as a
// Bitswap peer. NotifyNewBlocks then serves no peer (it still ends our own
// requests for the blocks), WantlistForPeer is empty for every other peer
// and Stat's server counters stay 0. The server options are accepted and have no
// effect. The default is true.
func WithServerEnabled(enabled bool) Option {
	return func(c *config) { c.noServer = !enabled }
}

// ReceivedBlock is a block that arrived from a peer while a Session wanted
// it, with how long it was wanted (Delay: since the first Session still
// wanting it took it on, which for GetBlocks is when the CID was asked for,
// or, past the request's buffer, when the reader made room for it). It is a
// blocks.Block, like boxo's traceability.Block.
type ReceivedBlock = blockrouter.Received

// WithBlockReceivedNotifier has f told of the blocks each message from a
// peer brought that some Session wanted, with their sender and delay: boxo's
// client.WithBlockReceivedNotifier, whose ReceivedBlocks(peer.ID,
// []blocks.Block) it replaces, and its WithTraceBlock (From, Delay) in one.
// The BlockRouter calls f once per message with wanted blocks, after
// storing and delivering them, in the sending peer's delivery goroutine:
// f must not block for long (it holds up that peer's next message), and it
// must not keep or modify blks. Duplicates and unrequested blocks, and
// blocks found in the blockstore, are not reported. nil: none.
func WithBlockReceivedNotifier(f func(from peer.ID, blks []ReceivedBlock)) Option {
	return func(c *config) { c.notifier = f }
}

// Tracer sees every Bitswap message this node sends or receives, like
// boxo's tracer.Tracer, with our message type. MessageReceived is called
// with each decoded inbound message before it is handled (in the sender's
// delivery goroutine; messages that do not decode are never seen),
// MessageSent after each message the server or the client's WantManager
// has written successfully (in the sending goroutine; boxo traces only its
// server's). Both must return quickly and must neither keep nor modify msg.
type Tracer interface {
	MessageReceived(from peer.ID, msg *message.Message)
	MessageSent(to peer.ID, msg *message.Message)
}

// WithTracer sets a Tracer (boxo's bitswap.WithTracer). nil: none.
func WithTracer(t Tracer) Option { return func(c *config) { c.tracer = t } }

// Observer is told of events as they happen, for figures that need each
// event rather than a count: package metrics feeds Prometheus histograms
// from one (the counters are Stat's). Every field is optional (nil: not
// told). Each function runs in the goroutine where its event happens, must
// return quickly, and must neither keep nor modify its arguments.
type Observer struct {
	// MessageReceived is told of each decoded inbound message before it is
	// handled, as a Tracer's is.
	MessageReceived func(from peer.ID, msg *message.Message)
	// MessageSent is told of each message the server or the WantManager
	// has written successfully, with how long writing it took (waiting for
	// the peer's stream included).
	MessageSent func(to peer.ID, msg *message.Message, took time.Duration)
	// BlocksReceived is told what the function of WithBlockReceivedNotifier
	// is: the wanted blocks of each message, with their sender and how
	// long each was wanted.
	BlocksReceived func(from peer.ID, blks []ReceivedBlock)
	// WantsWaiting is told, each time the WantManager takes wants to send
	// to p, how many more of p's wants wait for a slot in its want window
	// (WithPeerWantWindow): the depth of p's send queue as it is served.
	WantsWaiting func(p peer.ID, n int)
	// ProviderUnreachable is told of each provider content routing found
	// for c that could not be connected to (after a FindPeer retry, when
	// there is peer routing), and why: the dial's error. An application
	// can say so to its user; Bitswap goes on with the other providers.
	ProviderUnreachable func(p peer.ID, c cid.Cid, err error)
}

// WithObserver adds an Observer. Unlike the other options, each call adds
// one more: all are told, in the order given.
func WithObserver(o Observer) Option {
	return func(c *config) { c.observers = append(c.observers, o) }
}

// TracerName is the instrumentation scope of Bitswap's OpenTelemetry
// spans. The spans themselves have the names of boxo's (see
// WithTracerProvider).
const TracerName = "github.com/gobitswap/bitswap"

// WithTracerProvider sets where Bitswap's OpenTelemetry spans go (default,
// or nil: the global provider, otel.GetTracerProvider(), which records
// nothing unless the application sets one, even after New). The spans have
// the names boxo's client gives the same operations, so that dashboards
// and scripts made for boxo's traces read ours:
//
//   - "Bitswap.Client.GetBlocks" (attribute NumKeys), "Bitswap.Client.GetBlock"
//     (attribute Key) and "Bitswap.Client.NewSession": one call each, until
//     it returns, a child of the span in the call's context.
//   - The Session's spans, children of those (see package session):
//     "Bitswap.Client.Session" for a Session's life, which boxo has not,
//     "Bitswap.Client.Session.FindMorePeers" for each provider search,
//     "Bitswap.Client.Session.GetBlocks" and
//     "Bitswap.Client.Getter.handleIncoming" for each request, the latter
//     until its channel closes, with a "received block" event per block.
//
// So one GetBlocks call makes the tree GetBlocks → {Session →
// FindMorePeers..., Session.GetBlocks → Getter.handleIncoming}.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(c *config) { c.tracerProvider = tp }
}

// observedNet is the network as the Engine and the WantManager send
// through it when a Tracer or an Observer wants to hear of their messages.
type observedNet struct {
	network.Network
	t    Tracer // nil: none
	sent []func(peer.ID, *message.Message, time.Duration)
}

func (n observedNet) SendMessage(ctx context.Context, p peer.ID, msg *message.Message) error {
	start := time.Now()
	err := n.Network.SendMessage(ctx, p, msg)
	if err != nil {
		return err
	}
	if n.t != nil {
		n.t.MessageSent(p, msg)
	}
	if len(n.sent) > 0 {
		took := time.Since(start)
		for _, f := range n.sent {
			f(p, msg, took)
		}
	}
	return nil
}

// wire adds to cfg's component options (the provider queries' config
// included) the hooks that the Observers, the block-received notifier and
// the Tracer need, and returns the network the Engine and the WantManager
// send through and the functions that hear of inbound messages.
func (cfg *config) wire(net network.Network) (send wantmanager.Network, received []func(peer.ID, *message.Message)) {
	var sent []func(peer.ID, *message.Message, time.Duration)
	var blks []func(peer.ID, []ReceivedBlock)
	var waiting []func(peer.ID, int)
	var unreachable []func(peer.ID, cid.Cid, error)
	if cfg.notifier != nil {
		blks = append(blks, cfg.notifier)
	}
	if cfg.tracer != nil {
		received = append(received, cfg.tracer.MessageReceived)
	}
	for _, o := range cfg.observers {
		if o.MessageReceived != nil {
			received = append(received, o.MessageReceived)
		}
		if o.MessageSent != nil {
			sent = append(sent, o.MessageSent)
		}
		if o.BlocksReceived != nil {
			blks = append(blks, o.BlocksReceived)
		}
		if o.WantsWaiting != nil {
			waiting = append(waiting, o.WantsWaiting)
		}
		if o.ProviderUnreachable != nil {
			unreachable = append(unreachable, o.ProviderUnreachable)
		}
	}
	switch len(blks) {
	case 0:
	case 1:
		cfg.routerOpts = append(cfg.routerOpts, blockrouter.WithReceivedNotifier(blks[0]))
	default:
		cfg.routerOpts = append(cfg.routerOpts, blockrouter.WithReceivedNotifier(func(from peer.ID, bs []ReceivedBlock) {
			for _, f := range blks {
				f(from, bs)
			}
		}))
	}
	if len(waiting) > 0 {
		cfg.wmOpts = append(cfg.wmOpts, wantmanager.WithQueueObserver(func(p peer.ID, n int) {
			for _, f := range waiting {
				f(p, n)
			}
		}))
	}
	if len(unreachable) > 0 {
		cfg.providers.Unreachable = func(p peer.ID, c cid.Cid, err error) {
			for _, f := range unreachable {
				f(p, c, err)
			}
		}
	}
	send = net
	if cfg.tracer != nil || len(sent) > 0 {
		send = observedNet{Network: net, t: cfg.tracer, sent: sent}
	}
	return send, received
}

func engineOption(o engine.Option) Option {
	return func(c *config) { c.engineOpts = append(c.engineOpts, o) }
}

// Bitswap exchanges blocks with peers over a Network.
type Bitswap struct {
	net         network.Network
	bs          blockstore.Blockstore
	ledger      *ledger.Ledger
	engine      *engine.Engine
	wm          *wantmanager.WantManager
	peerRouter  *peerrouter.PeerRouter
	blockRouter *blockrouter.BlockRouter
	sessionCfg  session.Config
	providers   *providers.Finder // nil: no content routing
	// tagger and sessionTag are what Sessions tag their peers with (nil,
	// 0: nothing).
	tagger     session.PeerTagger
	sessionTag int
	logger     *slog.Logger
	// received hear of every inbound message: the Tracer's and the
	// Observers' MessageReceived.
	received []func(peer.ID, *message.Message)
	spans    trace.Tracer
	// serving is false for a client-only node (WithServerEnabled): its
	// Engine, built all the same so that every call has one to ask, is
	// never started and never told of a wantlist.
	serving bool

	// ctx lives until Close; Sessions run under it.
	ctx       context.Context
	cancel    context.CancelFunc
	stopOnCtx func() bool
	closeOnce sync.Once

	messagesReceived atomic.Uint64
	nextSession      atomic.Uint64

	// mu orders starting a Session against Close; running counts the
	// Sessions not yet ended, for Close to wait on. Which Sessions run is
	// the BlockRouter's to know (it delivers to them).
	mu      sync.Mutex
	running sync.WaitGroup
}

// New starts Bitswap on net, serving blocks from bs. It runs until Close is
// called or ctx is cancelled. net is started here and stopped by Close; use
// network.NewFromHost to build one from a libp2p host.
func New(ctx context.Context, net network.Network, bs blockstore.Blockstore, opts ...Option) *Bitswap {
	cfg := config{logger: slog.Default(), session: session.DefaultConfig()}
	for _, o := range opts {
		o(&cfg)
	}
	l := ledger.New()
	if !cfg.noTagging {
		if !cfg.noProtect {
			cfg.wmOpts = append(cfg.wmOpts, wantmanager.WithProtector(net))
		}
		cfg.engineOpts = append(cfg.engineOpts,
			engine.WithPeerTagger(net, tagValue(cfg.serverTagVal, DefaultServerPeerTagValue)))
	}
	send, received := cfg.wire(net)
	tp := cfg.tracerProvider
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	b := &Bitswap{
		net:        net,
		bs:         bs,
		ledger:     l,
		engine:     engine.New(bs, send, l, cfg.engineOpts...),
		wm:         wantmanager.New(send, cfg.wmOpts...),
		sessionCfg: cfg.session,
		logger:     cfg.logger,
		received:   received,
		spans:      tp.Tracer(TracerName),
		serving:    !cfg.noServer,
	}
	if !cfg.noTagging {
		b.tagger, b.sessionTag = net, tagValue(cfg.sessionTagVal, DefaultSessionPeerTagValue)
	}
	b.blockRouter = blockrouter.New(bs, l, b.engine, cfg.logger, cfg.routerOpts...)
	b.peerRouter = peerrouter.New(interestAdapter{b.blockRouter}, peerrouter.WithProtected(cfg.protected...))
	if cfg.routing != nil {
		pc := cfg.providers
		pc.Tracer, pc.Logger = b.spans, cfg.logger
		b.providers = providers.New(cfg.routing, net, b.peerRouter.ProviderFound, pc)
	}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	if b.serving {
		b.engine.Start()
	}
	net.Start((*receiver)(b))
	b.stopOnCtx = context.AfterFunc(ctx, func() { _ = b.Close() })
	return b
}

// GetBlock fetches one block, from the blockstore if it is there, else from
// peers.
func (b *Bitswap) GetBlock(ctx context.Context, c cid.Cid) (blocks.Block, error) {
	ctx, span := b.spans.Start(ctx, "Bitswap.Client.GetBlock")
	defer span.End()
	if span.IsRecording() {
		span.SetAttributes(attribute.String("Key", c.String()))
	}
	s, err := b.newSession(ctx, true)
	if err != nil {
		return nil, failed(span, err)
	}
	blk, err := s.GetBlock(ctx, c)
	if err != nil {
		return nil, failed(span, err)
	}
	return blk, nil
}

// failed marks span as failed with err and returns err.
func failed(span trace.Span, err error) error {
	span.SetStatus(codes.Error, err.Error())
	return err
}

// GetBlocks fetches blocks, each once, in arrival order. Blocks already in
// the blockstore come without the network. The channel closes when all have
// been delivered or ctx ends. Each call runs its own Session.
func (b *Bitswap) GetBlocks(ctx context.Context, cids []cid.Cid) (<-chan blocks.Block, error) {
	ctx, span := b.spans.Start(ctx, "Bitswap.Client.GetBlocks", trace.WithAttributes(attribute.Int("NumKeys", len(cids))))
	defer span.End()
	s, err := b.newSession(ctx, true)
	if err != nil {
		return nil, failed(span, err)
	}
	ch, err := s.GetBlocks(ctx, cids)
	if err != nil {
		s.Close()
		return nil, failed(span, err)
	}
	return ch, nil
}

// NewSession returns a Session for related requests (the blocks of one DAG,
// say): peers that served one request are asked first for the next. It ends
// when ctx is cancelled or Bitswap closes.
func (b *Bitswap) NewSession(ctx context.Context) *session.Session {
	ctx, span := b.spans.Start(ctx, "Bitswap.Client.NewSession")
	defer span.End()
	s, err := b.newSession(ctx, false)
	if err != nil {
		// Closed: a Session that ends at once and fails every request.
		s = session.New(ctx, 0, b.sessionDeps(nil), b.sessionCfg, false)
		s.Close()
		return s
	}
	stop := context.AfterFunc(ctx, s.Close)
	go func() { <-s.Done(); stop() }()
	return s
}

// ErrClosed is returned by requests made after Close, and by a Session
// that has ended: one value, so errors.Is(err, ErrClosed) holds for both.
var ErrClosed = session.ErrClosed

// newSession starts a Session that runs until Close (or, oneOff, until
// its request ends), traced as a child of the span in ctx.
func (b *Bitswap) newSession(ctx context.Context, oneOff bool) (*session.Session, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ctx.Err() != nil {
		return nil, ErrClosed
	}
	b.running.Add(1)
	parent := trace.ContextWithSpan(b.ctx, trace.SpanFromContext(ctx))
	id := b.nextSession.Add(1)
	cfg := b.sessionCfg
	cfg.Seed = id // each Session draws its own random broadcast peers
	if ais := providersOf(ctx); len(ais) > 0 {
		cfg.FixedPeers = nil
		for _, ai := range ais {
			if ai.ID == b.net.Self() || slices.Contains(cfg.FixedPeers, ai.ID) {
				continue
			}
			cfg.FixedPeers = append(cfg.FixedPeers, ai.ID)
			if _, connected := b.peerRouter.Info(ai.ID); !connected {
				// Best effort: the wants wait for the connection. Close
				// waits for the dial (b.ctx ends it).
				b.running.Add(1)
				go func() {
					defer b.running.Done()
					_ = b.net.Connect(b.ctx, ai)
				}()
			}
		}
	}
	return session.New(parent, id, b.sessionDeps(b.running.Done), cfg, oneOff), nil
}

func (b *Bitswap) sessionDeps(onClose func()) session.Deps {
	var search session.ProviderFinder // nil: no content routing
	if b.providers != nil {
		search = providerSearch{b.providers}
	}
	return session.Deps{
		WantManager: b.wm,
		BlockRouter: blockRouterAdapter{b.blockRouter},
		PeerRouter:  b.peerRouter,
		Blockstore:  b.bs,
		Providers:   search,
		Latency:     b.net.Latency,
		OnClose:     onClose,
		Tracer:      b.spans,
		Tagger:      b.tagger,
		TagValue:    b.sessionTag,
	}
}

// blockRouterAdapter lets the session package name its sink without
// importing blockrouter. What it registers is a session.Sink, which is
// what interestAdapter hands the PeerRouter back.
type blockRouterAdapter struct{ *blockrouter.BlockRouter }

func (a blockRouterAdapter) Register(id uint64, s session.Sink) { a.BlockRouter.Register(id, s) }

// interestAdapter is the BlockRouter's registry of Sessions as the
// PeerRouter asks it. Only blockRouterAdapter registers, and only
// session.Sinks, so the conversions cannot fail.
type interestAdapter struct{ *blockrouter.BlockRouter }

func (a interestAdapter) Sessions() []peerrouter.Sink {
	all := a.BlockRouter.Sessions()
	out := make([]peerrouter.Sink, len(all))
	for i, s := range all {
		out[i] = s.(session.Sink)
	}
	return out
}

func (a interestAdapter) EachWanter(cids []cid.Cid, f func(id uint64, s peerrouter.Sink, i int)) {
	a.BlockRouter.EachWanter(cids, func(id uint64, s blockrouter.Sink, i int) { f(id, s.(session.Sink), i) })
}

// providerSearch is the provider query layer as a Session asks it.
type providerSearch struct{ f *providers.Finder }

func (p providerSearch) FindProviders(ctx context.Context, c cid.Cid) { p.f.Find(ctx, c) }

// NotifyNewBlocks tells Bitswap that these blocks are now in the blockstore,
// so that peers waiting for them are served, and so that our own requests
// waiting for them end without the network (as boxo's do; boxo's
// blockservice calls it from AddBlock). Bitswap does not store them: put
// them in the blockstore first.
func (b *Bitswap) NotifyNewBlocks(ctx context.Context, blks ...blocks.Block) error {
	b.blockRouter.Deliver(blks)
	b.engine.NotifyNewBlocks(ctx, blks...)
	return nil
}

// LedgerForPeer returns what we have exchanged with p.
func (b *Bitswap) LedgerForPeer(p peer.ID) *ledger.Receipt {
	r := b.ledger.Receipt(p)
	return &r
}

// WantlistForPeer returns the CIDs that p currently wants from us. For
// this node's own ID it returns our wantlist, Stat().Wantlist, as boxo's
// does.
func (b *Bitswap) WantlistForPeer(p peer.ID) []cid.Cid {
	if p == b.net.Self() {
		return b.wm.Wantlist()
	}
	return b.engine.WantlistForPeer(p)
}

// Stat is a snapshot of Bitswap's counters. The first fields have the names
// and meaning of boxo's bitswap.Stat.
type Stat struct {
	// Wantlist is what the client asks of peers now (boxo's meaning): a
	// want every peer has declined (DONT_HAVE) is in no peer's wantlist,
	// so not here, though its Session still waits for it.
	Wantlist []cid.Cid
	// Peers are the connected Bitswap peers.
	Peers            []string
	BlocksReceived   uint64
	DataReceived     uint64
	DupBlksReceived  uint64
	DupDataReceived  uint64
	MessagesReceived uint64
	BlocksSent       uint64
	DataSent         uint64
	// Sessions is the number of Sessions running.
	Sessions int
	// Server holds the server's detailed counters.
	Server engine.Stat
	// Client holds the incoming-block counters.
	Client blockrouter.Stat
	// Wants holds the WantManager's counters.
	Wants wantmanager.Stat
	// Network holds the transport's counters.
	Network network.Stats
	// Providers holds the provider query layer's counters (all zero
	// without content routing).
	Providers providers.Stat
}

// Stat returns a snapshot of Bitswap's counters.
func (b *Bitswap) Stat() (*Stat, error) {
	es := b.engine.Stat()
	cs := b.blockRouter.Stat()
	s := &Stat{
		Wantlist:         b.wm.Wantlist(),
		BlocksReceived:   cs.BlocksReceived,
		DataReceived:     cs.DataReceived,
		DupBlksReceived:  cs.DupBlksReceived,
		DupDataReceived:  cs.DupDataReceived,
		MessagesReceived: b.messagesReceived.Load(),
		BlocksSent:       es.BlocksSent,
		DataSent:         es.DataSent,
		Server:           es,
		Client:           cs,
		Wants:            b.wm.Stat(),
		Network:          b.net.Stats(),
	}
	if b.providers != nil {
		s.Providers = b.providers.Stat()
	}
	for _, p := range b.peerRouter.ConnectedPeers() {
		s.Peers = append(s.Peers, p.String())
	}
	s.Sessions = len(b.blockRouter.Sessions())
	return s, nil
}

// Close stops serving and stops the network. It is safe to call more than
// once.
func (b *Bitswap) Close() error {
	b.closeOnce.Do(func() {
		if b.stopOnCtx != nil {
			b.stopOnCtx()
		}
		// Sessions run under b.ctx: cancelling it ends them all. Under mu,
		// so that no Session starts after the Wait below has begun.
		b.mu.Lock()
		b.cancel()
		b.mu.Unlock()
		b.running.Wait()
		if b.providers != nil {
			b.providers.Close() // its dials use the network
		}
		b.net.Stop()
		b.wm.Close()
		b.engine.Close()
	})
	return nil
}

// receiver is Bitswap's side of network.Receiver, kept off the public method
// set.
type receiver Bitswap

// ReceiveMessage hands msg to the server and the client side. Its error,
// when the message was abuse (wants for oversized CIDs, a flood of
// unrequested blocks), lets the network count it against the peer.
func (r *receiver) ReceiveMessage(ctx context.Context, from peer.ID, msg *message.Message) error {
	r.messagesReceived.Add(1)
	for _, f := range r.received {
		f(from, msg)
	}
	var errServer error
	if r.serving {
		errServer = r.engine.MessageReceived(ctx, from, msg)
	}
	if len(msg.Blocks) == 0 && len(msg.BlockPresences) == 0 {
		return errServer
	}
	var haves, dontHaves []cid.Cid
	for _, bp := range msg.BlockPresences {
		if bp.Type == message.Have {
			haves = append(haves, bp.Cid)
		} else {
			dontHaves = append(dontHaves, bp.Cid)
		}
	}
	keys := make([]cid.Cid, len(msg.Blocks))
	for i, blk := range msg.Blocks {
		keys[i] = blk.Cid()
	}
	// The WantManager hears first, so that it knows the sender has forgotten
	// these wants before Sessions cancel them everywhere.
	r.wm.ReceivedFrom(from, keys, haves, dontHaves)
	r.peerRouter.ReceiveBlocks(from, keys) // before the BlockRouter takes the wants
	errClient := r.blockRouter.ReceiveBlocks(ctx, from, msg.Blocks)
	r.peerRouter.ReceivePresences(from, haves, dontHaves)
	return errors.Join(errServer, errClient)
}

func (r *receiver) ReceiveError(from peer.ID, err error) {
	r.logger.Debug("bitswap: bad inbound stream", "peer", from, "err", err)
}

// namer is implemented by networks that know which peers the application
// chose (httpnet: every endpoint).
type namer interface{ Named(p peer.ID) bool }

func (r *receiver) PeerConnected(p peer.ID) {
	r.wm.PeerConnected(p)
	n, ok := r.net.(namer)
	r.peerRouter.PeerConnected(p, r.net.Local(p), ok && n.Named(p))
}

func (r *receiver) PeerDisconnected(p peer.ID) {
	r.peerRouter.PeerDisconnected(p)
	r.wm.PeerDisconnected(p)
	r.engine.PeerDisconnected(p)
	r.blockRouter.Forget(p)
}

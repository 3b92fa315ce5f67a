// Package engine is the Bitswap server. It owns every peer's inbound
// wantlist, the task queue that decides whose turn it is, and the workers
// that read the blockstore and send blocks, HAVEs and DONT_HAVEs.
//
// It never touches client state (our own wants, sessions), never verifies or
// stores incoming blocks (the BlockRouter does, then calls NotifyNewBlocks),
// and never talks to libp2p directly: it sends through a Sender, usually the
// network package's Network. Its decisions live in core, plain data without
// I/O, locks or clocks, which returns what to do next as data; the driver
// carries that out, and Engine gives it the locking, the blockstore reads
// and the sends.
package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	blocks "github.com/ipfs/go-block-format"
	cid "github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/gobitswap/bitswap/ledger"
	"github.com/gobitswap/bitswap/message"
)

// Blockstore is what the Engine reads. blockstore.Blockstore satisfies it.
// Missing blocks must be reported with an ipld.ErrNotFound error.
type Blockstore interface {
	Get(context.Context, cid.Cid) (blocks.Block, error)
	GetSize(context.Context, cid.Cid) (int, error)
}

// Sender sends a message to a peer. network.Network satisfies it. It must
// time out on its own: a worker waits for it.
type Sender interface {
	SendMessage(ctx context.Context, p peer.ID, msg *message.Message) error
}

// PeerBlockRequestFilter decides whether p may have the block c. A refused
// block is treated as one we do not have.
type PeerBlockRequestFilter func(p peer.ID, c cid.Cid) bool

// ErrCidTooLarge is wrapped by MessageReceived's error when a wantlist names
// CIDs over the size limit (WithMaxCidSize). No honest peer sends them; the
// wants are dropped, and the error lets the network count the message
// against the peer.
var ErrCidTooLarge = errors.New("CID over the size limit")

// Defaults for the options.
const (
	DefaultTaskWorkerCount       = 8
	DefaultTargetMessageSize     = 16 << 10
	DefaultMaxOutstandingBytes   = 1 << 20
	DefaultMaxActiveWantsPerPeer = 1024
	DefaultMaxWantsPerPeer       = 32768
	DefaultMaxWantsTotal         = 262144
	DefaultMaxParkedWants        = 32768
	DefaultMaxCidSize            = 168
	DefaultWantHaveReplaceSize   = 1024
	defaultMaxSendFailures       = 3
)

// Option configures an Engine. The rule for numeric options, as in every
// library package: 0 keeps the default; a negative value means none (no
// cap, never) where the option's doc says what none is, and otherwise
// keeps the default too. No option panics.
type Option func(*config)

type config struct {
	limits
	workers   int
	target    int
	filter    PeerBlockRequestFilter
	logger    *slog.Logger
	tagger    PeerTagger
	tagValue  int
	tagLinger time.Duration
}

// WithTaskWorkerCount sets how many workers read blocks and send messages
// in parallel (default 8).
func WithTaskWorkerCount(n int) Option { return func(c *config) { setPositive(&c.workers, n) } }

// WithTargetMessageSize sets how many bytes of blocks and presences a worker
// packs into one message (default 16 KiB; one larger block still goes alone).
func WithTargetMessageSize(n int) Option { return func(c *config) { setPositive(&c.target, n) } }

// WithMaxOutstandingBytesPerPeer caps the bytes popped for one peer and not
// yet sent (default 1 MiB), so that one fast-asking peer cannot hold every
// worker.
func WithMaxOutstandingBytesPerPeer(n int) Option {
	return func(c *config) { setPositive(&c.maxOutstanding, n) }
}

// WithMaxActiveWantsPerPeer caps, per peer, the wants being looked up or
// queued for sending (default 1,024). More wants are still held, unchecked,
// up to WithMaxWantsPerPeer, and become active as earlier ones are served.
func WithMaxActiveWantsPerPeer(n int) Option {
	return func(c *config) { setPositive(&c.maxActivePerPeer, n) }
}

// WithMaxWantsPerPeer caps the wantlist entries held for one peer (default
// 32,768). Wants beyond it are dropped and counted in Stat.WantsDropped.
func WithMaxWantsPerPeer(n int) Option { return func(c *config) { setPositive(&c.maxWantsPerPeer, n) } }

// WithMaxWantsTotal caps the wantlist entries held for all peers together
// (default 262,144). At the cap, a new want takes the place of a want not
// yet looked up of the peer holding the most, if that peer holds at least
// two more than the asker (counted in Stat.WantsDisplaced), and is dropped
// otherwise: peers that fill the total with wants cannot lock out one
// that asks later.
func WithMaxWantsTotal(n int) Option { return func(c *config) { setPositive(&c.maxWantsTotal, n) } }

// WithMaxParkedWants caps the parked wants held for all peers together
// (default 32,768; negative for no cap): wants for blocks we lack, kept in case
// NotifyNewBlocks brings the block. Past the cap the oldest parked want is
// forgotten, as if its peer had cancelled it, and counted in
// Stat.WantsEvicted: the peer heard DONT_HAVE if it asked for one and only
// misses the notice if the block arrives later; asking again gets a fresh
// lookup. The cap never refuses new wants, so peers flooding us with wants
// for blocks we lack cannot lock honest peers out.
func WithMaxParkedWants(n int) Option { return func(c *config) { setOrNone(&c.maxParked, n) } }

// WithMaxCidSize sets the largest CID, in bytes, a want may name (default
// 168: a CIDv1 header plus a 128-byte digest).
func WithMaxCidSize(n int) Option { return func(c *config) { setPositive(&c.maxCidSize, n) } }

// WithWantHaveReplaceSize sets the largest block sent in place of a HAVE to a
// want-have (default 1,024 bytes; negative always sends HAVE).
func WithWantHaveReplaceSize(n int) Option {
	return func(c *config) { setOrNone(&c.maxReplaceSize, n) }
}

// setOrNone sets *v to n if n is positive and to 0 (none: no cap, never)
// if n is negative; 0 keeps the default already in *v.
func setOrNone(v *int, n int) {
	switch {
	case n < 0:
		*v = 0
	case n > 0:
		*v = n
	}
}

// setPositive sets *v to n if n is positive; 0 or a negative n keeps the
// default already in *v (the rule for every numeric option; see Option).
func setPositive(v *int, n int) {
	if n > 0 {
		*v = n
	}
}

// WithPeerBlockRequestFilter lets the application refuse blocks to peers.
func WithPeerBlockRequestFilter(f PeerBlockRequestFilter) Option {
	return func(c *config) { c.filter = f }
}

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }

// Stat counts what the Engine has done.
type Stat struct {
	BlocksSent     uint64
	DataSent       uint64 // block bytes
	HavesSent      uint64
	DontHavesSent  uint64
	MessagesSent   uint64
	SendErrors     uint64
	WantsDropped   uint64 // wants refused by a limit (CID size, per-peer or total cap)
	WantsEvicted   uint64 // parked wants forgotten, oldest first, over the parked cap (WithMaxParkedWants)
	WantsDisplaced uint64 // unchecked wants forgotten over the total cap for a peer holding fewer (WithMaxWantsTotal)
	BlockstoreErr  uint64 // blockstore failures other than not-found
	Peers          int    // peers with wants held
	Wants          int    // wants held across peers
	PeersTagged    int    // peers tagged now (WithPeerTagger)
}

// Engine serves blocks to peers. Create it with New, then Start it.
type Engine struct {
	cfg    config
	bs     Blockstore
	send   Sender
	ledger *ledger.Ledger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// mu guards the driver's core and state, and stat.
	mu   sync.Mutex
	drv  *driver
	stat Stat

	gate *lookupGate // has its own lock
}

// New creates an Engine that reads bs, sends with s and records what it sends
// in l. Call Start to run its workers.
func New(bs Blockstore, s Sender, l *ledger.Ledger, opts ...Option) *Engine {
	cfg := config{
		limits: limits{
			maxWantsPerPeer:  DefaultMaxWantsPerPeer,
			maxWantsTotal:    DefaultMaxWantsTotal,
			maxActivePerPeer: DefaultMaxActiveWantsPerPeer,
			maxCidSize:       DefaultMaxCidSize,
			maxReplaceSize:   DefaultWantHaveReplaceSize,
			maxOutstanding:   DefaultMaxOutstandingBytes,
			maxSendFailures:  defaultMaxSendFailures,
			maxParked:        DefaultMaxParkedWants,
		},
		workers:   DefaultTaskWorkerCount,
		target:    DefaultTargetMessageSize,
		logger:    slog.Default(),
		tagLinger: DefaultTagLinger,
	}
	for _, o := range opts {
		o(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &Engine{cfg: cfg, bs: bs, send: s, ledger: l, ctx: ctx, cancel: cancel, gate: newLookupGate(lookupSlots)}
	e.drv = newDriver(newCore(cfg.limits), &e.mu, e.lookups, true)
	if cfg.tagger != nil && cfg.tagValue > 0 {
		e.drv.tags.t, e.drv.tags.value, e.drv.tags.linger = cfg.tagger, cfg.tagValue, cfg.tagLinger
	}
	return e
}

// Start runs the task workers and the refiller. They stop when Close is
// called.
func (e *Engine) Start() {
	for range e.cfg.workers {
		e.wg.Add(1)
		go e.worker()
	}
	e.wg.Add(1)
	go e.refiller()
}

// refiller looks up the wants that NotifyNewBlocks woke, peer by peer, so
// that whoever stored the blocks (a peer's delivery goroutine, through the
// BlockRouter) does not wait on other peers' lookups.
func (e *Engine) refiller() {
	defer e.wg.Done()
	e.drv.refiller(e.ctx)
}

// Close stops the workers, waits for them and drops all peer state. Every
// peer it tagged (WithPeerTagger) is untagged.
func (e *Engine) Close() {
	e.drv.close()
	e.cancel()
	e.wg.Wait()
}

// MessageReceived applies the wantlist of a message from p and looks up the
// newly active wants. Blocks and presences in msg are not the Engine's
// business. It blocks the caller for the lookups, which paces a flooding
// peer by its own stream, not everyone's. It returns an error wrapping
// ErrCidTooLarge if the wantlist named CIDs over the size limit (the rest of
// it still applies).
func (e *Engine) MessageReceived(ctx context.Context, p peer.ID, msg *message.Message) error {
	if len(msg.Wantlist) == 0 && !msg.Full {
		return nil
	}
	eff, dropped, oversized := e.drv.receive(p, msg.Full, msg.Wantlist)
	if dropped > 0 {
		e.cfg.logger.Debug("bitswap engine: dropped wants over a limit", "peer", p, "count", dropped)
	}
	e.drv.apply(ctx, eff)
	if oversized > 0 {
		return fmt.Errorf("bitswap engine: %d wants from %s for CIDs over %d bytes: %w",
			oversized, p, e.cfg.maxCidSize, ErrCidTooLarge)
	}
	return nil
}

// NotifyNewBlocks serves peers waiting for these blocks. The blocks must
// already be in the blockstore. It returns at once: the woken wants are
// looked up by the Engine's refiller goroutine (started by Start), not by
// the caller.
func (e *Engine) NotifyNewBlocks(_ context.Context, blks ...blocks.Block) {
	keys := make([]cid.Cid, len(blks))
	for i, b := range blks {
		keys[i] = b.Cid()
	}
	e.drv.arrived(keys)
}

// PeerDisconnected frees everything held for p, and untags it.
func (e *Engine) PeerDisconnected(p peer.ID) {
	e.mu.Lock()
	e.drv.core.removePeer(p)
	e.drv.tags.untag(p)
	e.mu.Unlock()
	e.gate.forget(p)
}

// WantlistForPeer returns the CIDs p currently wants from us.
func (e *Engine) WantlistForPeer(p peer.ID) []cid.Cid {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.drv.core.wantlist(p)
}

// Stat returns the Engine's counters.
func (e *Engine) Stat() Stat {
	e.mu.Lock()
	defer e.mu.Unlock()
	c := e.drv.core
	s := e.stat
	s.WantsDropped = c.droppedWants
	s.WantsEvicted = c.evictedWants
	s.WantsDisplaced = c.displaced
	s.BlockstoreErr = c.blockstoreErr
	s.Peers = len(c.peers)
	s.Wants = c.total
	s.PeersTagged = len(e.drv.tags.tagged)
	return s
}

// lookups answers a batch of p's lookups for the driver, which runs it
// without the lock, through the lookup gate: the gate puts peers with few
// lookups lately ahead of those keeping the blockstore busy.
func (e *Engine) lookups(ctx context.Context, p peer.ID, todo []lookup) []lookupResult {
	results := make([]lookupResult, len(todo))
	if e.gate.acquire(ctx, p, len(todo)) {
		for i, l := range todo {
			results[i] = e.lookup(ctx, p, l)
		}
		e.gate.release()
	} else {
		// Stopping: fail the lookups, as the blockstore would with this
		// ctx, so the wants park instead of staying in checking.
		for i, l := range todo {
			results[i] = lookupResult{lookup: l, err: ctx.Err()}
		}
	}
	return results
}

func (e *Engine) lookup(ctx context.Context, p peer.ID, l lookup) lookupResult {
	r := lookupResult{lookup: l}
	if e.cfg.filter != nil && !e.cfg.filter(p, l.cid) {
		return r
	}
	size, err := e.bs.GetSize(ctx, l.cid)
	switch {
	case err == nil:
		r.have, r.size = true, size
	case !ipld.IsNotFound(err):
		r.err = err
		e.cfg.logger.Warn("bitswap engine: blockstore lookup failed", "cid", l.cid, "peer", p, "err", err)
	}
	return r
}

// worker takes turns from the task queue until Close.
func (e *Engine) worker() {
	defer e.wg.Done()
	for e.drv.runTurn(e.ctx, e.cfg.target, e.sendTurn) {
	}
}

// sendTurn builds and sends t's message, for the driver, without the lock.
// Its outcome counts what was sent (with the lock) and records it in the
// ledger or logs the failure (without).
func (e *Engine) sendTurn(t turn) sendOutcome {
	// msg is nil when every block of the turn vanished from the
	// blockstore: nothing to send, which is not a failure.
	msg, blockBytes := e.build(t.p, t.tasks, t.pending)
	var err error
	if msg != nil {
		err = e.send.SendMessage(e.ctx, t.p, msg)
	}
	return sendOutcome{
		sent: err == nil,
		note: func() {
			switch {
			case msg == nil:
			case err == nil:
				e.stat.MessagesSent++
				e.stat.BlocksSent += uint64(len(msg.Blocks))
				e.stat.DataSent += uint64(blockBytes)
				for _, bp := range msg.BlockPresences {
					if bp.Type == message.Have {
						e.stat.HavesSent++
					} else {
						e.stat.DontHavesSent++
					}
				}
			default:
				e.stat.SendErrors++
			}
		},
		after: func() {
			if msg != nil && err == nil {
				for _, b := range msg.Blocks {
					e.ledger.SentBlock(t.p, len(b.RawData()))
				}
			} else if err != nil && e.ctx.Err() == nil {
				e.cfg.logger.Debug("bitswap engine: send failed", "peer", t.p, "err", err)
			}
		},
	}
}

// build reads the blocks for tasks and packs one message. It returns nil when
// nothing is left to send (every block vanished and no DONT_HAVE is due).
func (e *Engine) build(p peer.ID, tasks []*task, pending int) (*message.Message, int) {
	msg := &message.Message{PendingBytes: int32(min(pending, 1<<31-1))}
	blockBytes := 0
	for _, t := range tasks {
		switch t.kind {
		case sendBlock:
			b, err := e.bs.Get(e.ctx, t.cid)
			if err != nil {
				// Deleted since the lookup, or the store failed: the peer
				// hears nothing for this CID and may ask again.
				if !ipld.IsNotFound(err) && e.ctx.Err() == nil {
					e.cfg.logger.Warn("bitswap engine: blockstore read failed", "cid", t.cid, "peer", p, "err", err)
				}
				continue
			}
			if !b.Cid().Equals(t.cid) {
				// Answer under the CID the peer asked for (v0 vs v1).
				if b, err = blocks.NewBlockWithCid(b.RawData(), t.cid); err != nil {
					e.cfg.logger.Warn("bitswap engine: re-addressing block", "cid", t.cid, "err", err)
					continue
				}
			}
			msg.Blocks = append(msg.Blocks, b)
			blockBytes += len(b.RawData())
		case sendHave:
			msg.BlockPresences = append(msg.BlockPresences, message.BlockPresence{Cid: t.cid, Type: message.Have})
		case sendDontHave:
			msg.BlockPresences = append(msg.BlockPresences, message.BlockPresence{Cid: t.cid, Type: message.DontHave})
		}
	}
	if len(msg.Blocks) == 0 && len(msg.BlockPresences) == 0 {
		return nil, 0
	}
	return msg, blockBytes
}

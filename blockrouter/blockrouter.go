// Package blockrouter is where every incoming block goes first. It owns
// the registry of running Sessions and the index of which Session wants
// which CID (the PeerRouter asks it, with Sessions and EachWanter, whom to
// tell of peer events and presences), stores only blocks some
// Session wanted, delivers each to every Session that wants it, records it
// in the Ledger, and hands it to the Engine so that peers waiting for it are
// served.
//
// Blocks are verified before they reach it: message.Unmarshal derives each
// block's CID by hashing its data (CID prefix + data on 1.1.0+, sha2-256 on
// 1.0.0), so a block can never disagree with its CID. A peer that sends
// wrong data therefore sends a block nobody asked for; it is dropped,
// counted, and charged to that peer. The BlockRouter never sends anything
// and never decides what to want.
package blockrouter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	blocks "github.com/ipfs/go-block-format"
	cid "github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/gobitswap/bitswap/ledger"
)

// Blockstore is where wanted blocks are stored.
type Blockstore interface {
	PutMany(context.Context, []blocks.Block) error
	Has(context.Context, cid.Cid) (bool, error)
}

// Sink is a running Session as the BlockRouter holds it: it receives the
// blocks the Session wanted. It must not block. The value registered is
// handed back by Sessions and EachWanter, so the caller may register
// values that do more (the facade registers what the PeerRouter needs too).
type Sink interface {
	ReceiveBlocks(from peer.ID, blks []blocks.Block)
}

// Notifier is told about blocks newly stored (the Engine).
type Notifier interface {
	NotifyNewBlocks(ctx context.Context, blks ...blocks.Block)
}

// Stat counts incoming blocks.
type Stat struct {
	BlocksReceived   uint64 // every block that arrived
	DataReceived     uint64
	DupBlksReceived  uint64 // arrived after it was no longer wanted and was already stored (or being stored)
	DupDataReceived  uint64
	UnwantedBlocks   uint64 // never wanted (or wrong data for a wanted CID): dropped
	UnwantedData     uint64
	BlockstoreErrors uint64
}

// DefaultMaxUnrequested is how many more blocks nobody asked for than
// wanted ones a peer may send during one connection before ReceiveBlocks
// rejects its messages (WithMaxUnrequested). Honest peers send a few: blocks
// already on their way when our request was cancelled. Blocks we already
// have (late duplicates) are not counted.
const DefaultMaxUnrequested = 256

// ErrUnrequested is wrapped by ReceiveBlocks' error once a peer has sent
// more unrequested blocks than the limit allows.
var ErrUnrequested = errors.New("too many unrequested blocks")

// Option configures New.
type Option func(*BlockRouter)

// Received is a block that arrived from a peer while some Session wanted
// it, as told to the function of WithReceivedNotifier.
type Received struct {
	blocks.Block
	// Delay is how long the block was wanted before it arrived: since the
	// earliest Want for its multihash among the Sessions that still wanted
	// it. A Session calls Want when it takes a CID on (a request's CIDs
	// past its buffer wait until the reader has taken blocks), before it
	// looks in the blockstore.
	Delay time.Duration
}

// WithReceivedNotifier has f told of the wanted blocks of every message,
// with their sender and how long each was wanted (nil: nobody is told).
// Blocks nobody wanted, including late duplicates, are not reported. f runs
// in the goroutine that called ReceiveBlocks, after the blocks are stored
// and delivered: it must not block for long, and it must not keep or modify
// blks after it returns.
func WithReceivedNotifier(f func(from peer.ID, blks []Received)) Option {
	return func(r *BlockRouter) { r.received = f }
}

// WithMaxUnrequested sets how far a peer's unrequested blocks may outnumber
// its wanted ones during a connection before its messages are rejected:
// each unrequested block counts one, each wanted block takes one off. n < 0
// never rejects; 0 keeps DefaultMaxUnrequested.
func WithMaxUnrequested(n int) Option {
	return func(r *BlockRouter) {
		if n != 0 {
			r.maxUnrequested = n
		}
	}
}

// BlockRouter routes incoming blocks. Create it with New.
type BlockRouter struct {
	bs             Blockstore
	ledger         *ledger.Ledger
	notify         Notifier
	logger         *slog.Logger
	maxUnrequested int
	received       func(from peer.ID, blks []Received)

	mu     sync.Mutex
	sinks  map[uint64]Sink
	wanted map[string]wants // multihash -> its wanters
	stat   Stat
	// charged counts, per peer, unwanted blocks less wanted ones (never
	// below 0); bounded by only holding peers above 0, reset by Forget.
	charged map[peer.ID]uint64
	// storing counts, per multihash, the wanted blocks taken by a
	// ReceiveBlocks call that has not yet stored them. A copy arriving
	// meanwhile (peers asked for the same block often answer together) is
	// a duplicate, although the blockstore does not have it yet. Bounded
	// by the blocks in flight.
	storing map[string]int
}

// wants are the Sessions that want one multihash, each under the CID it
// asked for, and since when the first of them has.
type wants struct {
	by    map[uint64]cid.Cid
	since time.Time
}

// New returns a BlockRouter that stores into bs, records in l and tells n.
func New(bs Blockstore, l *ledger.Ledger, n Notifier, logger *slog.Logger, opts ...Option) *BlockRouter {
	if logger == nil {
		logger = slog.Default()
	}
	r := &BlockRouter{
		bs: bs, ledger: l, notify: n, logger: logger,
		maxUnrequested: DefaultMaxUnrequested,
		sinks:          make(map[uint64]Sink),
		wanted:         make(map[string]wants),
		charged:        make(map[peer.ID]uint64),
		storing:        make(map[string]int),
	}
	for _, o := range opts {
		o(r)
	}
	return r
}

// Register adds a running Session's sink: from now on the Session is told
// of what it wants and, through Sessions, of peer events.
func (r *BlockRouter) Register(id uint64, s Sink) {
	r.mu.Lock()
	r.sinks[id] = s
	r.mu.Unlock()
}

// Unregister removes a Session's sink. Its owner withdraws its wants with
// Unwant first.
func (r *BlockRouter) Unregister(id uint64) {
	r.mu.Lock()
	delete(r.sinks, id)
	r.mu.Unlock()
}

// Want records that Session id wants cids, from now on (the time the
// block-received notifier measures from). A block arriving under another
// CID version of the same multihash is delivered under the CID asked for.
func (r *BlockRouter) Want(id uint64, cids []cid.Cid) {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range cids {
		k := string(c.Hash())
		w := r.wanted[k]
		if w.by == nil {
			w = wants{by: make(map[uint64]cid.Cid, 1), since: now}
			r.wanted[k] = w
		}
		w.by[id] = c
	}
}

// Unwant withdraws Session id's wants.
func (r *BlockRouter) Unwant(id uint64, cids []cid.Cid) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range cids {
		k := string(c.Hash())
		if w := r.wanted[k]; w.by != nil {
			delete(w.by, id)
			if len(w.by) == 0 {
				delete(r.wanted, k)
			}
		}
	}
}

// EachWanter calls f(id, s, i) for every registered Session id (sink s)
// that wants cids[i] (under any CID version of its multihash), cids in
// order. f runs under the BlockRouter's lock and must not call back into
// it.
func (r *BlockRouter) EachWanter(cids []cid.Cid, f func(id uint64, s Sink, i int)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, c := range cids {
		for id := range r.wanted[string(c.Hash())].by {
			if s := r.sinks[id]; s != nil {
				f(id, s, i)
			}
		}
	}
}

// Sessions returns the sinks of the running Sessions, in no order.
func (r *BlockRouter) Sessions() []Sink {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Sink, 0, len(r.sinks))
	for _, s := range r.sinks {
		out = append(out, s)
	}
	return out
}

// ReceiveBlocks handles the blocks of one message from a peer. It returns
// an error wrapping ErrUnrequested when the message leaves the peer over the
// unrequested-block limit (see WithMaxUnrequested); its wanted blocks are
// stored and delivered all the same.
func (r *BlockRouter) ReceiveBlocks(ctx context.Context, from peer.ID, blks []blocks.Block) error {
	if len(blks) == 0 {
		return nil
	}
	var store []blocks.Block
	var unwanted []blocks.Block
	var received []Received // for the notifier, if any
	per := make(map[uint64]*delivery)

	now := time.Now()
	r.mu.Lock()
	for _, b := range blks {
		r.stat.BlocksReceived++
		r.stat.DataReceived += uint64(len(b.RawData()))
		k := string(b.Cid().Hash())
		w := r.wanted[k]
		if len(w.by) == 0 {
			if r.storing[k] > 0 {
				// Wanted until a moment ago; the first copy is being stored.
				r.stat.DupBlksReceived++
				r.stat.DupDataReceived += uint64(len(b.RawData()))
				continue
			}
			unwanted = append(unwanted, b)
			continue
		}
		store = append(store, b)
		if r.received != nil {
			received = append(received, Received{Block: b, Delay: now.Sub(w.since)})
		}
		r.storing[k]++
		r.takeLocked(k, w, b, per)
	}
	if c := r.charged[from]; c > 0 {
		if c > uint64(len(store)) {
			r.charged[from] = c - uint64(len(store))
		} else {
			delete(r.charged, from)
		}
	}
	r.mu.Unlock()

	for _, b := range blks {
		r.ledger.ReceivedBlock(from, len(b.RawData()))
	}
	if len(store) > 0 {
		if err := r.bs.PutMany(ctx, store); err != nil {
			// Sessions still get the blocks; the application sees them even
			// if the store could not keep them.
			r.count(func(s *Stat) { s.BlockstoreErrors++ })
			r.logger.Warn("bitswap: storing received blocks failed", "peer", from, "blocks", len(store), "err", err)
		}
		r.mu.Lock()
		for _, b := range store {
			k := string(b.Cid().Hash())
			if r.storing[k]--; r.storing[k] <= 0 {
				delete(r.storing, k)
			}
		}
		r.mu.Unlock()
	}
	// The notifier first, as boxo tells its notifier before its sessions:
	// once a request has its blocks, the notifier has heard of them.
	if len(received) > 0 {
		r.received(from, received)
	}
	for _, d := range per {
		d.sink.ReceiveBlocks(from, d.blks)
	}
	if len(store) > 0 && r.notify != nil {
		r.notify.NotifyNewBlocks(ctx, store...)
	}
	if len(unwanted) == 0 {
		return nil
	}
	var charge uint64
	for _, b := range unwanted {
		have, err := r.bs.Has(ctx, b.Cid())
		n := uint64(len(b.RawData()))
		r.count(func(s *Stat) {
			if err == nil && have {
				s.DupBlksReceived++
				s.DupDataReceived += n
			} else {
				s.UnwantedBlocks++
				s.UnwantedData += n
			}
		})
		if err != nil || !have {
			charge++
			r.logger.Debug("bitswap: dropped unrequested block", "peer", from, "cid", b.Cid())
		}
	}
	if charge == 0 {
		return nil
	}
	r.mu.Lock()
	r.charged[from] += charge
	total := r.charged[from]
	r.mu.Unlock()
	if r.maxUnrequested >= 0 && total > uint64(r.maxUnrequested) {
		return fmt.Errorf("bitswap: %s sent %d more unrequested blocks than wanted ones (limit %d): %w",
			from, total, r.maxUnrequested, ErrUnrequested)
	}
	return nil
}

// delivery is what one Session is handed from one message.
type delivery struct {
	sink Sink
	blks []blocks.Block
}

// takeLocked adds b, the block of multihash k that w want, to the
// deliveries of each of w's Sessions, under the CID each asked for, and
// forgets the want: the block satisfies every Session, so later copies are
// duplicates. r.mu is held.
func (r *BlockRouter) takeLocked(k string, w wants, b blocks.Block, per map[uint64]*delivery) {
	for id, want := range w.by {
		s := r.sinks[id]
		if s == nil {
			continue
		}
		d := per[id]
		if d == nil {
			d = &delivery{sink: s}
			per[id] = d
		}
		if !want.Equals(b.Cid()) {
			// Same bytes, other CID version: hand it over as asked.
			if rb, err := blocks.NewBlockWithCid(b.RawData(), want); err == nil {
				d.blks = append(d.blks, rb)
				continue
			}
		}
		d.blks = append(d.blks, b)
	}
	delete(r.wanted, k)
}

// Deliver hands blocks the application has stored itself (it tells Bitswap
// with NotifyNewBlocks) to every Session that wants them, under the CID each
// asked for, as boxo's client does: a request waiting for one ends without
// the network, and its wants are cancelled at the peers. The Sessions are
// told the blocks come from "" (no peer). Nothing is stored, counted, put
// in the Ledger or told to the notifiers: the blocks did not arrive.
func (r *BlockRouter) Deliver(blks []blocks.Block) {
	per := make(map[uint64]*delivery)
	r.mu.Lock()
	for _, b := range blks {
		k := string(b.Cid().Hash())
		if w := r.wanted[k]; len(w.by) > 0 {
			r.takeLocked(k, w, b, per)
		}
	}
	r.mu.Unlock()
	for _, d := range per {
		d.sink.ReceiveBlocks("", d.blks)
	}
}

func (r *BlockRouter) count(f func(*Stat)) {
	r.mu.Lock()
	f(&r.stat)
	r.mu.Unlock()
}

// Stat returns the counters.
func (r *BlockRouter) Stat() Stat {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stat
}

// Forget drops what is recorded about p (call on disconnect), keeping the
// charged map bounded by connected peers.
func (r *BlockRouter) Forget(p peer.ID) {
	r.mu.Lock()
	delete(r.charged, p)
	r.mu.Unlock()
}

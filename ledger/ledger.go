// Package ledger keeps per-peer accounts of the blocks and bytes exchanged
// with each peer: bytes and blocks sent and received, the debt ratio and the
// time of the last exchange.
//
// It owns only these counters. It is updated synchronously by whoever moves a
// block (the engine when sending, the block router when receiving) and must
// never know about wantlists, sessions, messages or the network: it imports
// nothing else of this module, and nothing in it blocks or starts goroutines.
//
// Memory is bounded whatever peers do: past a maximum number of peers (see
// WithMaxPeers) the peer whose last exchange is oldest is forgotten.
package ledger

import (
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// DefaultMaxPeers is the number of peers a Ledger remembers unless
// WithMaxPeers says otherwise. At roughly 200 bytes per peer (see
// WithMaxPeers) the default costs about 13 MiB when full.
const DefaultMaxPeers = 65536

// Receipt is a snapshot of the account kept with one peer. Peer, Value, Sent,
// Recv and Exchanged mean the same as in boxo's bitswap server Receipt, so the
// two can be reported side by side.
type Receipt struct {
	// Peer is the peer's ID in its string (base58) form.
	Peer string
	// Value is the debt ratio: bytes sent to the peer divided by one more
	// than the bytes received from it, Sent/(Recv+1), as boxo computes it.
	Value float64
	// Sent is the number of block bytes sent to the peer.
	Sent uint64
	// Recv is the number of block bytes received from the peer.
	Recv uint64
	// BlocksSent is the number of blocks sent to the peer.
	BlocksSent uint64
	// BlocksReceived is the number of blocks received from the peer.
	BlocksReceived uint64
	// Exchanged is the number of blocks exchanged in either direction,
	// BlocksSent + BlocksReceived.
	Exchanged uint64
	// LastExchange is when a block last moved in either direction; zero if
	// never.
	LastExchange time.Time
}

// Option configures a Ledger.
type Option func(*config)

type config struct {
	maxPeers int
}

// WithMaxPeers bounds the number of peers remembered. When a block is
// exchanged with a new peer while n peers are already remembered, the peer
// whose last exchange is oldest is forgotten first. Each remembered peer costs
// about 200 bytes (the entry, its map slot and a typical 38-byte peer ID, as
// measured by BenchmarkBytesPerPeer), so the default of 65,536 peers is about
// 13 MiB. n <= 0 keeps the default: a ledger that can hold nothing would
// only be a configuration mistake.
func WithMaxPeers(n int) Option {
	return func(c *config) {
		if n > 0 {
			c.maxPeers = n
		}
	}
}

// Ledger records blocks exchanged with each peer. Its methods are safe for
// concurrent use; each takes one mutex for a constant or logarithmic amount
// of work. The zero value is not usable; call New.
type Ledger struct {
	mu       sync.Mutex
	maxPeers int
	accounts map[peer.ID]*account
	// Accounts form a doubly linked list ordered by last exchange, oldest
	// first. Every update stamps time.Now under mu and moves the account to
	// the newest end, so list order is update order is LastExchange order,
	// and eviction is O(1): drop the front. No heap or scan is needed.
	oldest, newest *account
}

// account is one peer's counters, linked into the ledger's recency list.
type account struct {
	id             peer.ID
	sent, recv     uint64
	blocksSent     uint64
	blocksReceived uint64
	lastExchange   time.Time
	prev, next     *account
}

// New returns an empty Ledger.
func New(opts ...Option) *Ledger {
	c := config{maxPeers: DefaultMaxPeers}
	for _, o := range opts {
		o(&c)
	}
	return &Ledger{
		maxPeers: c.maxPeers,
		accounts: make(map[peer.ID]*account),
	}
}

// SentBlock records that a block of size bytes was sent to p. Negative sizes
// count as zero.
func (l *Ledger) SentBlock(p peer.ID, size int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	a := l.touch(p)
	a.sent += clampSize(size)
	a.blocksSent++
}

// ReceivedBlock records that a block of size bytes was received from p.
// Negative sizes count as zero.
func (l *Ledger) ReceivedBlock(p peer.ID, size int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	a := l.touch(p)
	a.recv += clampSize(size)
	a.blocksReceived++
}

// Receipt returns a snapshot of the account with p. For a peer never seen (or
// already forgotten) it returns a zero Receipt with only Peer set, as boxo
// does.
func (l *Ledger) Receipt(p peer.ID) Receipt {
	l.mu.Lock()
	defer l.mu.Unlock()
	a, ok := l.accounts[p]
	if !ok {
		return Receipt{Peer: p.String()}
	}
	return Receipt{
		Peer:           p.String(),
		Value:          float64(a.sent) / float64(a.recv+1),
		Sent:           a.sent,
		Recv:           a.recv,
		BlocksSent:     a.blocksSent,
		BlocksReceived: a.blocksReceived,
		Exchanged:      a.blocksSent + a.blocksReceived,
		LastExchange:   a.lastExchange,
	}
}

// Peers returns the peers currently remembered, from the least to the most
// recently exchanged with.
func (l *Ledger) Peers() []peer.ID {
	l.mu.Lock()
	defer l.mu.Unlock()
	ps := make([]peer.ID, 0, len(l.accounts))
	for a := l.oldest; a != nil; a = a.next {
		ps = append(ps, a.id)
	}
	return ps
}

// touch returns p's account, creating it (and evicting the oldest account if
// the ledger is full) when needed, stamps it with the current time and moves
// it to the newest end of the list. l.mu must be held.
func (l *Ledger) touch(p peer.ID) *account {
	a, ok := l.accounts[p]
	if ok {
		l.unlink(a)
	} else {
		for len(l.accounts) >= l.maxPeers {
			old := l.oldest
			l.unlink(old)
			delete(l.accounts, old.id)
		}
		a = &account{id: p}
		l.accounts[p] = a
	}
	a.lastExchange = time.Now()
	l.pushNewest(a)
	return a
}

func (l *Ledger) unlink(a *account) {
	if a.prev != nil {
		a.prev.next = a.next
	} else {
		l.oldest = a.next
	}
	if a.next != nil {
		a.next.prev = a.prev
	} else {
		l.newest = a.prev
	}
	a.prev, a.next = nil, nil
}

func (l *Ledger) pushNewest(a *account) {
	a.prev = l.newest
	if l.newest != nil {
		l.newest.next = a
	} else {
		l.oldest = a
	}
	l.newest = a
}

func clampSize(size int) uint64 {
	if size < 0 {
		return 0
	}
	return uint64(size)
}

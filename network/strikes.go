package network

import (
	"errors"
	"math"
	"time"

	"github.com/gobitswap/bitswap/message"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"golang.org/x/time/rate"
)

// DefaultMaxMalformed is how many malformed inbound messages (frames that do
// not decode, or are over the size limit) or messages the Receiver rejects a
// peer may send during one connection before it is disconnected, unless
// WithMaxMalformed says otherwise. An honest peer sends none: every Bitswap
// implementation we know encodes what the spec says, so a few are already a
// broken or hostile peer, and decoding its garbage costs CPU that honest
// peers need.
const DefaultMaxMalformed = 8

// DefaultBanDuration is how long a peer disconnected for misbehaving has its
// Bitswap streams refused (WithBanDuration). Without it, a peer that
// reconnects at once costs us the same decoding again, connection after
// connection.
const DefaultBanDuration = time.Minute

// maxBanned bounds the ban list; past it the ban closest to its end is
// dropped early. Peer IDs cost nothing to make, so the list only slows an
// attacker that keeps its identity: the bound keeps one that does not from
// growing our memory.
const maxBanned = 4096

// DefaultMaxAbandoned is how many transfers a peer may walk away from, by
// resetting our stream or closing the connection while we write blocks to
// it, before it is banned (WithMaxAbandoned). The count halves every
// abandonHalfLife, so it is a rate: about 11 a minute, kept up, reaches it.
// An honest client abandons a transfer when it is stopped or its
// connection breaks, a few times at most; one that reconnects and
// re-asks, again and again, has us read and send blocks for nothing, and
// costs a handshake each time on the cores honest peers need.
const DefaultMaxAbandoned = 16

// abandonHalfLife is how fast a peer's abandoned transfers are forgiven.
const abandonHalfLife = time.Minute

// Wantlist pacing defaults (WithWantlistRate). An honest client fetching a
// DAG of 4 KiB blocks as fast as a server can send them (about 20,000 blocks
// a second on loopback here) sends a want and a cancel per block, and often
// want-haves to other peers too: well under the rate, and a whole fetch of
// that many blocks fits the burst. A flooding peer sends millions a second;
// every entry costs decoding and, for wants, a blockstore lookup, on the
// cores that serve honest peers.
const (
	DefaultWantlistRate  = 100_000 // entries per second, per peer
	DefaultWantlistBurst = 100_000 // entries a peer may send at once
)

// WithMaxMalformed sets how many malformed or rejected messages a peer may
// send during one connection before the network closes its connections
// (logged with the last reason, counted in Stats.PeersDisconnected) and
// refuses its Bitswap streams for the ban duration. n < 0 never disconnects;
// 0 keeps DefaultMaxMalformed.
func WithMaxMalformed(n int) Option {
	return func(c *config) {
		if n != 0 {
			c.maxMalformed = n
		}
	}
}

// WithBanDuration sets how long a peer disconnected for misbehaving (see
// WithMaxMalformed) has its Bitswap streams refused: its first stream is
// held open unread until the ban ends, so that a peer writing on it waits on
// flow control, and any other is reset. d < 0 bans no one; 0 keeps
// DefaultBanDuration.
func WithBanDuration(d time.Duration) Option {
	return func(c *config) {
		if d != 0 {
			c.banFor = max(d, 0)
		}
	}
}

// WithMaxAbandoned sets how many transfers a peer may abandon (see
// DefaultMaxAbandoned; counted once per connection, across reconnects,
// forgiven by half every minute) before it is banned for the ban duration
// (WithBanDuration) and counted in Stats.PeersBanned. n < 0 never bans for
// it; 0 keeps DefaultMaxAbandoned.
func WithMaxAbandoned(n int) Option {
	return func(c *config) {
		if n != 0 {
			c.maxAbandoned = n
		}
	}
}

// WithWantlistRate paces each peer's wantlists: on average at most perSecond
// wantlist entries (wants and cancels alike) a second, burst at once. A peer
// that sends more has its next message wait, before it is handed to the
// Receiver, until the pace allows it; meanwhile its streams are read only
// until its queue fills (see Libp2pNetwork), so TCP slows the sender down
// and neither decoding nor blockstore lookups of its entries outrun the
// pace. perSecond < 0 turns pacing off; 0 keeps DefaultWantlistRate; burst
// <= 0 keeps DefaultWantlistBurst. A message with more entries than burst
// waits as if it had burst.
func WithWantlistRate(perSecond, burst int) Option {
	return func(c *config) {
		if perSecond != 0 {
			c.wantRate = max(perSecond, 0)
		}
		if burst > 0 {
			c.wantBurst = burst
		}
	}
}

// guard is what the network remembers about a connected peer's behaviour.
// It lives in n.guards under n.mu and is dropped when the peer disconnects.
type guard struct {
	strikes int           // malformed or rejected messages this connection
	pace    *rate.Limiter // wantlist entries; nil when pacing is off
}

// guardOf returns p's guard, making it. Callers hold n.mu.
func (n *Libp2pNetwork) guardOf(p peer.ID) *guard {
	g := n.guards[p]
	if g == nil {
		g = &guard{}
		if n.cfg.wantRate > 0 {
			g.pace = rate.NewLimiter(rate.Limit(n.cfg.wantRate), n.cfg.wantBurst)
		}
		n.guards[p] = g
	}
	return g
}

// pace waits until p may deliver a message carrying entries wantlist
// entries, holding p's queue b to one message meanwhile (b may be nil). It
// returns false if the network stopped meanwhile.
func (n *Libp2pNetwork) pace(p peer.ID, b *inbox, entries int) bool {
	if entries == 0 || n.cfg.wantRate <= 0 {
		return true
	}
	n.mu.Lock()
	lim := n.guardOf(p).pace
	n.mu.Unlock()
	r := lim.ReserveN(time.Now(), min(entries, n.cfg.wantBurst))
	d := r.Delay()
	if d == 0 {
		return true
	}
	n.throttled.Add(1)
	if b != nil {
		n.in.mu.Lock()
		b.paced = true
		n.in.mu.Unlock()
		defer func() {
			n.in.mu.Lock()
			b.paced = false
			n.in.cond.Broadcast()
			n.in.mu.Unlock()
		}()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-n.ctx.Done():
		return false
	}
}

// malformed reports that p sent input that is not a Bitswap message: it is
// counted, reported to the Receiver, and counts as a strike. Errors that are
// not about the input (a stream reset mid-frame by a peer that went away)
// are only reported.
func (n *Libp2pNetwork) malformed(p peer.ID, err error) {
	n.receiver.ReceiveError(p, err)
	if !errors.Is(err, message.ErrMalformed) && !errors.Is(err, message.ErrTooLarge) {
		return
	}
	n.malformedRecv.Add(1)
	n.strike(p, err)
}

// rejected counts a message the Receiver refused as a strike against p.
func (n *Libp2pNetwork) rejected(p peer.ID, err error) {
	n.rejectedRecv.Add(1)
	n.strike(p, err)
}

// strike counts one malformed or rejected message against p; at the limit p
// is disconnected and banned.
func (n *Libp2pNetwork) strike(p peer.ID, err error) {
	if n.cfg.maxMalformed < 0 {
		return
	}
	n.mu.Lock()
	if n.state != stateStarted {
		n.mu.Unlock()
		return
	}
	g := n.guardOf(p)
	g.strikes++
	strikes := g.strikes
	if strikes >= n.cfg.maxMalformed {
		// Start afresh at once rather than when the disconnect is seen:
		// a peer that reconnects before the event goroutine notices would
		// otherwise keep a count past the limit and never reach it again.
		g.strikes = 0
		n.ban(p)
	}
	n.mu.Unlock()
	if strikes < n.cfg.maxMalformed {
		return
	}
	n.peersDropped.Add(1)
	n.cfg.logger.Warn("bitswap: disconnecting a misbehaving peer",
		"peer", p, "strikes", strikes, "banned_for", n.cfg.banFor, "last", err)
	_ = n.host.Network().ClosePeer(p)
}

// abandonCount is a peer's decaying count of abandoned transfers. Unlike a
// guard it outlives the connection: reconnecting is what the peer does.
type abandonCount struct {
	n    float64   // as of at
	at   time.Time // last update
	conn string    // the connection last counted, so each counts once
}

// decayed returns the count at now.
func (a *abandonCount) decayed(now time.Time) float64 {
	return a.n * math.Exp2(-float64(now.Sub(a.at))/float64(abandonHalfLife))
}

// abandoned records that p reset the stream or closed connection c while we
// were writing blocks to it; at the limit p is banned. Once per connection:
// every send queued to a vanished peer fails the same way.
func (n *Libp2pNetwork) abandoned(p peer.ID, c network.Conn) {
	if n.cfg.maxAbandoned < 0 || c == nil {
		return
	}
	now := time.Now()
	n.mu.Lock()
	a := n.abandons[p]
	if a != nil && a.conn == c.ID() {
		n.mu.Unlock()
		return
	}
	if a == nil {
		if len(n.abandons) >= maxBanned {
			n.shedAbandons(now)
		}
		a = &abandonCount{}
		n.abandons[p] = a
	}
	a.n, a.at, a.conn = a.decayed(now)+1, now, c.ID()
	count := a.n
	banned := math.Round(count) >= float64(n.cfg.maxAbandoned) && n.state == stateStarted && n.cfg.banFor > 0
	if banned {
		a.n = 0 // start afresh when the ban ends; a.conn still dedupes
		n.ban(p)
	}
	n.mu.Unlock()
	n.abandonedSends.Add(1)
	if banned {
		n.cfg.logger.Warn("bitswap: banning a peer that keeps abandoning transfers",
			"peer", p, "abandoned", math.Round(count), "banned_for", n.cfg.banFor)
	}
}

// shedAbandons makes room in n.abandons: counts that decayed below one go,
// and if none did, the smallest. Callers hold n.mu.
func (n *Libp2pNetwork) shedAbandons(now time.Time) {
	var least peer.ID
	leastN := math.Inf(1)
	for q, a := range n.abandons {
		d := a.decayed(now)
		if d < 1 {
			delete(n.abandons, q)
			continue
		}
		if d < leastN {
			least, leastN = q, d
		}
	}
	if len(n.abandons) >= maxBanned {
		delete(n.abandons, least)
	}
}

// ban refuses p's Bitswap streams for the ban duration. Callers hold n.mu.
func (n *Libp2pNetwork) ban(p peer.ID) {
	if n.cfg.banFor <= 0 {
		return
	}
	n.peersBanned.Add(1)
	now := time.Now()
	if len(n.banned) >= maxBanned {
		var first peer.ID
		var firstEnd time.Time
		for q, end := range n.banned {
			if !end.After(now) {
				delete(n.banned, q)
				continue
			}
			if first == "" || end.Before(firstEnd) {
				first, firstEnd = q, end
			}
		}
		if len(n.banned) >= maxBanned {
			delete(n.banned, first)
		}
	}
	n.banned[p] = now.Add(n.cfg.banFor)
}

// isBanned reports whether p's streams are refused now. Callers hold n.mu.
func (n *Libp2pNetwork) isBanned(p peer.ID) bool {
	end, ok := n.banned[p]
	if !ok {
		return false
	}
	if !time.Now().Before(end) {
		delete(n.banned, p)
		return false
	}
	return true
}

// forgetGuard starts p's count and pace afresh; the event goroutine calls it
// when p is no longer connected, so the map holds connected peers only.
func (n *Libp2pNetwork) forgetGuard(p peer.ID) {
	n.mu.Lock()
	delete(n.guards, p)
	n.mu.Unlock()
}

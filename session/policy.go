package session

import (
	"encoding/binary"
	"hash/fnv"
	"slices"
	"time"

	cid "github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/gobitswap/bitswap/internal/pq"
)

// Config holds a Session's knobs. A duration that is zero or negative
// takes its default (see DefaultConfig); RequestBuffer takes it when zero
// and means no bound when negative (the options rule of every package).
// So the zero Config is the defaults.
type Config struct {
	// PeerTimeout is the least time a peer with wants outstanding may go
	// without answering anything before its wants are moved elsewhere. The
	// timeout actually used grows with the peer's measured latency and
	// per-block service time.
	PeerTimeout time.Duration
	// RebroadcastInterval is how often a want that no peer is working on is
	// asked again, with want-have, of the broadcast targets (see
	// BroadcastAll) that have not said DONT_HAVE for it.
	RebroadcastInterval time.Duration
	// ProviderSearchDelay is how long a want may go without any peer saying
	// HAVE before content routing is asked for providers. When every
	// broadcast target has said DONT_HAVE the search starts at once.
	ProviderSearchDelay time.Duration
	// ProviderSearchInterval is the least time between two provider searches
	// of one session.
	ProviderSearchInterval time.Duration
	// ProviderSearchTimeout bounds one provider search.
	ProviderSearchTimeout time.Duration
	// DefaultLatency is assumed for a peer until it has been measured.
	DefaultLatency time.Duration
	// RequestBuffer bounds, in bytes, the blocks one GetBlocks request
	// holds that its reader has not taken, counting those it waits for at
	// the largest block size seen (at least 256 KiB): a request asks for
	// more only as its reader takes blocks. Negative: no bound (every CID is asked for at once and
	// blocks wait for the reader in memory). The Session uses it; the
	// Policy does not.
	RequestBuffer int

	// Broadcast control: who is asked want-have about a want that no peer
	// is known to have. By default (BroadcastAll false) only the broadcast
	// targets are: peers that have sent this node blocks or HAVEs before
	// (PeerInfo.Proven) or this Session (useful), peers the application
	// names (PeerInfo.Protected), local peers (PeerInfo.Local, unless
	// BroadcastControlLocal), and BroadcastRandomPeers others chosen at
	// random, anew at each rebroadcast; at most BroadcastMaxPeers of them
	// per want and round. While the Session knows no useful peer, its
	// want-blocks too go to these targets only.
	//
	// BroadcastAll makes every connected peer a target (no control).
	BroadcastAll bool
	// BroadcastMaxPeers caps the peers one want is broadcast to in one
	// round, the targets above taken in that order (0: the default;
	// negative: no cap).
	BroadcastMaxPeers int
	// BroadcastRandomPeers is how many peers that are no target otherwise
	// are targets all the same, chosen at random (0: the default;
	// negative: none).
	BroadcastRandomPeers int
	// BroadcastControlLocal applies broadcast control to local peers too;
	// by default they are always targets.
	BroadcastControlLocal bool
	// Seed varies the random choice of BroadcastRandomPeers between
	// Sessions (the facade gives each its ID); the same Seed and inputs
	// give the same choice.
	Seed uint64

	// FixedPeers, when not empty, are the only peers this Session asks:
	// each of them is asked want-block as if it had said HAVE for every
	// want, and nothing is broadcast and no provider searched. Other
	// peers' connections, presences and providers are ignored (a block
	// from any peer is still taken).
	FixedPeers []peer.ID
}

// The defaults of Config, defined here once (the bitswap package's
// options refer to them): 1 s peer timeout, a minute between rebroadcasts
// (boxo's), 500 ms provider search delay (boxo waits 1 s; we also search
// at once when every broadcast target said DONT_HAVE), 10 s between
// searches, a minute per search, 100 ms assumed latency, 256 MiB of
// undelivered blocks per request; broadcasts to at most 64 peers per want
// and round, 3 of them random.
const (
	DefaultPeerTimeout            = time.Second
	DefaultRebroadcastInterval    = time.Minute
	DefaultProviderSearchDelay    = 500 * time.Millisecond
	DefaultProviderSearchInterval = 10 * time.Second
	DefaultProviderSearchTimeout  = time.Minute
	DefaultLatency                = 100 * time.Millisecond
	DefaultRequestBuffer          = 256 << 20
	DefaultBroadcastMaxPeers      = 64
	DefaultBroadcastRandomPeers   = 3
)

// DefaultConfig returns a Config of the defaults above.
func DefaultConfig() Config {
	return Config{
		PeerTimeout:            DefaultPeerTimeout,
		RebroadcastInterval:    DefaultRebroadcastInterval,
		ProviderSearchDelay:    DefaultProviderSearchDelay,
		ProviderSearchInterval: DefaultProviderSearchInterval,
		ProviderSearchTimeout:  DefaultProviderSearchTimeout,
		DefaultLatency:         DefaultLatency,
		RequestBuffer:          DefaultRequestBuffer,
		BroadcastMaxPeers:      DefaultBroadcastMaxPeers,
		BroadcastRandomPeers:   DefaultBroadcastRandomPeers,
	}
}

// Actions is what a Policy step asks the Session to do. Maps are keyed by
// peer, and Peers lists those peers in the order the step first named
// them; slices keep the order in which CIDs were first wanted.
type Actions struct {
	WantBlocks map[peer.ID][]cid.Cid // want-block (with sendDontHave) to one peer each
	WantHaves  map[peer.ID][]cid.Cid // want-have (with sendDontHave)
	Cancels    map[peer.ID][]cid.Cid // no longer want these from this peer
	Resends    map[peer.ID][]cid.Cid // this peer has likely lost these wants: send them again
	CancelAll  []cid.Cid             // no longer want these from anyone
	Received   []cid.Cid             // wants satisfied
	FindProvs  []cid.Cid             // ask content routing
	peers      []peer.ID             // every peer named in the maps, in the order first named
}

// Peers returns the peers the maps name, in the order the Policy first
// named them, so that a step's output has one order.
func (a Actions) Peers() []peer.ID { return a.peers }

func (a *Actions) add(m *map[peer.ID][]cid.Cid, p peer.ID, c cid.Cid) {
	if *m == nil {
		*m = make(map[peer.ID][]cid.Cid)
	}
	if _, named := (*m)[p]; !named && !slices.Contains(a.peers, p) {
		a.peers = append(a.peers, p)
	}
	(*m)[p] = append((*m)[p], c)
}

type wantInfo struct {
	c        cid.Cid
	seq      uint64
	added    time.Time
	assigned peer.ID // peer asked for the block, "" if none
	sentAt   time.Time
	// alone is whether the assigned peer had nothing else of ours in
	// flight when the want-block was sent: only then does its answer time
	// the peer's latency, not its queue.
	alone     bool
	haves     map[peer.ID]struct{}
	dontHaves map[peer.ID]struct{} // said DONT_HAVE, or timed out
	askedHave map[peer.ID]time.Time
	// lastBroadcast is when want-haves for this CID last went to peers
	// beyond the one asked for the block.
	lastBroadcast time.Time
	// roundAsked counts the peers asked about it since lastBroadcast (the
	// round's), the one asked for the block included: at most
	// BroadcastMaxPeers.
	roundAsked int
	// searched is when content routing was last asked about it.
	searched time.Time
	pidx     int // index in Policy.pending; -1 when not in it
}

type peerInfo struct {
	id           peer.ID
	useful       bool // said HAVE or sent a block in this session
	inflight     int  // want-blocks assigned and unanswered
	latency      time.Duration
	serviceTime  time.Duration // EWMA of the gap between its blocks while busy
	lastProgress time.Time
	lastBlock    time.Time
	suspended    bool // timed out; asked again only when it answers, or as a last resort
	answered     bool // has answered anything at all
	// suspendedUntil is when a suspended peer may be asked again if no
	// other peer can be; penalty is the length of its last suspension.
	suspendedUntil time.Time
	penalty        time.Duration
	// patience is how long a peer no other can stand in for is waited for
	// now (it doubles while it stays silent; progress resets it), and
	// lastResend when its wants were last sent again.
	patience   time.Duration
	lastResend time.Time
	// What the node knows of the peer (PeerInfo), for broadcast control.
	proven, local, protected bool
	// provider: content routing named it for a want of this session, at
	// foundAt.
	provider bool
	foundAt  time.Time
	// missed: drawn at random (no other reason to ask it), it declined a
	// want of this session, so it is no target any more: a guess that
	// proved wrong, which would otherwise be asked every other want.
	missed bool
}

// PeerInfo is what the node knows of a peer as it connects (and again
// whenever that changes): the facts broadcast control chooses by.
type PeerInfo struct {
	// Latency is the connection's measured latency, or 0.
	Latency time.Duration
	// Proven: the peer has sent this node blocks or HAVEs before (the
	// PeerRouter's fact, for all Sessions).
	Proven bool
	// Local: the peer is on a loopback or LAN address (the network's).
	Local bool
	// Protected: the application named the peer as one to always ask.
	Protected bool
}

// Policy is a Session's decision logic over plain data: which peer to ask
// for which block, when to widen the search, when a peer has timed out. It
// does no I/O, takes no locks and reads no clock: every input carries the
// time, and every step returns Actions. Tests drive it step by step.
//
// The strategy, in short:
//   - Each want is asked of exactly one peer at a time with want-block and
//     sendDontHave, so duplicates only arise when a peer is presumed dead
//     and later answers anyway.
//   - The peer is chosen by expected delivery time: measured latency plus
//     its queue of our wants times its per-block service time. Peers that
//     said HAVE for the CID come first, then peers useful to this session,
//     then, while none is, the broadcast targets not asked want-have for
//     it (proven peers first), spread evenly: asking an unknown peer for a
//     block costs one DONT_HAVE, no more than a want-have. A HAVE moves a
//     want from a peer not known to have it.
//   - Broadcast control (Config.BroadcastAll and the rest): only the
//     targets (proven, useful, named, local and a few random peers, capped)
//     are asked about wants nobody is known to have; other peers are
//     reached through content routing. A random guess is a probe: asked
//     one want-block at a time until it answers.
//   - Providers content routing names are presumed to hold every want no
//     peer is known to have; the wants wait 10 ms for the search's other
//     providers (providerGather), then spread over them by load.
//   - Want-haves go to the targets only while the session's want-blocks do
//     not already reach every target (one GetBlock among many peers), for
//     the few wants its useful peers all declined, and in rebroadcasts of
//     stuck wants (once a minute, to targets that have not declined).
//   - A DONT_HAVE or a timeout moves the want to the next peer; a DONT_HAVE
//     stands until the peer reconnects. When every target has declined,
//     content routing is asked at once, each search for the want searched
//     least recently.
//   - With fixed peers (Config.FixedPeers) only they are asked, as if each
//     had said HAVE for everything: no broadcast, no provider search.
type Policy struct {
	cfg   Config
	wants map[cid.Cid]*wantInfo
	queue []*wantInfo // wants in seq order; dropped ones are compacted away lazily
	// pending holds the wants no peer is asked for, oldest first, so that
	// each step looks only at them, not at every want.
	pending pq.Heap[*wantInfo]
	peers   map[peer.ID]*peerInfo
	seq     uint64

	// stSum and stCount sum the measured service times of the peers.
	stSum   time.Duration
	stCount int

	lastSearch time.Time
	// fixed is Config.FixedPeers as a set; nil when there are none.
	fixed map[peer.ID]bool
	// draw is the current random choice of BroadcastRandomPeers among
	// the peers that are no target otherwise; nil when it must be chosen
	// again (the peers or their facts changed, or a new round began).
	draw map[peer.ID]bool
	// round counts rebroadcast rounds: each draws a new sample.
	round uint64
	// wantDue is no later than the earliest time a want-level decision
	// (rebroadcast, provider search, the end of a wait for HAVEs) falls
	// due: exact after Tick, lowered by events in between (see note).
	wantDue time.Time
	act     Actions
}

// withDefaults fills the durations that are zero or negative, and a zero
// RequestBuffer, from the defaults.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	fill := func(v *time.Duration, def time.Duration) {
		if *v <= 0 {
			*v = def
		}
	}
	fill(&c.PeerTimeout, d.PeerTimeout)
	fill(&c.RebroadcastInterval, d.RebroadcastInterval)
	fill(&c.ProviderSearchDelay, d.ProviderSearchDelay)
	fill(&c.ProviderSearchInterval, d.ProviderSearchInterval)
	fill(&c.ProviderSearchTimeout, d.ProviderSearchTimeout)
	fill(&c.DefaultLatency, d.DefaultLatency)
	if c.RequestBuffer == 0 {
		c.RequestBuffer = d.RequestBuffer
	}
	if c.BroadcastMaxPeers == 0 {
		c.BroadcastMaxPeers = d.BroadcastMaxPeers
	}
	if c.BroadcastRandomPeers == 0 {
		c.BroadcastRandomPeers = d.BroadcastRandomPeers
	}
	return c
}

// NewPolicy returns an empty Policy with cfg (zero fields take their
// defaults).
func NewPolicy(cfg Config) *Policy {
	cfg = cfg.withDefaults()
	p := &Policy{cfg: cfg, wants: make(map[cid.Cid]*wantInfo), peers: make(map[peer.ID]*peerInfo)}
	if len(cfg.FixedPeers) > 0 {
		// Known from the start, so that wants go out at once (the
		// WantManager holds them until the peer is connected).
		p.fixed = make(map[peer.ID]bool, len(cfg.FixedPeers))
		for _, id := range cfg.FixedPeers {
			p.fixed[id] = true
			p.peers[id] = &peerInfo{id: id}
		}
	}
	return p
}

// ignored reports whether the Policy ignores peer id: it is not one of the
// fixed peers, when there are some.
func (p *Policy) ignored(id peer.ID) bool { return p.fixed != nil && !p.fixed[id] }

func (p *Policy) take() Actions {
	a := p.act
	p.act = Actions{}
	return a
}

// Wants returns the number of CIDs still wanted.
func (p *Policy) Wants() int { return len(p.wants) }

// Has reports whether c is still wanted.
func (p *Policy) Has(c cid.Cid) bool { _, ok := p.wants[c]; return ok }

// Assigned returns the peer c is currently asked of, if any.
func (p *Policy) Assigned(c cid.Cid) peer.ID {
	if w := p.wants[c]; w != nil {
		return w.assigned
	}
	return ""
}

// PeerConnected adds a peer the session may ask, or updates what is known
// of it (a peer connected again is connected).
func (p *Policy) PeerConnected(now time.Time, id peer.ID, info PeerInfo) Actions {
	if p.ignored(id) {
		return Actions{}
	}
	pi, ok := p.peers[id]
	if !ok {
		pi = &peerInfo{id: id, latency: info.Latency}
		p.peers[id] = pi
	} else if pi.latency == 0 {
		// Known already (named as a provider, or it answered first) but
		// not yet timed: the connection's measurement is the best we have.
		pi.latency = info.Latency
	}
	wasTarget := ok && p.target(pi)
	if !ok || pi.local != info.Local || pi.protected != info.Protected || (info.Proven && !pi.proven) {
		pi.local, pi.protected = info.Local, info.Protected
		pi.proven = pi.proven || info.Proven
		p.draw = nil
	}
	if !wasTarget && p.target(pi) {
		p.newTarget(now, pi)
	}
	p.schedule(now)
	return p.take()
}

// newTarget asks pi, a peer that has just become a broadcast target (it
// connected, or the node learnt more of it), about the wants that were
// broadcast and that nobody is known to have: the peers asked then may
// all lack them, and this one was not asked.
func (p *Policy) newTarget(now time.Time, pi *peerInfo) {
	if p.fixed != nil {
		return
	}
	useful := false
	for _, o := range p.peers {
		if o.useful && !o.suspended {
			useful = true
			break
		}
	}
	var order []peer.ID
	for _, w := range p.queue {
		if p.wants[w.c] != w || w.lastBroadcast.IsZero() || len(w.haves) > 0 || w.assigned == pi.id {
			continue
		}
		if w.assigned == "" && !useful {
			continue // schedule asks it want-block
		}
		if a := p.peers[w.assigned]; a != nil && a.useful {
			continue // a serving peer works on it
		}
		p.broadcast(w, now, &order) // asks pi, if the round's cap allows
	}
}

// PeerDisconnected forgets a peer; its wants move elsewhere.
func (p *Policy) PeerDisconnected(now time.Time, id peer.ID) Actions {
	pi := p.peers[id]
	if pi == nil {
		return Actions{}
	}
	for _, w := range p.wants {
		if w.assigned == id {
			p.unassign(w)
		}
		delete(w.haves, id)
		delete(w.askedHave, id)
		delete(w.dontHaves, id) // a peer that comes back is asked anew
	}
	p.setServiceTime(pi, 0)
	delete(p.peers, id)
	p.draw = nil
	p.schedule(now)
	return p.take()
}

// Add wants cids (already-wanted ones are ignored).
func (p *Policy) Add(now time.Time, cids []cid.Cid) Actions {
	for _, c := range cids {
		if _, ok := p.wants[c]; ok {
			continue
		}
		p.seq++
		w := &wantInfo{c: c, seq: p.seq, added: now, pidx: -1}
		p.wants[c] = w
		p.queue = append(p.queue, w)
		p.pending.Push(w)
		p.note(now.Add(min(p.cfg.ProviderSearchDelay, p.cfg.RebroadcastInterval)))
	}
	p.schedule(now)
	if len(cids) > 0 && p.blind() {
		p.searchProviders(now)
	}
	return p.take()
}

// Remove stops wanting cids (the caller gave up on them).
func (p *Policy) Remove(now time.Time, cids []cid.Cid) Actions {
	for _, c := range cids {
		if w := p.wants[c]; w != nil {
			p.drop(w)
			p.act.CancelAll = append(p.act.CancelAll, c)
		}
	}
	p.schedule(now)
	return p.take()
}

func (p *Policy) drop(w *wantInfo) {
	if w.assigned != "" {
		if pi := p.peers[w.assigned]; pi != nil {
			pi.inflight--
		}
	}
	if w.pidx >= 0 {
		p.pending.Remove(w.pidx)
	}
	delete(p.wants, w.c)
	// The queue is compacted on Tick, but a Session whose wants all end
	// between two ticks stops its timer: compact here too once most of the
	// queue is dead, so it never holds more than twice the live wants.
	if len(p.queue) > 2*len(p.wants) {
		p.compact()
	}
}

func (w *wantInfo) hasHave(id peer.ID) bool { _, ok := w.haves[id]; return ok }

// unassign takes w off its peer and makes it pending again.
func (p *Policy) unassign(w *wantInfo) {
	w.assigned = ""
	if w.pidx < 0 {
		p.pending.Push(w)
	}
	// It may now be rebroadcast, or searched for, sooner than planned.
	p.note(later(w.lastBroadcast, w.added).Add(p.cfg.RebroadcastInterval))
	p.note(w.added.Add(p.cfg.ProviderSearchDelay))
}

// BlocksReceived records blocks that arrived from a peer.
func (p *Policy) BlocksReceived(now time.Time, from peer.ID, cids []cid.Cid) Actions {
	pi := p.peers[from]
	var rtt latencySample
	waited := 0 // blocks of this call that were already waiting at the peer at its last block
	for _, c := range cids {
		w := p.wants[c]
		if w == nil {
			continue
		}
		if w.assigned == from && pi != nil {
			// A block's round trip measures latency only when nothing of
			// ours was queued ahead of it at the peer.
			if w.alone {
				rtt.add(now.Sub(w.sentAt))
			}
			// The gap since the previous block is the peer's time per block
			// only if this want was already waiting at the peer then;
			// otherwise the gap includes idle time and the round trip.
			if !pi.lastBlock.IsZero() && w.sentAt.Add(pi.latency/2).Before(pi.lastBlock) {
				waited++
			}
		}
		p.drop(w)
		p.act.Received = append(p.act.Received, c)
		p.act.CancelAll = append(p.act.CancelAll, c)
	}
	if pi != nil && (waited > 0 || rtt.ok) {
		// One sample per message: blocks that come together share one
		// arrival, so the gap is spread over them, and one answer times
		// the link once however many CIDs it names.
		if waited > 0 {
			p.setServiceTime(pi, ewma(pi.serviceTime, now.Sub(pi.lastBlock)/time.Duration(waited)))
		}
		rtt.apply(p, pi)
		pi.lastBlock = now
	}
	if pi != nil {
		p.setUseful(pi)
		p.progress(pi, now)
	}
	p.schedule(now)
	return p.take()
}

// Presences records HAVEs and DONT_HAVEs from a peer.
func (p *Policy) Presences(now time.Time, from peer.ID, haves, dontHaves []cid.Cid) Actions {
	if p.ignored(from) {
		return Actions{}
	}
	pi := p.peers[from]
	if pi == nil {
		// Not connected as far as we know (events can race); a presence
		// proves it is reachable.
		pi = &peerInfo{id: from}
		p.peers[from] = pi
		p.draw = nil
	}
	var rtt latencySample
	for _, c := range haves {
		w := p.answered(now, pi, c, &rtt)
		if w == nil {
			continue
		}
		w.haves = addPeer(w.haves, from)
		delete(w.dontHaves, from)
		p.setUseful(pi)
		p.moveToHolder(w, pi)
	}
	// A guess whose first answer about our wants is a refusal is asked
	// nothing more this round (whether it was one is decided before the
	// refusals are counted: they change nothing of the draw).
	guess := !pi.missed && p.guess(pi)
	for _, c := range dontHaves {
		w := p.answered(now, pi, c, &rtt)
		if w == nil {
			continue
		}
		if guess && !pi.useful {
			pi.missed = true
		}
		w.dontHaves = addPeer(w.dontHaves, from)
		delete(w.haves, from)
		if w.assigned == from {
			if w.alone {
				rtt.add(now.Sub(w.sentAt))
			}
			p.unassign(w)
			pi.inflight--
			// The server holds a DONT_HAVE'd want until it is cancelled.
			p.act.add(&p.act.Cancels, from, c)
		}
	}
	rtt.apply(p, pi)
	p.progress(pi, now)
	p.schedule(now)
	if len(dontHaves) > 0 {
		p.searchProviders(now)
	}
	return p.take()
}

// latencySample collects the round trips one message's answers time, for
// one sample: the shortest, the one least delayed by the peer's queue.
type latencySample struct {
	d  time.Duration
	ok bool
}

func (s *latencySample) add(d time.Duration) {
	if d > 0 && (!s.ok || d < s.d) {
		s.d, s.ok = d, true
	}
}

func (s *latencySample) apply(p *Policy, pi *peerInfo) {
	if s.ok {
		p.sample(pi, s.d)
	}
}

// answered returns c's want, if we still want c, after timing pi's answer
// to the want-have we sent it for c, if we sent one, into rtt.
func (p *Policy) answered(now time.Time, pi *peerInfo, c cid.Cid, rtt *latencySample) *wantInfo {
	w := p.wants[c]
	if w == nil {
		return nil
	}
	if t, ok := w.askedHave[pi.id]; ok {
		rtt.add(now.Sub(t))
		delete(w.askedHave, pi.id)
	}
	return w
}

// addPeer adds id to set, making the set if it is nil.
func addPeer(set map[peer.ID]struct{}, id peer.ID) map[peer.ID]struct{} {
	if set == nil {
		set = make(map[peer.ID]struct{})
	}
	set[id] = struct{}{}
	return set
}

// ProvidersFound records that content routing named these peers as
// providers of c; they are treated as having said HAVE.
func (p *Policy) ProvidersFound(now time.Time, c cid.Cid, provs []peer.ID) Actions {
	if p.fixed != nil {
		return Actions{}
	}
	w := p.wants[c]
	for _, id := range provs {
		pi, ok := p.peers[id]
		if !ok {
			pi = &peerInfo{id: id}
			p.peers[id] = pi
		}
		if !pi.provider {
			pi.provider = true
			pi.foundAt = now
			p.draw = nil // the draw is of peers with no other reason to be asked
			p.note(now.Add(providerGather))
		}
		if w != nil {
			w.haves = addPeer(w.haves, id)
			delete(w.dontHaves, id)
			p.moveToHolder(w, pi)
		}
		// The providers of one block of a DAG usually have the rest: every
		// want no peer is known to have is presumed theirs too (a
		// DONT_HAVE undoes it), so it leaves a guess it is asked of, and
		// the wants spread over all the providers found.
		for _, o := range p.queue {
			if p.wants[o.c] != o || o == w || !p.presumedOnly(o) {
				continue
			}
			if _, no := o.dontHaves[id]; no {
				continue
			}
			o.haves = addPeer(o.haves, id)
			p.moveToHolder(o, pi)
		}
	}
	p.spreadOverProviders()
	p.schedule(now)
	return p.take()
}

// providerGather is how long the wants presumed of a provider just found
// wait for the other providers of the same search, before they are spread
// over all of them. Content routing names providers one by one, often
// within microseconds of each other (one DHT answer, or dials completing
// together), and wants handed to the first alone and moved on as each of
// the others arrives cost a cancel and a want-block each move.
const providerGather = 10 * time.Millisecond

// gathering reports whether pi is a provider found within providerGather
// that has not answered yet (see providerGather) and is asked only as a
// provider: a peer the Session would ask anyway (proven, named, or local)
// is not held back, whichever of its connection and its naming as a
// provider the Session heard of first.
func (p *Policy) gathering(pi *peerInfo, now time.Time) bool {
	if !pi.provider || pi.answered || pi.useful || !now.Before(pi.foundAt.Add(providerGather)) {
		return false
	}
	return !(pi.proven || pi.protected || (pi.local && !p.cfg.BroadcastControlLocal))
}

// presumedOnly reports whether no peer is known to have w's block but by
// presumption: the peers in its haves, if any, are providers that have
// answered nothing yet.
func (p *Policy) presumedOnly(w *wantInfo) bool {
	for id := range w.haves {
		if pi := p.peers[id]; pi == nil || !pi.provider || pi.useful || pi.answered {
			return false
		}
	}
	return true
}

// spreadOverProviders evens out the wants asked of providers that have not
// answered yet: content routing names them one by one, and the first would
// otherwise be asked for everything while the others, found a moment
// later, idle. A provider's latest wants past an even share go back to
// pending (cancelled: not yet answered, they are most likely still in its
// queue or ours), and schedule gives them to the least loaded.
func (p *Policy) spreadOverProviders() {
	var provs []*peerInfo
	total := 0
	for _, id := range p.sortedPeers() {
		if pi := p.peers[id]; pi.provider && !pi.useful && !pi.answered && !pi.suspended {
			provs = append(provs, pi)
			total += pi.inflight
		}
	}
	if len(provs) < 2 {
		return
	}
	share := (total + len(provs) - 1) / len(provs)
	for _, a := range provs {
		for i := len(p.queue) - 1; i >= 0 && a.inflight > share; i-- {
			w := p.queue[i]
			if p.wants[w.c] != w || w.assigned != a.id {
				continue
			}
			p.unassign(w)
			a.inflight--
			p.act.add(&p.act.Cancels, a.id, w.c)
		}
	}
}

// moveToHolder makes w pending again, cancelling its want-block, if it is
// asked of a peer that has neither said HAVE for it nor served this
// session (the first want-block of a lone want goes to a peer not known to
// have it) while holder, another peer, has it (said HAVE, or was named by
// content routing): schedule then asks a holder rather than wait for the
// other peer to answer or time out. The price: when the first peer had
// the block after all and sent it before the cancel reached it, the block
// arrives twice (a gateway and a boxo peer both holding a DAG's root: 3
// runs in 100). Keeping the want with a named peer instead cost the full
// peer timeout whenever the named peer was a silent one (`get --peer` with
// 50 quiet peers).
func (p *Policy) moveToHolder(w *wantInfo, holder *peerInfo) {
	if a := p.peers[w.assigned]; a != nil && a != holder && !a.useful && !w.hasHave(a.id) {
		p.unassign(w)
		a.inflight--
		p.act.add(&p.act.Cancels, a.id, w.c)
	}
}

// Tick handles time passing: peer timeouts, rebroadcasts, provider search.
func (p *Policy) Tick(now time.Time) Actions {
	p.compact()
	// Peers in a fixed order, and their wants in the queue's: whether a
	// peer has an alternative depends on the peers handled before it, and
	// the Actions' lists keep the order in which CIDs were first wanted.
	for _, id := range peersOf(p.peers) {
		pi := p.peers[id]
		if pi.inflight > 0 && !pi.suspended && now.Sub(pi.lastProgress) >= p.timeout(pi) {
			// A silent peer has often just lost our wants or its blocks
			// (libp2p's resource manager resets streams past its limits,
			// and a lazily negotiated stream hides that from the sender).
			// If no other peer can serve, the first time, ask it again
			// at once.
			// No other peer can serve: suspending it would only cancel
			// the wants it may be working through (a popular server is slow
			// for each of its clients, and its first block, when we know
			// least of its pace, takes longest), and ask them again later,
			// at the back of its queue, for duplicates and unfairness. The
			// first time it is asked again at once (it has most likely
			// lost our wants, or the blocks it sent: libp2p's resource
			// manager resets streams past its limits), then waited for,
			// twice as long each time, and asked again once a rebroadcast
			// interval has passed.
			if !p.alternative(pi) {
				// At most once a rebroadcast interval: a slow server
				// falls silent between every pair of blocks, and resending
				// what it is still working through would cost entries,
				// and duplicates when a block was already on its way.
				resend := pi.lastResend.IsZero() || now.Sub(pi.lastResend) >= p.cfg.RebroadcastInterval
				if resend {
					pi.lastResend = now
				}
				pi.patience = min(2*p.timeout(pi), p.cfg.RebroadcastInterval)
				pi.lastProgress = now
				if resend {
					for _, w := range p.queue {
						if w.assigned == pi.id {
							w.sentAt = now
							p.act.add(&p.act.Resends, pi.id, w.c)
						}
					}
				}
				continue
			}
			// Otherwise it is suspended and its wants move to other peers.
			// It may be asked again, if no other peer can be, once it has
			// waited its penalty, which doubles while it stays silent, up
			// to the rebroadcast interval.
			pi.suspended = true
			pi.penalty = min(max(2*pi.penalty, p.timeout(pi)), p.cfg.RebroadcastInterval)
			pi.suspendedUntil = now.Add(pi.penalty)
			for _, w := range p.queue {
				if w.assigned == pi.id {
					p.unassign(w)
					pi.inflight--
					p.act.add(&p.act.Cancels, pi.id, w.c)
				}
			}
		}
	}
	newRound := true
	var order []peer.ID // the broadcast targets, once needed
	for _, w := range p.queue {
		if w.assigned != "" || now.Sub(w.lastBroadcast) < p.cfg.RebroadcastInterval || now.Sub(w.added) < p.cfg.RebroadcastInterval {
			continue
		}
		if p.fixed != nil {
			w.lastBroadcast = now // nothing is broadcast; only the fixed peers are asked
			continue
		}
		// Nobody is working on it: a new round, with a new random draw.
		// The targets that have not said DONT_HAVE for it are asked
		// want-have again, silence forgiven; a refusal stands until the
		// peer reconnects.
		if newRound {
			newRound = false
			p.round++
			p.draw = nil
			for _, pi := range p.peers {
				pi.missed = false // new guesses, and old ones get another chance
			}
		}
		clear(w.askedHave)
		w.lastBroadcast = time.Time{}
		p.broadcast(w, now, &order)
	}
	// Reassign what the timeouts freed before choosing a want to search
	// for: a want a useful peer now works on needs no search.
	p.schedule(now)
	p.searchProviders(now)
	p.wantDue = p.nextWantDue(now)
	return p.take()
}

// Deadline returns when the Session must next call Tick, given that the
// last input was at now: the earliest peer timeout, the end of a wait that
// holds back a pending want (a peer's first answers, HAVEs asked for, a
// suspension), or a want-level decision; the zero time when nothing is
// wanted. It may be at or before now (Tick is due at once) and may be
// early (a Tick with nothing due does nothing), but never late.
func (p *Policy) Deadline(now time.Time) time.Time {
	if len(p.wants) == 0 {
		return time.Time{}
	}
	d := p.wantDue
	earlier := func(t time.Time) {
		if !t.IsZero() && (d.IsZero() || t.Before(d)) {
			d = t
		}
	}
	waiting := p.pending.Len() > 0
	for _, pi := range p.peers {
		switch {
		case pi.inflight > 0 && !pi.suspended:
			earlier(pi.lastProgress.Add(p.timeout(pi)))
			if t := pi.lastProgress.Add(2 * p.lat(pi)); waiting && !pi.answered && t.After(now) {
				earlier(t) // the end of its first answers' window (schedule's probing)
			}
		case pi.suspended && waiting && pi.suspendedUntil.After(now):
			earlier(pi.suspendedUntil) // a last resort again
		}
	}
	return d
}

// note lowers wantDue to t: an input has made a want-level decision due
// then (Tick computes the exact time again).
func (p *Policy) note(t time.Time) {
	if p.wantDue.IsZero() || t.Before(p.wantDue) {
		p.wantDue = t
	}
}

// nextWantDue is the earliest want-level decision after now: a rebroadcast
// of a want no peer is asked for, the next provider search, the end of a
// pending want's wait for HAVEs. The zero time if none.
func (p *Policy) nextWantDue(now time.Time) time.Time {
	var d time.Time
	earlier := func(t time.Time) {
		if t.After(now) && (d.IsZero() || t.Before(d)) {
			d = t
		}
	}
	searchOpen := time.Time{}
	if !p.lastSearch.IsZero() {
		searchOpen = p.lastSearch.Add(p.cfg.ProviderSearchInterval)
	}
	searched := false
	delay := p.cfg.ProviderSearchDelay
	if p.blind() {
		delay = 0
	}
	for _, w := range p.queue {
		if p.wants[w.c] != w {
			continue
		}
		if w.assigned == "" {
			earlier(later(w.lastBroadcast, w.added).Add(p.cfg.RebroadcastInterval))
		}
		// The oldest want eligible for a search (see searchProviders)
		// sets when the next one happens.
		if !searched && len(w.haves) == 0 {
			if pi := p.peers[w.assigned]; pi == nil || !pi.useful {
				searched = true
				earlier(later(searchOpen, w.added.Add(delay)))
			}
		}
	}
	for _, pi := range p.peers {
		if pi.provider && !pi.answered && !pi.useful {
			earlier(pi.foundAt.Add(providerGather)) // the end of its gathering
		}
	}
	for i := range p.pending.Len() {
		w := p.pending.At(i)
		for id, t := range w.askedHave {
			if pi := p.peers[id]; pi != nil && !pi.suspended {
				earlier(t.Add(2 * p.lat(pi)))
			}
		}
	}
	return d
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// sortedPeers returns the connected peers in ID order, for the loops whose
// output would otherwise follow the map's random order.
func (p *Policy) sortedPeers() []peer.ID { return peersOf(p.peers) }

// timeout is how long pi may stay silent with wants outstanding.
func (p *Policy) timeout(pi *peerInfo) time.Duration {
	return max(p.cfg.PeerTimeout, 3*p.lat(pi)+4*pi.serviceTime, pi.patience)
}

// lat is pi's measured latency, or the configured default.
func (p *Policy) lat(pi *peerInfo) time.Duration {
	if pi.latency == 0 {
		return p.cfg.DefaultLatency
	}
	return pi.latency
}

func (p *Policy) progress(pi *peerInfo, now time.Time) {
	pi.lastProgress = now
	pi.suspended = false
	pi.answered = true
	pi.penalty = 0
	pi.patience = 0
}

// alternative reports whether some peer other than pi could be asked.
func (p *Policy) alternative(pi *peerInfo) bool {
	for _, o := range p.peers {
		if o != pi && !o.suspended {
			return true
		}
	}
	return false
}

func (p *Policy) sample(pi *peerInfo, d time.Duration) {
	if d <= 0 {
		return
	}
	pi.latency = ewma(pi.latency, d)
}

func ewma(old, sample time.Duration) time.Duration {
	if old == 0 {
		return sample
	}
	return (3*old + sample) / 4
}

// searchProviders asks content routing about a want that no peer said
// HAVE for and no serving peer is working on, once the delay has passed or
// every broadcast target has declined it: of those, the one searched for
// least recently (never, first; then the oldest), so that a Session
// missing several blocks searches for each in turn. One search per
// interval: the providers of one block of a DAG usually have the rest.
// With fixed peers, never.
func (p *Policy) searchProviders(now time.Time) {
	if p.fixed != nil || (!p.lastSearch.IsZero() && now.Sub(p.lastSearch) < p.cfg.ProviderSearchInterval) {
		return
	}
	var best *wantInfo
	blind := p.blind()
	for _, w := range p.queue {
		if p.wants[w.c] != w || len(w.haves) > 0 {
			continue // no longer wanted (the queue is compacted lazily), or a peer has it
		}
		if pi := p.peers[w.assigned]; pi != nil && pi.useful {
			continue // asked of a peer that has been serving this session
		}
		if blind || now.Sub(w.added) >= p.cfg.ProviderSearchDelay || p.allDeclined(w) {
			if best == nil || w.searched.Before(best.searched) {
				best = w
			}
			if best.searched.IsZero() {
				break // never searched, and the oldest such
			}
		}
	}
	if best != nil {
		p.lastSearch = now
		best.searched = now
		p.act.FindProvs = append(p.act.FindProvs, best.c)
	}
}

// blind reports whether broadcast control leaves the Session no peer to
// ask but its random draw: none is useful, proven, named or (uncontrolled)
// local, or there is no peer at all. Content routing is then the likeliest
// way to a holder, and is asked at once rather than after
// ProviderSearchDelay.
func (p *Policy) blind() bool {
	if p.fixed != nil || p.cfg.BroadcastAll {
		return false
	}
	for _, pi := range p.peers {
		if p.reason(pi) {
			return false
		}
	}
	return true
}

// allDeclined reports whether every peer that could be asked for w has
// declined it: every broadcast target (every peer, without broadcast
// control) not suspended has said DONT_HAVE.
func (p *Policy) allDeclined(w *wantInfo) bool {
	for id, pi := range p.peers {
		if _, no := w.dontHaves[id]; !no && !pi.suspended && (p.target(pi) || w.hasHave(id)) {
			return false
		}
	}
	return true
}

func (p *Policy) compact() {
	q := p.queue[:0]
	for _, w := range p.queue {
		if p.wants[w.c] == w {
			q = append(q, w)
		}
	}
	clear(p.queue[len(q):])
	p.queue = q
}

// schedule asks a peer for every want that has none, and, while the session
// is still discovering who has its data, asks the broadcast targets
// want-have.
func (p *Policy) schedule(now time.Time) {
	if p.pending.Len() == 0 || len(p.peers) == 0 {
		return
	}
	useful := false
	for _, pi := range p.peers {
		if pi.useful && !pi.suspended {
			useful = true
			break
		}
	}
	// While peers are still answering their first wants, a want that one
	// peer declined waits for them (for at most two of their round trips):
	// they will most likely name holders within the same round trip, and
	// the wants then spread over all of them instead of piling onto the
	// first to answer, or going to unknown peers one message at a time.
	probing := false
	for _, pi := range p.peers {
		if pi.inflight > 0 && !pi.answered && !pi.suspended && now.Sub(pi.lastProgress) < 2*p.lat(pi) {
			probing = true
			break
		}
	}
	// Wants the useful peers declined go to other targets with want-block
	// only when there are enough of them, with those already probing
	// peers that are not useful, to probe those peers that way (as a
	// first wave does); a few are broadcast want-have instead, so that a
	// want nobody has costs each peer one entry, not a want-block and its
	// cancel, peer after peer.
	probes := p.pending.Len()
	for _, pi := range p.peers {
		if !pi.useful {
			probes += pi.inflight
		}
	}
	spread := probes >= p.targets()
	var discovering, stranded []*wantInfo
	var waiting []*wantInfo
	for p.pending.Len() > 0 {
		w := p.pending.Pop()
		pi, held := p.pick(now, w, useful, spread)
		if pi == nil && held {
			// Only guesses could take it, and each is busy with its probe:
			// it waits for their answers (or content routing's), unasked.
			waiting = append(waiting, w)
			continue
		}
		if pi == nil {
			// Nobody left to ask want-block: the targets are asked
			// want-have (once a round), and a HAVE brings it back.
			waiting = append(waiting, w)
			stranded = append(stranded, w)
			continue
		}
		if !w.hasHave(pi.id) && ((probing && len(w.dontHaves) > 0) || p.awaitingHaves(w, now)) {
			waiting = append(waiting, w)
			continue
		}
		if !pi.useful && !w.hasHave(pi.id) {
			discovering = append(discovering, w)
		}
		w.assigned = pi.id
		w.sentAt = now
		w.alone = pi.inflight == 0
		if pi.inflight == 0 {
			pi.lastProgress = now // the timeout runs from the first want
		}
		pi.suspended = false // a last resort gets another chance
		pi.inflight++
		delete(w.askedHave, pi.id)
		p.act.add(&p.act.WantBlocks, pi.id, w.c)
	}
	for _, w := range waiting {
		p.pending.Push(w)
	}
	if p.fixed != nil {
		return // nothing is broadcast
	}
	// A want nobody is left to ask want-block (the useful peers declined
	// it, or every target did or was asked want-have and is silent) goes
	// as want-have to the targets not yet asked this round: those there
	// were when it was stranded, and any that have joined since.
	var order []peer.ID // the broadcast targets, once needed
	for _, w := range stranded {
		if len(w.haves) == 0 {
			p.broadcast(w, now, &order)
		}
	}
	// When the session's want-blocks cannot reach every target (a single
	// GetBlock among many peers), ask the rest whether they have it, so that
	// one round trip finds a holder instead of one per peer. With at least
	// as many wants as targets, the want-blocks themselves probe the peers,
	// the nearest first: the farthest may get none this round, and wants
	// the nearer ones decline walk on to them.
	if len(discovering) == 0 || useful || len(p.wants) >= p.targets() {
		return
	}
	for _, w := range discovering {
		if w.lastBroadcast.IsZero() {
			p.broadcast(w, now, &order)
		}
	}
}

// broadcast asks the broadcast targets whether they have w's block: those
// not asked for it this round, not suspended and not having said DONT_HAVE
// for it, in order (see targetOrder), want-have each, so that at most
// BroadcastMaxPeers are asked about w in a round, the peer asked for the
// block included. A round starts with the first broadcast of w (and again
// at each rebroadcast); calling it again within the round asks only the
// targets that have joined since.
func (p *Policy) broadcast(w *wantInfo, now time.Time, order *[]peer.ID) {
	if w.lastBroadcast.IsZero() {
		w.lastBroadcast = now
		w.roundAsked = 0
		if w.assigned != "" {
			w.roundAsked++ // the peer asked for the block counts
		}
	}
	max := p.cfg.BroadcastMaxPeers
	if *order == nil {
		*order = p.targetOrder() // once per step: the targets do not change within it
	}
	for _, id := range *order {
		if max >= 0 && w.roundAsked >= max {
			return
		}
		pi := p.peers[id]
		if id == w.assigned || pi.suspended {
			continue
		}
		if _, no := w.dontHaves[id]; no {
			continue
		}
		if _, asked := w.askedHave[id]; asked {
			continue
		}
		w.roundAsked++
		p.askHave(w, id, now)
	}
}

// target reports whether pi is a broadcast target: asked want-have about
// wants nobody is known to have and, while the session knows no useful
// peer, want-block. See Config.BroadcastAll.
func (p *Policy) target(pi *peerInfo) bool {
	switch {
	case p.fixed != nil:
		return p.fixed[pi.id]
	case p.cfg.BroadcastAll, p.reason(pi):
		return true
	}
	return !pi.missed && p.drawn()[pi.id]
}

// reason reports whether broadcast control has a reason to ask pi other
// than the random draw: it served this session or the node, the
// application named it, content routing did, or it is local (and local
// peers are not controlled).
func (p *Policy) reason(pi *peerInfo) bool {
	return pi.useful || pi.proven || pi.protected || pi.provider || (pi.local && !p.cfg.BroadcastControlLocal)
}

// guess reports whether pi is a target only by the random draw.
func (p *Policy) guess(pi *peerInfo) bool {
	if p.fixed != nil || p.cfg.BroadcastAll || p.reason(pi) {
		return false
	}
	return p.drawn()[pi.id]
}

// targets counts the broadcast targets (capped as broadcast caps them).
func (p *Policy) targets() int {
	n := 0
	for _, pi := range p.peers {
		if p.target(pi) {
			n++
		}
	}
	if p.cfg.BroadcastMaxPeers >= 0 {
		n = min(n, p.cfg.BroadcastMaxPeers)
	}
	return n
}

// targetOrder lists the broadcast targets in the order broadcast takes
// them: peers that have served (this session or the node), then those the
// application named, then local peers, then the random draw; by ID within
// each.
func (p *Policy) targetOrder() []peer.ID {
	rank := func(pi *peerInfo) int {
		switch {
		case pi.useful || pi.proven || pi.provider:
			return 0
		case pi.protected:
			return 1
		case pi.local && !p.cfg.BroadcastControlLocal:
			return 2
		}
		return 3
	}
	var out []peer.ID
	for _, id := range p.sortedPeers() {
		if p.target(p.peers[id]) {
			out = append(out, id)
		}
	}
	slices.SortStableFunc(out, func(a, b peer.ID) int { return rank(p.peers[a]) - rank(p.peers[b]) })
	return out
}

// setUseful marks pi useful. The random draw excludes useful peers, so it
// is drawn again: the draw must be a function of the peers and their facts
// at every moment, whenever it happens to be computed, or the Actions of
// one input would depend on the order of a map.
func (p *Policy) setUseful(pi *peerInfo) {
	if !pi.useful {
		pi.useful = true
		p.draw = nil
	}
}

// drawn returns the random draw of BroadcastRandomPeers among the peers
// that are no target otherwise, drawing it if needed: the peers whose hash
// of (Seed, round, ID) is smallest, so that the same inputs draw the same
// peers and each round draws others.
func (p *Policy) drawn() map[peer.ID]bool {
	if p.draw != nil {
		return p.draw
	}
	p.draw = make(map[peer.ID]bool)
	n := p.cfg.BroadcastRandomPeers
	if n <= 0 || p.cfg.BroadcastAll {
		return p.draw
	}
	type scored struct {
		id peer.ID
		h  uint64
	}
	var cands []scored
	for id, pi := range p.peers {
		// A missed guess keeps its place in the draw (a new guess would
		// cost more entries), but is no target.
		if p.reason(pi) {
			continue
		}
		h := fnv.New64a()
		var b [16]byte
		binary.LittleEndian.PutUint64(b[:8], p.cfg.Seed)
		binary.LittleEndian.PutUint64(b[8:], p.round)
		h.Write(b[:])
		h.Write([]byte(id))
		cands = append(cands, scored{id, h.Sum64()})
	}
	slices.SortFunc(cands, func(a, b scored) int {
		if a.h != b.h {
			if a.h < b.h {
				return -1
			}
			return 1
		}
		if a.id < b.id {
			return -1
		}
		return 1
	})
	for _, c := range cands[:min(n, len(cands))] {
		p.draw[c.id] = true
	}
	return p.draw
}

// awaitingHaves reports whether w should wait for answers to its
// want-haves rather than be asked of a peer that has not said HAVE: no HAVE
// yet, and a peer asked recently enough (two of its round trips) to answer.
func (p *Policy) awaitingHaves(w *wantInfo, now time.Time) bool {
	if len(w.haves) > 0 {
		return false
	}
	for id, t := range w.askedHave {
		if pi := p.peers[id]; pi != nil && !pi.suspended && now.Sub(t) < 2*p.lat(pi) {
			return true
		}
	}
	return false
}

func (p *Policy) askHave(w *wantInfo, id peer.ID, now time.Time) {
	if _, asked := w.askedHave[id]; asked {
		return
	}
	if w.askedHave == nil {
		w.askedHave = make(map[peer.ID]time.Time)
	}
	w.askedHave[id] = now
	if pi := p.peers[id]; pi != nil {
		p.note(now.Add(2 * p.lat(pi))) // the end of its wait for HAVEs
	}
	p.act.add(&p.act.WantHaves, id, w.c)
}

// pick chooses the peer to ask for w's block: the one expected to deliver
// soonest among those that said HAVE (or, with fixed peers, among those);
// failing that among the session's useful peers; failing that, only while
// no peer is useful, among the broadcast targets not asked want-have for
// it (those answer HAVE first), the peers that have served this node
// before first. A peer that said DONT_HAVE for w is never chosen; a peer
// that timed out only as a last resort, once it has sat out its penalty.
// held reports that nobody was chosen only because the providers that
// could be are being gathered (see providerGather), or the guesses that
// could be are each busy with a want already.
func (p *Policy) pick(now time.Time, w *wantInfo, useful, spread bool) (best *peerInfo, held bool) {
	var bestScore time.Duration
	consider := func(pi *peerInfo) {
		if pi.suspended {
			return
		}
		if _, no := w.dontHaves[pi.id]; no {
			return
		}
		s := p.score(pi)
		if best == nil || s < bestScore || (s == bestScore && pi.id < best.id) {
			best, bestScore = pi, s
		}
	}
	if p.fixed != nil {
		for _, pi := range p.peers {
			consider(pi)
		}
	} else {
		for id := range w.haves {
			if pi := p.peers[id]; pi != nil {
				if p.gathering(pi, now) {
					held = true
					continue
				}
				consider(pi)
			}
		}
	}
	if best != nil {
		return best, false
	}
	if held {
		return nil, true // it waits for the providers being gathered
	}
	if p.fixed == nil && useful {
		for _, pi := range p.peers {
			if pi.useful {
				consider(pi)
			}
		}
		// Every useful peer declined it: unless there are enough such
		// wants to spread over the other targets (spread), broadcast
		// (schedule) asks those want-have, and the first HAVE brings it
		// back here.
	}
	if p.fixed == nil && best == nil && (!useful || spread) {
		for _, proven := range []bool{true, false} {
			for _, pi := range p.peers {
				if _, asked := w.askedHave[pi.id]; !asked && pi.proven == proven && p.target(pi) {
					// A guess (a target by the random draw alone) is a
					// probe: one want at a time until it answers. On the
					// public network it almost never has the data, and
					// every want asked of it costs an entry and its
					// cancel; one is enough to find out.
					if pi.inflight > 0 && !pi.suspended && p.guess(pi) {
						held = true
						continue
					}
					consider(pi)
				}
			}
			if best != nil {
				break
			}
		}
	}
	if best == nil {
		// Last resort: a peer that timed out and has sat out its penalty
		// (a server can stall for one peer and recover when asked anew),
		// among those that might be asked at all.
		for _, pi := range p.peers {
			if _, no := w.dontHaves[pi.id]; !no && pi.suspended && !now.Before(pi.suspendedUntil) &&
				(p.fixed != nil || pi.useful || w.hasHave(pi.id) || p.target(pi)) {
				if best == nil || pi.id < best.id {
					best = pi
				}
			}
		}
	}
	if best != nil {
		held = false
	}
	return best, held
}

// score is the expected time until pi delivers one more block: a round trip
// plus its queue of our wants at its per-block service time. A peer not yet
// measured is assumed to serve at the mean of those that are, or, before
// any is, at defaultServiceTime: peers of equal latency then queue by count
// alone, which spreads a first wave evenly, and one a few milliseconds
// closer takes a few wants more, not all of them. (Assuming next to
// nothing made an unmeasured peer look free: it took every want.)
func (p *Policy) score(pi *peerInfo) time.Duration {
	lat := p.lat(pi)
	if pi.provider && !pi.answered {
		// Providers not heard from yet are scored alike, by their load:
		// whether their latency is known yet depends only on the order in
		// which content routing named them and they connected.
		lat = p.cfg.DefaultLatency
	}
	st := pi.serviceTime
	if st == 0 {
		st = defaultServiceTime
		if p.stCount > 0 {
			st = p.stSum / time.Duration(p.stCount)
		}
	}
	return lat + time.Duration(pi.inflight)*st
}

// defaultServiceTime is the time per block assumed of a peer before any
// peer of the session has been measured: a 128 KiB block at 100 Mbit/s.
const defaultServiceTime = 10 * time.Millisecond

// setServiceTime sets pi's service time and keeps the session's sum and
// count of measured ones (for score) in step; 0 means unmeasured.
func (p *Policy) setServiceTime(pi *peerInfo, st time.Duration) {
	if pi.serviceTime > 0 {
		p.stSum -= pi.serviceTime
		p.stCount--
	}
	pi.serviceTime = st
	if st > 0 {
		p.stSum += st
		p.stCount++
	}
}

// peersOf lists the peers in a map in a stable order.
func peersOf[M ~map[peer.ID]V, V any](m M) []peer.ID {
	out := make([]peer.ID, 0, len(m))
	for id := range m {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

// Less orders pending wants by seq, oldest first.
func (w *wantInfo) Less(o *wantInfo) bool { return w.seq < o.seq }

// SetIndex records w's position in the pending queue.
func (w *wantInfo) SetIndex(i int) { w.pidx = i }

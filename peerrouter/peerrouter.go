// Package peerrouter routes what we learn about peers to the Sessions that
// care: connections and disconnections go to every Session, HAVE and
// DONT_HAVE answers, and providers found by content routing, go to the
// Sessions that want those CIDs.
//
// It owns the set of connected Bitswap peers and what the node knows of
// each (PeerInfo: local, named by the application, proven by a HAVE or a
// wanted block), which broadcast control chooses by. Which Sessions run, and
// which wants which CID, it asks of their owner, the BlockRouter
// (Interest). It never decides anything about wants and never sends
// anything: Sessions decide, the WantManager sends.
package peerrouter

import (
	"slices"
	"sync"

	cid "github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Sink receives peer information. Implementations must not block: the
// PeerRouter calls them from the network's goroutines, peer events under
// its lock (so that every Sink sees one peer's events in order).
type Sink interface {
	// PeerConnected tells of a peer that connected, and again, with the
	// new PeerInfo, whenever what is known of it changes.
	PeerConnected(p peer.ID, info PeerInfo)
	PeerDisconnected(p peer.ID)
	Presences(from peer.ID, haves, dontHaves []cid.Cid)
	// ProviderFound says that content routing named p as a provider of
	// c, and that p is connected.
	ProviderFound(p peer.ID, c cid.Cid)
}

// Interest says which Sessions run and which want which CIDs. The facade
// adapts *blockrouter.BlockRouter to it: the BlockRouter owns both.
type Interest interface {
	// Sessions returns every running Session's sink.
	Sessions() []Sink
	// EachWanter calls f(id, s, i) for every Session id, with sink s,
	// that wants cids[i].
	EachWanter(cids []cid.Cid, f func(id uint64, s Sink, i int))
}

// PeerInfo is what the node knows of a connected peer.
type PeerInfo struct {
	// Local: the peer is connected on a loopback, private (LAN) or
	// link-local address (the network says, as it connects).
	Local bool
	// Proven: the peer has sent this node a HAVE, or a block some Session
	// wanted, since it connected.
	Proven bool
	// Protected: the application named the peer (WithProtected).
	Protected bool
}

// PeerRouter fans peer events out to Sinks. The zero value is not usable;
// call New. It is safe for concurrent use.
type PeerRouter struct {
	interest  Interest
	protected map[peer.ID]bool
	mu        sync.Mutex // guards peers; held while peer events are delivered
	peers     map[peer.ID]*PeerInfo
}

// Option configures a PeerRouter.
type Option func(*PeerRouter)

// WithProtected names peers the application wants always asked: their
// PeerInfo says Protected.
func WithProtected(ids ...peer.ID) Option {
	return func(r *PeerRouter) {
		for _, id := range ids {
			r.protected[id] = true
		}
	}
}

// New returns a PeerRouter that asks interest whom to tell.
func New(interest Interest, opts ...Option) *PeerRouter {
	r := &PeerRouter{interest: interest, peers: make(map[peer.ID]*PeerInfo), protected: make(map[peer.ID]bool)}
	for _, o := range opts {
		o(r)
	}
	return r
}

// Attach tells s, a Session that has just been registered with the
// Interest, of every peer connected now (PeerConnected for each). Events
// after it reach s in order; one that raced with the registration may
// reach s twice, which a Sink must take as a no-op (connected twice is
// connected).
func (r *PeerRouter) Attach(s Sink) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range r.sortedPeers() {
		s.PeerConnected(p, *r.peers[p])
	}
}

// ConnectedPeers returns the connected Bitswap peers.
func (r *PeerRouter) ConnectedPeers() []peer.ID {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sortedPeers()
}

func (r *PeerRouter) sortedPeers() []peer.ID {
	out := make([]peer.ID, 0, len(r.peers))
	for p := range r.peers {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// PeerConnected records p, connected on a local address or not, and tells
// every Session. named: the network knows the application chose p (an
// HTTP endpoint it was told to reach), and p is Protected as the peers of
// WithProtected are.
func (r *PeerRouter) PeerConnected(p peer.ID, local, named bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.peers[p]; ok {
		return
	}
	info := &PeerInfo{Local: local, Protected: named || r.protected[p]}
	r.peers[p] = info
	for _, s := range r.interest.Sessions() {
		s.PeerConnected(p, *info)
	}
}

// Info returns what is known of p, and whether it is connected.
func (r *PeerRouter) Info(p peer.ID) (PeerInfo, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if info := r.peers[p]; info != nil {
		return *info, true
	}
	return PeerInfo{}, false
}

// proven marks p as having sent a HAVE or a wanted block and, the first
// time, tells every Session (PeerConnected with the new PeerInfo).
func (r *PeerRouter) proven(p peer.ID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	info := r.peers[p]
	if info == nil || info.Proven {
		return
	}
	info.Proven = true
	for _, s := range r.interest.Sessions() {
		s.PeerConnected(p, *info)
	}
}

// isProven reports whether there is nothing to prove of p: it is not
// connected, or proven already.
func (r *PeerRouter) isProven(p peer.ID) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	info := r.peers[p]
	return info == nil || info.Proven
}

// ReceiveBlocks is told of the blocks of each message, before the
// BlockRouter takes them: the first that some Session wants proves the
// peer (see PeerInfo.Proven).
func (r *PeerRouter) ReceiveBlocks(from peer.ID, keys []cid.Cid) {
	if len(keys) == 0 || r.isProven(from) {
		return
	}
	wanted := false
	r.interest.EachWanter(keys, func(uint64, Sink, int) { wanted = true })
	if wanted {
		r.proven(from)
	}
}

// PeerDisconnected forgets p and tells every Session.
func (r *PeerRouter) PeerDisconnected(p peer.ID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.peers[p]; !ok {
		return
	}
	delete(r.peers, p)
	for _, s := range r.interest.Sessions() {
		s.PeerDisconnected(p)
	}
}

// ReceivePresences routes a peer's HAVEs and DONT_HAVEs to the sinks
// interested in each CID.
func (r *PeerRouter) ReceivePresences(from peer.ID, haves, dontHaves []cid.Cid) {
	if len(haves) == 0 && len(dontHaves) == 0 {
		return
	}
	if len(haves) > 0 && !r.isProven(from) {
		r.proven(from)
	}
	type split struct {
		sink             Sink
		haves, dontHaves []cid.Cid
	}
	per := make(map[uint64]*split)
	route := func(cids []cid.Cid, have bool) {
		r.interest.EachWanter(cids, func(id uint64, sink Sink, i int) {
			s := per[id]
			if s == nil {
				s = &split{sink: sink}
				per[id] = s
			}
			if have {
				s.haves = append(s.haves, cids[i])
			} else {
				s.dontHaves = append(s.dontHaves, cids[i])
			}
		})
	}
	route(haves, true)
	route(dontHaves, false)
	for _, s := range per {
		s.sink.Presences(from, s.haves, s.dontHaves)
	}
}

// ProviderFound routes a provider of c, found by content routing and
// connected, to every Session that wants c (under any CID version of its
// multihash), whichever of them asked for the search: one query serves
// them all.
func (r *PeerRouter) ProviderFound(p peer.ID, c cid.Cid) {
	var sinks []Sink
	r.interest.EachWanter([]cid.Cid{c}, func(_ uint64, s Sink, _ int) { sinks = append(sinks, s) })
	for _, s := range sinks {
		s.ProviderFound(p, c)
	}
}

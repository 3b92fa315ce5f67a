// Package peerrouter routes what we learn about peers to the Sessions that
// care: connections and disconnections go to every Session, HAVE and
// DONT_HAVE answers go to the Sessions that want those CIDs.
//
// It owns the set of connected Bitswap peers. Which Session wants which
// CID it asks of the index's owner, the BlockRouter (Interest). It never
// decides anything about wants and never sends anything: Sessions decide,
// the WantManager sends.
package peerrouter

import (
	"sync"

	cid "github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Sink receives peer information. Implementations must not block: the
// PeerRouter calls them from the network's goroutines.
type Sink interface {
	PeerConnected(p peer.ID)
	PeerDisconnected(p peer.ID)
	Presences(from peer.ID, haves, dontHaves []cid.Cid)
}

// Interest says which Sessions want which CIDs. *blockrouter.BlockRouter
// satisfies it: it owns that index.
type Interest interface {
	// EachWanter calls f(id, i) for every Session id that wants cids[i].
	EachWanter(cids []cid.Cid, f func(id uint64, i int))
}

// PeerRouter fans peer events out to Sinks. The zero value is not usable;
// call New. It is safe for concurrent use.
type PeerRouter struct {
	interest Interest
	mu       sync.Mutex
	sinks    map[uint64]Sink
	peers    map[peer.ID]struct{}
}

// New returns a PeerRouter that routes presences by interest.
func New(interest Interest) *PeerRouter {
	return &PeerRouter{
		interest: interest,
		sinks:    make(map[uint64]Sink),
		peers:    make(map[peer.ID]struct{}),
	}
}

// Register adds a sink and returns the peers connected at that moment, so
// that the sink misses no connection: every later change reaches it as an
// event.
func (r *PeerRouter) Register(id uint64, s Sink) []peer.ID {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sinks[id] = s
	out := make([]peer.ID, 0, len(r.peers))
	for p := range r.peers {
		out = append(out, p)
	}
	return out
}

// Unregister removes a sink.
func (r *PeerRouter) Unregister(id uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.sinks, id)
}

// ConnectedPeers returns the connected Bitswap peers.
func (r *PeerRouter) ConnectedPeers() []peer.ID {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]peer.ID, 0, len(r.peers))
	for p := range r.peers {
		out = append(out, p)
	}
	return out
}

// PeerConnected records p and tells every sink.
func (r *PeerRouter) PeerConnected(p peer.ID) {
	r.mu.Lock()
	if _, ok := r.peers[p]; ok {
		r.mu.Unlock()
		return
	}
	r.peers[p] = struct{}{}
	sinks := r.allSinks()
	r.mu.Unlock()
	for _, s := range sinks {
		s.PeerConnected(p)
	}
}

// PeerDisconnected forgets p and tells every sink.
func (r *PeerRouter) PeerDisconnected(p peer.ID) {
	r.mu.Lock()
	if _, ok := r.peers[p]; !ok {
		r.mu.Unlock()
		return
	}
	delete(r.peers, p)
	sinks := r.allSinks()
	r.mu.Unlock()
	for _, s := range sinks {
		s.PeerDisconnected(p)
	}
}

func (r *PeerRouter) allSinks() []Sink {
	out := make([]Sink, 0, len(r.sinks))
	for _, s := range r.sinks {
		out = append(out, s)
	}
	return out
}

// ReceivePresences routes a peer's HAVEs and DONT_HAVEs to the sinks
// interested in each CID.
func (r *PeerRouter) ReceivePresences(from peer.ID, haves, dontHaves []cid.Cid) {
	if len(haves) == 0 && len(dontHaves) == 0 {
		return
	}
	type split struct{ haves, dontHaves []cid.Cid }
	per := make(map[uint64]*split)
	route := func(cids []cid.Cid, have bool) {
		r.interest.EachWanter(cids, func(id uint64, i int) {
			s := per[id]
			if s == nil {
				s = &split{}
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
	r.mu.Lock()
	sinks := make(map[uint64]Sink, len(per))
	for id := range per {
		sinks[id] = r.sinks[id]
	}
	r.mu.Unlock()
	for id, s := range per {
		if sink := sinks[id]; sink != nil {
			sink.Presences(from, s.haves, s.dontHaves)
		}
	}
}

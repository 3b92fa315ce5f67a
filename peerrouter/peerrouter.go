// Package peerrouter routes what we learn about peers to the Sessions that
// care: connections and disconnections go to every Session, HAVE and
// DONT_HAVE answers go to the Sessions that want those CIDs.
//
// It owns the set of connected Bitswap peers and the index of which Session
// is interested in which CID. It never decides anything about wants and
// never sends anything: Sessions decide, the WantManager sends.
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

// PeerRouter fans peer events out to Sinks. The zero value is not usable;
// call New. It is safe for concurrent use.
type PeerRouter struct {
	mu       sync.Mutex
	sinks    map[uint64]Sink
	interest map[string]map[uint64]struct{} // multihash -> sinks
	peers    map[peer.ID]struct{}
}

// New returns an empty PeerRouter.
func New() *PeerRouter {
	return &PeerRouter{
		sinks:    make(map[uint64]Sink),
		interest: make(map[string]map[uint64]struct{}),
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

// Unregister removes a sink. Its owner withdraws its interests with
// Uninterest first (it knows them; a scan of every interest here would cost
// time proportional to all sessions' wants).
func (r *PeerRouter) Unregister(id uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.sinks, id)
}

// Interest routes presences for cids to sink id.
func (r *PeerRouter) Interest(id uint64, cids []cid.Cid) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range cids {
		k := string(c.Hash())
		set := r.interest[k]
		if set == nil {
			set = make(map[uint64]struct{}, 1)
			r.interest[k] = set
		}
		set[id] = struct{}{}
	}
}

// Uninterest stops routing presences for cids to sink id.
func (r *PeerRouter) Uninterest(id uint64, cids []cid.Cid) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range cids {
		k := string(c.Hash())
		if set := r.interest[k]; set != nil {
			delete(set, id)
			if len(set) == 0 {
				delete(r.interest, k)
			}
		}
	}
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
	r.mu.Lock()
	route := func(cids []cid.Cid, have bool) {
		for _, c := range cids {
			for id := range r.interest[string(c.Hash())] {
				s := per[id]
				if s == nil {
					s = &split{}
					per[id] = s
				}
				if have {
					s.haves = append(s.haves, c)
				} else {
					s.dontHaves = append(s.dontHaves, c)
				}
			}
		}
	}
	route(haves, true)
	route(dontHaves, false)
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

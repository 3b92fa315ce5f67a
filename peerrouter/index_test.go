package peerrouter_test

import (
	"sync"

	cid "github.com/ipfs/go-cid"

	"github.com/gobitswap/bitswap/peerrouter"
)

// index stands in for the BlockRouter, which owns, in the library, the
// registry of running Sessions and the interest index: which Session wants
// which CID, by multihash.
type index struct {
	mu     sync.Mutex
	sinks  map[uint64]peerrouter.Sink
	wanted map[string]map[uint64]struct{}
}

func newIndex() *index {
	return &index{sinks: make(map[uint64]peerrouter.Sink), wanted: make(map[string]map[uint64]struct{})}
}

// start registers a Session's sink and attaches it to r, as a Session
// does when it starts.
func (x *index) start(r *peerrouter.PeerRouter, id uint64, s peerrouter.Sink) {
	x.mu.Lock()
	x.sinks[id] = s
	x.mu.Unlock()
	r.Attach(s)
}

// Unregister removes a Session's sink.
func (x *index) Unregister(id uint64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	delete(x.sinks, id)
}

// Sessions implements peerrouter.Interest.
func (x *index) Sessions() []peerrouter.Sink {
	x.mu.Lock()
	defer x.mu.Unlock()
	out := make([]peerrouter.Sink, 0, len(x.sinks))
	for _, s := range x.sinks {
		out = append(out, s)
	}
	return out
}

// Interest records that id wants cids.
func (x *index) Interest(id uint64, cids []cid.Cid) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, c := range cids {
		k := string(c.Hash())
		if x.wanted[k] == nil {
			x.wanted[k] = make(map[uint64]struct{})
		}
		x.wanted[k][id] = struct{}{}
	}
}

// Uninterest withdraws id's wants for cids.
func (x *index) Uninterest(id uint64, cids []cid.Cid) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, c := range cids {
		k := string(c.Hash())
		delete(x.wanted[k], id)
		if len(x.wanted[k]) == 0 {
			delete(x.wanted, k)
		}
	}
}

// EachWanter implements peerrouter.Interest.
func (x *index) EachWanter(cids []cid.Cid, f func(id uint64, s peerrouter.Sink, i int)) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for i, c := range cids {
		for id := range x.wanted[string(c.Hash())] {
			if s := x.sinks[id]; s != nil {
				f(id, s, i)
			}
		}
	}
}

package peerrouter_test

import (
	"sync"

	cid "github.com/ipfs/go-cid"
)

// index stands in for the BlockRouter, which owns the interest index in the
// library: which Session wants which CID, by multihash.
type index struct {
	mu     sync.Mutex
	wanted map[string]map[uint64]struct{}
}

func newIndex() *index { return &index{wanted: make(map[string]map[uint64]struct{})} }

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
func (x *index) EachWanter(cids []cid.Cid, f func(id uint64, i int)) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for i, c := range cids {
		for id := range x.wanted[string(c.Hash())] {
			f(id, i)
		}
	}
}

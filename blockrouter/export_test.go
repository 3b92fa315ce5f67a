package blockrouter

import (
	cid "github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Test-only views of the BlockRouter's state; nothing in the library asks
// for them.

// IsWanted reports whether any Session wants c.
func (r *BlockRouter) IsWanted(c cid.Cid) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.wanted[string(c.Hash())].by) > 0
}

// Unrequested returns by how many blocks those nobody asked for outnumber
// the wanted ones p has sent us since it connected.
func (r *BlockRouter) Unrequested(p peer.ID) uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.charged[p]
}

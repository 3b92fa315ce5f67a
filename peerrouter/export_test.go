package peerrouter

import "github.com/libp2p/go-libp2p/core/peer"

// A test-only view of the PeerRouter's state; nothing in the library asks
// for it.

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

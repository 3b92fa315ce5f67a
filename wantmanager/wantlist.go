package wantmanager

import (
	cid "github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Wantlist returns the CIDs that some session currently wants, from some
// peer.
func (wm *WantManager) Wantlist() []cid.Cid {
	wm.mu.Lock()
	defer wm.mu.Unlock()
	out := make([]cid.Cid, 0, len(wm.cids))
	for c := range wm.cids {
		out = append(out, c)
	}
	return out
}

// Resend tells the WantManager that p has most likely lost these wants (or
// the blocks it sent for them): they are sent again, as new wants, without a
// cancel first. A server that still holds them treats the repeat as a no-op.
// Only wants p holds of ours are affected.
func (wm *WantManager) Resend(p peer.ID, cids []cid.Cid) {
	wm.mu.Lock()
	defer wm.mu.Unlock()
	ps := wm.peers[p]
	if wm.closed || ps == nil || ps.conn == nil {
		return
	}
	for _, c := range cids {
		e := ps.entries[c]
		if e == nil || e.sent == wantNone || e.dirty {
			continue
		}
		// The peer stays protected: the want goes out again at the
		// sender's next take, which brings the protection up to date.
		ps.setSent(e, wantNone)
		wm.enqueue(ps, e)
	}
	ps.signal()
}

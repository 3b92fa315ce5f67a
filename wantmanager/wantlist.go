package wantmanager

import cid "github.com/ipfs/go-cid"

// Wantlist returns the CIDs that some session currently wants, from some
// peer or by broadcast.
func (wm *WantManager) Wantlist() []cid.Cid {
	wm.mu.Lock()
	defer wm.mu.Unlock()
	out := make([]cid.Cid, 0, len(wm.cids))
	for c := range wm.cids {
		out = append(out, c)
	}
	return out
}

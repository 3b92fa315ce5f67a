package testutil

import (
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/libp2p/go-libp2p/core/peer"
)

// ConnMgrOp names a call to a VirtualPeer's connection manager.
type ConnMgrOp string

// The calls of network.PeerTagger.
const (
	OpTag       ConnMgrOp = "tag"
	OpUntag     ConnMgrOp = "untag"
	OpProtect   ConnMgrOp = "protect"
	OpUnprotect ConnMgrOp = "unprotect"
)

// ConnMgrCall is one call made to a VirtualPeer's connection manager.
type ConnMgrCall struct {
	Op    ConnMgrOp
	Peer  peer.ID
	Tag   string
	Value int // OpTag only
}

// connMgr is a VirtualPeer's connection manager: it keeps tags and
// protections as libp2p's does and records every call, and trims only when
// told (TrimConnections).
// Unlike libp2p's basic connection manager it keeps a peer's tags when the
// peer disconnects, so that a test sees what the code left behind. It has
// its own lock, taken by nothing else, so it may be called with any of the
// caller's locks held.
type connMgr struct {
	mu        sync.Mutex
	tags      map[peer.ID]map[string]int
	protected map[peer.ID]map[string]struct{}
	calls     []ConnMgrCall
}

func (cm *connMgr) record(c ConnMgrCall) {
	cm.calls = append(cm.calls, c)
	if cm.tags == nil {
		cm.tags = make(map[peer.ID]map[string]int)
		cm.protected = make(map[peer.ID]map[string]struct{})
	}
}

// TagPeer sets tag to value on p. It implements network.PeerTagger, as
// libp2p's connection manager does, and works whatever the peer's state.
func (vp *VirtualPeer) TagPeer(p peer.ID, tag string, value int) {
	cm := &vp.cm
	cm.mu.Lock()
	defer cm.mu.Unlock()
	cm.record(ConnMgrCall{Op: OpTag, Peer: p, Tag: tag, Value: value})
	if cm.tags[p] == nil {
		cm.tags[p] = make(map[string]int)
	}
	cm.tags[p][tag] = value
}

// UntagPeer removes tag from p.
func (vp *VirtualPeer) UntagPeer(p peer.ID, tag string) {
	cm := &vp.cm
	cm.mu.Lock()
	defer cm.mu.Unlock()
	cm.record(ConnMgrCall{Op: OpUntag, Peer: p, Tag: tag})
	delete(cm.tags[p], tag)
	if len(cm.tags[p]) == 0 {
		delete(cm.tags, p)
	}
}

// Protect protects p under tag.
func (vp *VirtualPeer) Protect(p peer.ID, tag string) {
	cm := &vp.cm
	cm.mu.Lock()
	defer cm.mu.Unlock()
	cm.record(ConnMgrCall{Op: OpProtect, Peer: p, Tag: tag})
	if cm.protected[p] == nil {
		cm.protected[p] = make(map[string]struct{})
	}
	cm.protected[p][tag] = struct{}{}
}

// Unprotect removes tag's protection of p and reports whether another tag
// still protects p.
func (vp *VirtualPeer) Unprotect(p peer.ID, tag string) bool {
	cm := &vp.cm
	cm.mu.Lock()
	defer cm.mu.Unlock()
	cm.record(ConnMgrCall{Op: OpUnprotect, Peer: p, Tag: tag})
	delete(cm.protected[p], tag)
	if len(cm.protected[p]) == 0 {
		delete(cm.protected, p)
		return false
	}
	return true
}

// Tags returns the tags this peer's connection manager holds on p, with
// their values (nil if none).
func (vp *VirtualPeer) Tags(p peer.ID) map[string]int {
	cm := &vp.cm
	cm.mu.Lock()
	defer cm.mu.Unlock()
	if len(cm.tags[p]) == 0 {
		return nil
	}
	return maps.Clone(cm.tags[p])
}

// Protections returns the tags under which this peer's connection manager
// protects p, sorted (nil if none).
func (vp *VirtualPeer) Protections(p peer.ID) []string {
	cm := &vp.cm
	cm.mu.Lock()
	defer cm.mu.Unlock()
	if len(cm.protected[p]) == 0 {
		return nil
	}
	return slices.Sorted(maps.Keys(cm.protected[p]))
}

// TaggedPeers returns the peers this peer's connection manager holds a tag
// or a protection on, sorted: empty once everything was released.
func (vp *VirtualPeer) TaggedPeers() []peer.ID {
	cm := &vp.cm
	cm.mu.Lock()
	defer cm.mu.Unlock()
	set := make(map[peer.ID]struct{})
	for p := range cm.tags {
		set[p] = struct{}{}
	}
	for p := range cm.protected {
		set[p] = struct{}{}
	}
	return slices.Sorted(maps.Keys(set))
}

// ConnMgrCalls returns every call made to this peer's connection manager
// so far, in order.
func (vp *VirtualPeer) ConnMgrCalls() []ConnMgrCall {
	cm := &vp.cm
	cm.mu.Lock()
	defer cm.mu.Unlock()
	return slices.Clone(cm.calls)
}

// TrimConnections trims this peer's connections as libp2p's basic
// connection manager does (here without a grace period): of the connected
// peers it does not protect, it keeps the low worth most, by the sum of
// the tags it holds on each, and disconnects the others, the least worth
// first (ties by peer ID, so that runs are reproducible). Protected peers
// are kept and do not count toward low, as in libp2p. It returns the peers
// it disconnected, in that order; each side's receiver hears
// PeerDisconnected, as from DisconnectFrom.
func (vp *VirtualPeer) TrimConnections(low int) []peer.ID {
	vn := vp.vn
	vn.mu.Lock()
	defer vn.mu.Unlock()
	type candidate struct {
		id    peer.ID
		value int
	}
	var cands []candidate
	vp.cm.mu.Lock()
	for id := range vp.out {
		if len(vp.cm.protected[id]) > 0 {
			continue
		}
		v := 0
		for _, tv := range vp.cm.tags[id] {
			v += tv
		}
		cands = append(cands, candidate{id, v})
	}
	vp.cm.mu.Unlock()
	slices.SortFunc(cands, func(a, b candidate) int {
		if a.value != b.value {
			return a.value - b.value
		}
		return strings.Compare(string(a.id), string(b.id))
	})
	var cut []peer.ID
	for _, c := range cands[:max(0, len(cands)-low)] {
		vn.disconnectLocked(vp, vn.peers[c.id])
		cut = append(cut, c.id)
	}
	return cut
}

package testutil

import (
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// mustPeerLocked returns peer id or panics: naming a peer that was never
// created is a bug in the test.
func (vn *VirtualNetwork) mustPeerLocked(op string, id peer.ID) *VirtualPeer {
	vp, ok := vn.peers[id]
	if !ok {
		panic(fmt.Sprintf("testutil: %s: peer %s unknown to the virtual network", op, id))
	}
	return vp
}

// Disconnect cuts the connection between a and b, if any, and keeps them
// apart until Reconnect: messages in flight between them are lost, both
// receivers get PeerDisconnected (as with VirtualPeer.DisconnectFrom), and
// any dial between them meanwhile (Connect, SendMessage, Version) fails with
// ErrUnreachable, as when the route between two hosts is lost. Use
// DisconnectFrom instead for a hang-up that either side may redial at once.
// It panics if either peer is unknown.
func (vn *VirtualNetwork) Disconnect(a, b peer.ID) {
	vn.mu.Lock()
	defer vn.mu.Unlock()
	pa, pb := vn.mustPeerLocked("Disconnect", a), vn.mustPeerLocked("Disconnect", b)
	vn.cut[pairKey(a, b)] = true
	vn.disconnectLocked(pa, pb)
}

// Reconnect undoes Disconnect and connects a and b again; both receivers get
// PeerConnected. It fails, naming the peer, if either is unknown or stopped,
// or has left the network (ErrUnreachable, see ScheduleChurn); the pair is
// no longer kept apart all the same.
func (vn *VirtualNetwork) Reconnect(a, b peer.ID) error {
	vn.mu.Lock()
	defer vn.mu.Unlock()
	delete(vn.cut, pairKey(a, b))
	pa, err := vn.lookupLocked(a)
	if err != nil {
		return err
	}
	_, err = pa.dialLocked(b)
	return err
}

// ScheduleChurn makes p leave the network leaveAt after the call and, if
// returnAfter > 0, come back returnAfter later; with returnAfter <= 0 it
// stays away. Leaving disconnects p from everyone (messages in flight are
// lost, and both sides of each connection get PeerDisconnected); while away,
// every dial to or from p fails with ErrUnreachable. On return p is
// reconnected to the peers it was connected to when it left, those that are
// still live, present and not kept apart by Disconnect (in creation order);
// both sides get PeerConnected. With leaveAt <= 0, p leaves before
// ScheduleChurn returns.
//
// The schedule runs on timers, so under testing/synctest it runs in virtual
// time. Its goroutine ends when it is done, when p stops, or when the
// network is closed, whichever comes first. Absences of one peer may
// overlap: p is away from the first leaving until the last return, and then
// rejoins every peer it left. ScheduleChurn panics if p is unknown, and does
// nothing once p is stopped or the network closed.
func (vn *VirtualNetwork) ScheduleChurn(p peer.ID, leaveAt, returnAfter time.Duration) {
	vn.mu.Lock()
	vp := vn.mustPeerLocked("ScheduleChurn", p)
	if vp.stopped || vn.closed {
		vn.mu.Unlock()
		return
	}
	left := false
	if leaveAt <= 0 {
		vn.leaveLocked(vp)
		left = true
	}
	vn.mu.Unlock()
	if left && returnAfter <= 0 {
		return
	}
	vn.background(func() {
		if !left {
			if !vn.wait(vp, leaveAt) {
				return
			}
			vn.mu.Lock()
			if vp.stopped {
				vn.mu.Unlock()
				return
			}
			vn.leaveLocked(vp)
			vn.mu.Unlock()
		}
		if returnAfter <= 0 || !vn.wait(vp, returnAfter) {
			return
		}
		vn.mu.Lock()
		defer vn.mu.Unlock()
		if !vp.stopped {
			vn.returnLocked(vp)
		}
	})
}

// wait sleeps for d and reports whether it did, rather than being cut short
// by vp stopping or the network closing.
func (vn *VirtualNetwork) wait(vp *VirtualPeer, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-vp.down:
		return false
	case <-vn.done:
		return false
	}
}

// leaveLocked takes vp off the network, remembering whom to rejoin.
func (vn *VirtualNetwork) leaveLocked(vp *VirtualPeer) {
	vp.offline++
	for _, q := range vn.order { // in creation order, for a reproducible rejoin
		if _, ok := vp.out[q.id]; ok {
			vp.rejoin = append(vp.rejoin, q.id)
			vn.disconnectLocked(vp, q)
		}
	}
}

// returnLocked ends one absence of vp; at the last, it reconnects vp.
func (vn *VirtualNetwork) returnLocked(vp *VirtualPeer) {
	vp.offline--
	if vp.offline > 0 {
		return
	}
	ids := vp.rejoin
	vp.rejoin = nil
	for _, id := range ids {
		if q := vn.peers[id]; vn.reachableLocked(vp, q) == nil {
			vn.connectLocked(vp, q)
		}
	}
}

// SetRemote makes p, while on, a peer on the public network rather than on
// loopback: Local reports it as not local, to its peers and theirs to it.
func (vn *VirtualNetwork) SetRemote(p peer.ID, on bool) {
	vn.mu.Lock()
	vp := vn.mustPeerLocked("SetRemote", p)
	vn.mu.Unlock()
	vp.remote.Store(on)
}

// SetUnresponsive makes p, while on, a peer that never answers: messages to
// it are silently swallowed on arrival (counted in Traffic as Swallowed, not
// in p's Stats), while its connections stay up and connection events are
// still delivered. p can still send. Use it to test timeouts. Messages
// arriving after it is turned off are delivered again.
func (vn *VirtualNetwork) SetUnresponsive(p peer.ID, on bool) {
	vn.mu.Lock()
	vp := vn.mustPeerLocked("SetUnresponsive", p)
	vn.mu.Unlock()
	vp.unresponsive.Store(on)
}

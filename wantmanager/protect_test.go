package wantmanager_test

import (
	"fmt"
	"sync"
	"testing"
	"testing/synctest"

	"github.com/gobitswap/bitswap/message"
	"github.com/gobitswap/bitswap/wantmanager"
	cid "github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
)

// fakeProtector records Protect and Unprotect calls, and fails the test's
// check if the WantManager protects a peer twice or unprotects one it does
// not protect.
type fakeProtector struct {
	mu        sync.Mutex
	protected map[peer.ID]bool
	calls     []string
	misuse    []string
}

func newFakeProtector() *fakeProtector {
	return &fakeProtector{protected: make(map[peer.ID]bool)}
}

func (f *fakeProtector) Protect(p peer.ID, tag string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if tag != wantmanager.ProtectTag {
		f.misuse = append(f.misuse, "protect with tag "+tag)
	}
	if f.protected[p] {
		f.misuse = append(f.misuse, fmt.Sprintf("protect %s twice", p))
	}
	f.protected[p] = true
	f.calls = append(f.calls, "protect "+p.String())
}

func (f *fakeProtector) Unprotect(p peer.ID, tag string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.protected[p] {
		f.misuse = append(f.misuse, fmt.Sprintf("unprotect %s, not protected", p))
	}
	delete(f.protected, p)
	f.calls = append(f.calls, "unprotect "+p.String())
	return false
}

func (f *fakeProtector) is(p peer.ID) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.protected[p]
}

func (f *fakeProtector) check(t *testing.T) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, m := range f.misuse {
		t.Error(m)
	}
}

// withProtector runs f as withWM does, with a fakeProtector given to the
// WantManager; once the WantManager is closed, nothing may be left
// protected.
func withProtector(t *testing.T, f func(t *testing.T, net *fakeNet, wm *wantmanager.WantManager, pr *fakeProtector)) {
	t.Helper()
	synctest.Test(t, func(t *testing.T) {
		net := newFakeNet()
		pr := newFakeProtector()
		wm := wantmanager.New(net, wantmanager.WithProtector(pr))
		f(t, net, wm, pr)
		wm.Close()
		pr.check(t)
		pr.mu.Lock()
		defer pr.mu.Unlock()
		if len(pr.protected) > 0 {
			t.Errorf("still protected after Close: %v", pr.protected)
		}
	})
}

func TestProtectsAPeerWhileItHoldsAWantBlock(t *testing.T) {
	withProtector(t, func(t *testing.T, net *fakeNet, wm *wantmanager.WantManager, pr *fakeProtector) {
		p := peers(1)[0]
		cs := makeCids(1, 2)
		wm.PeerConnected(p)
		wm.WantHaves(s1, p, cs)
		synctest.Wait()
		if pr.is(p) {
			t.Fatal("want-haves protected the peer")
		}
		wm.WantBlocks(s1, p, cs)
		synctest.Wait()
		if !pr.is(p) {
			t.Fatal("a peer holding want-blocks is not protected")
		}
		wm.ReceivedFrom(p, cs[:1], nil, nil)
		if !pr.is(p) {
			t.Fatal("unprotected with a want-block still outstanding")
		}
		wm.ReceivedFrom(p, cs[1:], nil, nil)
		if pr.is(p) {
			t.Fatal("still protected once every block came")
		}
		// The Session's cancels after the blocks send nothing and change
		// nothing.
		wm.CancelAll(s1, cs)
		synctest.Wait()
		if pr.is(p) {
			t.Fatal("protected again")
		}
	})
}

func TestProtectionCountsEverySessionsWants(t *testing.T) {
	withProtector(t, func(t *testing.T, net *fakeNet, wm *wantmanager.WantManager, pr *fakeProtector) {
		p := peers(1)[0]
		cs := makeCids(1, 1)
		wm.PeerConnected(p)
		wm.WantBlocks(s1, p, cs)
		wm.WantBlocks(s2, p, cs)
		synctest.Wait()
		if !pr.is(p) {
			t.Fatal("not protected")
		}
		wm.Cancel(s1, p, cs)
		synctest.Wait()
		if !pr.is(p) {
			t.Fatal("one Session's cancel unprotected a peer another still wants a block from")
		}
		wm.Cancel(s2, p, cs)
		synctest.Wait()
		if pr.is(p) {
			t.Fatal("still protected after the last Session cancelled")
		}
		if _, cancels := split(net.entries(p)); len(cancels) != 1 {
			t.Fatalf("sent %d cancels, want 1", len(cancels))
		}
	})
}

func TestProtectionEndsWithTheConnectionAndComesBackWithTheWants(t *testing.T) {
	withProtector(t, func(t *testing.T, net *fakeNet, wm *wantmanager.WantManager, pr *fakeProtector) {
		ps := peers(2)
		cs := makeCids(1, 2)
		for _, p := range ps {
			wm.PeerConnected(p)
			wm.WantBlocks(s1, p, cs[:1])
		}
		synctest.Wait()
		// A DONT_HAVE keeps the want at the server, so the protection
		// lasts until the Session cancels it there.
		wm.ReceivedFrom(ps[1], nil, nil, cs[:1])
		if !pr.is(ps[1]) {
			t.Fatal("a DONT_HAVE unprotected the peer before the cancel")
		}
		wm.Cancel(s1, ps[1], cs[:1])
		synctest.Wait()
		if pr.is(ps[1]) {
			t.Fatal("still protected after the cancel")
		}

		wm.PeerDisconnected(ps[0])
		if pr.is(ps[0]) {
			t.Fatal("a disconnected peer is still protected")
		}
		wm.PeerConnected(ps[0])
		synctest.Wait()
		if !pr.is(ps[0]) {
			t.Fatal("the want-block resent on reconnection did not protect the peer")
		}
		// Close (withProtector) unprotects it.
	})
}

func TestProtectionFollowsFailedSendsAndResends(t *testing.T) {
	withProtector(t, func(t *testing.T, net *fakeNet, wm *wantmanager.WantManager, pr *fakeProtector) {
		p := peers(1)[0]
		cs := makeCids(1, 3)
		wm.PeerConnected(p)
		net.failSends(p, 1)
		wm.WantBlocks(s1, p, cs)
		synctest.Wait()
		if pr.is(p) {
			t.Fatal("protected although the want-blocks never went out")
		}
		wm.WantBlocks(s1, p, makeCids(2, 1)) // wakes the sender: all go out
		synctest.Wait()
		if !pr.is(p) {
			t.Fatal("not protected once the want-blocks went out")
		}
		wm.Resend(p, cs)
		synctest.Wait()
		if !pr.is(p) {
			t.Fatal("not protected after a resend")
		}
		wm.CancelAll(s1, append(cs, makeCids(2, 1)...))
		synctest.Wait()
		if pr.is(p) {
			t.Fatal("protected with nothing wanted")
		}
	})
}

func TestEveryWantProtectsAPeerThatKnowsOnlyWantBlock(t *testing.T) {
	withProtector(t, func(t *testing.T, net *fakeNet, wm *wantmanager.WantManager, pr *fakeProtector) {
		p := peers(1)[0]
		net.setVersion(p, message.V110)
		wm.PeerConnected(p)
		wm.WantHaves(s1, p, makeCids(1, 1))
		synctest.Wait()
		if !pr.is(p) {
			t.Fatal("a want-have sent as a want-block to a 1.1.0 peer did not protect it")
		}
	})
}

func TestNoProtectorNoCalls(t *testing.T) {
	withWM(t, nil, func(t *testing.T, net *fakeNet, wm *wantmanager.WantManager) {
		p := peers(1)[0]
		wm.PeerConnected(p)
		wm.WantBlocks(s1, p, []cid.Cid{makeCids(1, 1)[0]})
		synctest.Wait()
		wm.PeerDisconnected(p)
	})
}

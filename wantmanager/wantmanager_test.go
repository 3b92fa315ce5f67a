package wantmanager_test

import (
	"bytes"
	"log/slog"
	"math"
	"strings"
	"testing"
	"testing/synctest"

	"github.com/gobitswap/bitswap/message"
	"github.com/gobitswap/bitswap/wantmanager"
	cid "github.com/ipfs/go-cid"
	"go.uber.org/goleak"
)

// withWM runs f in a synctest bubble with a fresh fakeNet and a WantManager
// over it, closed when f returns. Inside, synctest.Wait returns once the
// sender goroutines have sent everything they are going to send.
func withWM(t *testing.T, opts []wantmanager.Option, f func(t *testing.T, net *fakeNet, wm *wantmanager.WantManager)) {
	t.Helper()
	synctest.Test(t, func(t *testing.T) {
		net := newFakeNet()
		wm := wantmanager.New(net, opts...)
		defer wm.Close()
		f(t, net, wm)
	})
}

const (
	s1 wantmanager.SessionID = 1
	s2 wantmanager.SessionID = 2
)

func TestFirstMessageToAPeerIsAFullWantlistOfWantBlocksAskingForDontHave(t *testing.T) {
	withWM(t, nil, func(t *testing.T, net *fakeNet, wm *wantmanager.WantManager) {
		p := peers(1)[0]
		cs := makeCids(1, 3)
		wm.PeerConnected(p)
		wm.WantBlocks(s1, p, cs)
		synctest.Wait()

		ms := net.messages(p)
		if len(ms) != 1 {
			t.Fatalf("sent %d messages, want 1", len(ms))
		}
		if !ms[0].Full {
			t.Error("first message is not marked Full")
		}
		sameCids(t, "wantlist", cidsOf(ms[0].Wantlist), cs)
		for _, e := range ms[0].Wantlist {
			if e.Cancel || e.WantType != message.WantBlock || !e.SendDontHave {
				t.Errorf("entry %+v: want a want-block with sendDontHave", e)
			}
		}

		wm.WantBlocks(s1, p, makeCids(2, 1))
		synctest.Wait()
		if ms := net.messages(p); len(ms) != 1 || ms[0].Full {
			t.Errorf("second message: got %d messages (Full=%v), want 1 not Full", len(ms), len(ms) > 0 && ms[0].Full)
		}
	})
}

func TestPrioritiesDecreaseInTheOrderCidsWereFirstAsked(t *testing.T) {
	withWM(t, nil, func(t *testing.T, net *fakeNet, wm *wantmanager.WantManager) {
		p := peers(1)[0]
		cs := makeCids(1, 4)
		wm.WantBlocks(s1, p, cs[:2])
		wm.WantHaves(s2, p, cs[2:])
		wm.PeerConnected(p)
		synctest.Wait()

		es := net.entries(p)
		sameCids(t, "sending order", cidsOf(es), cs)
		if es[0].Priority != math.MaxInt32 {
			t.Errorf("first CID asked has priority %d, want MaxInt32", es[0].Priority)
		}
		for i := 1; i < len(es); i++ {
			if es[i].Priority != es[i-1].Priority-1 {
				t.Errorf("priority %d follows %d, want one less", es[i].Priority, es[i-1].Priority)
			}
		}
	})
}

func TestCancelIsSentOnlyWhenTheLastSessionCancels(t *testing.T) {
	withWM(t, nil, func(t *testing.T, net *fakeNet, wm *wantmanager.WantManager) {
		p := peers(1)[0]
		c := makeCids(1, 1)
		wm.PeerConnected(p)
		wm.WantBlocks(s1, p, c)
		wm.WantBlocks(s2, p, c)
		synctest.Wait()
		if wants, _ := split(net.entries(p)); len(wants) != 1 {
			t.Fatalf("two sessions wanting one CID sent %d wants, want 1", len(wants))
		}

		wm.Cancel(s1, p, c)
		synctest.Wait()
		if es := net.entries(p); len(es) != 0 {
			t.Fatalf("after the first session cancels, sent %v; want nothing (s2 still wants it)", es)
		}
		if got := len(wm.WantlistForPeer(p)); got != 1 {
			t.Fatalf("peer holds %d wants, want 1", got)
		}

		wm.Cancel(s2, p, c)
		synctest.Wait()
		es := net.entries(p)
		if _, cancels := split(es); len(es) != 1 || len(cancels) != 1 {
			t.Fatalf("after both cancel, sent %v; want exactly one cancel", es)
		}
		if got := wm.WantlistForPeer(p); len(got) != 0 {
			t.Errorf("peer still holds %v", got)
		}
		if st := wm.Stat(); st.Wants != 0 || st.CancelsSent != 1 || st.WantsSent != 1 {
			t.Errorf("Stat = %+v; want Wants 0, WantsSent 1, CancelsSent 1", st)
		}
	})
}

func TestCancelAllDropsEveryReferenceOfTheSessionOnly(t *testing.T) {
	withWM(t, nil, func(t *testing.T, net *fakeNet, wm *wantmanager.WantManager) {
		ps := peers(2)
		c := makeCids(1, 1)
		for _, p := range ps {
			wm.PeerConnected(p)
		}
		wm.WantBlocks(s1, ps[0], c)
		wm.WantHaves(s1, ps[1], c)
		wm.WantHaves(s2, ps[1], c)
		synctest.Wait()
		net.entries(ps[0])
		net.entries(ps[1])

		wm.CancelAll(s1, c)
		synctest.Wait()
		if _, cancels := split(net.entries(ps[0])); len(cancels) != 1 {
			t.Errorf("peer 0 (only s1) got %d cancels, want 1", len(cancels))
		}
		if es := net.entries(ps[1]); len(es) != 0 {
			t.Errorf("peer 1 (s2 still wants) got %v, want nothing", es)
		}
	})
}

func TestWantThenCancelBeforeSendingSendsNothing(t *testing.T) {
	withWM(t, nil, func(t *testing.T, net *fakeNet, wm *wantmanager.WantManager) {
		p := peers(1)[0]
		cs := makeCids(1, 3)
		gate := make(chan struct{})
		net.gate = gate
		wm.PeerConnected(p)
		wm.WantBlocks(s1, p, cs[:1])
		synctest.Wait() // the sender is now blocked sending cs[0]

		wm.WantBlocks(s1, p, cs[1:])
		wm.Cancel(s1, p, cs[1:2])
		close(gate)
		synctest.Wait()

		es := net.entries(p)
		sameCids(t, "sent", cidsOf(es), []cid.Cid{cs[0], cs[2]})
	})
}

func TestAWantQueuedForADisconnectedPeerAndCancelledIsNeverSent(t *testing.T) {
	withWM(t, nil, func(t *testing.T, net *fakeNet, wm *wantmanager.WantManager) {
		p := peers(1)[0]
		cs := makeCids(1, 2)
		wm.WantBlocks(s1, p, cs)
		wm.Cancel(s1, p, cs[:1])
		if st := wm.Stat(); st.Queued != 1 || st.Wants != 1 || st.Senders != 0 {
			t.Errorf("Stat = %+v; want Queued 1, Wants 1, Peers 0", st)
		}
		wm.PeerConnected(p)
		synctest.Wait()
		sameCids(t, "sent on connecting", cidsOf(net.entries(p)), cs[1:])
	})
}

func TestBlockFromAPeerMeansNoCancelToItButCancelsToOthers(t *testing.T) {
	withWM(t, nil, func(t *testing.T, net *fakeNet, wm *wantmanager.WantManager) {
		ps := peers(3)
		c := makeCids(1, 1)
		for _, p := range ps {
			wm.PeerConnected(p)
		}
		wm.WantBlocks(s1, ps[0], c)
		wm.WantHaves(s1, ps[1], c)
		wm.WantHaves(s1, ps[2], c)
		synctest.Wait()
		for _, p := range ps {
			net.entries(p)
		}

		wm.ReceivedFrom(ps[0], c, nil, nil)
		if got := wm.WantlistForPeer(ps[0]); len(got) != 0 {
			t.Errorf("peer 0 sent the block but still holds %v", got)
		}
		wm.CancelAll(s1, c)
		synctest.Wait()

		if es := net.entries(ps[0]); len(es) != 0 {
			t.Errorf("peer 0 sent the block, yet got %v", es)
		}
		for _, p := range ps[1:] {
			if es := net.entries(p); len(es) != 1 || !es[0].Cancel {
				t.Errorf("peer %s got %v, want one cancel", p, es)
			}
		}
	})
}

func TestHaveFreesTheWantHaveSoALaterUpgradeIsANewWantBlock(t *testing.T) {
	opts := []wantmanager.Option{wantmanager.WithPeerWantWindow(1)}
	withWM(t, opts, func(t *testing.T, net *fakeNet, wm *wantmanager.WantManager) {
		p := peers(1)[0]
		cs := makeCids(1, 2)
		wm.PeerConnected(p)
		wm.WantHaves(s1, p, cs)
		synctest.Wait()
		es := net.entries(p)
		sameCids(t, "sent with a window of 1", cidsOf(es), cs[:1])
		if es[0].WantType != message.WantHave || !es[0].SendDontHave {
			t.Fatalf("sent %+v, want a want-have with sendDontHave", es[0])
		}

		wm.ReceivedFrom(p, nil, cs[:1], nil) // HAVE: the slot is free
		synctest.Wait()
		sameCids(t, "sent after the HAVE", cidsOf(net.entries(p)), cs[1:])

		wm.WantBlocks(s1, p, cs[:1]) // the peer forgot the want-have
		synctest.Wait()
		if es := net.entries(p); len(es) != 0 {
			t.Fatalf("upgrade of an answered want-have went out with the window full: %v", es)
		}
		if st := wm.Stat(); st.Queued != 1 {
			t.Fatalf("Stat.Queued = %d, want 1 (the new want-block waits for a slot)", st.Queued)
		}
		wm.ReceivedFrom(p, nil, cs[1:], nil)
		synctest.Wait()
		es = net.entries(p)
		sameCids(t, "sent after the second HAVE", cidsOf(es), cs[:1])
		if es[0].WantType != message.WantBlock {
			t.Errorf("sent %+v, want a want-block", es[0])
		}
		// The peer sent no block for cs[0] yet, so a cancel follows when
		// the session gives up; cs[1] was answered, so no cancel for it.
		wm.CancelAll(s1, cs)
		synctest.Wait()
		es = net.entries(p)
		sameCids(t, "cancelled", cidsOf(es), cs[:1])
		if !es[0].Cancel {
			t.Errorf("sent %+v, want a cancel", es[0])
		}
	})
}

func TestUpgradeOfAHeldWantHaveReplacesItWithoutWaitingForTheWindow(t *testing.T) {
	opts := []wantmanager.Option{wantmanager.WithPeerWantWindow(1)}
	withWM(t, opts, func(t *testing.T, net *fakeNet, wm *wantmanager.WantManager) {
		p := peers(1)[0]
		cs := makeCids(1, 2)
		wm.PeerConnected(p)
		wm.WantHaves(s1, p, cs)
		synctest.Wait()
		net.entries(p)

		wm.WantBlocks(s2, p, cs[:1]) // another session wants the block
		synctest.Wait()
		es := net.entries(p)
		sameCids(t, "upgrade", cidsOf(es), cs[:1])
		if es[0].WantType != message.WantBlock || es[0].Cancel {
			t.Fatalf("sent %+v, want a want-block", es[0])
		}
		if got := wm.WantlistForPeer(p); len(got) != 1 || got[0].WantType != message.WantBlock {
			t.Fatalf("peer holds %v, want the one want-block", got)
		}

		// The block session leaves: the want-have session still wants it,
		// and a want-block serves it too, so nothing is sent.
		wm.Cancel(s2, p, cs[:1])
		synctest.Wait()
		if es := net.entries(p); len(es) != 0 {
			t.Errorf("downgrade sent %v, want nothing", es)
		}
	})
}

func TestAHaveForAWantBlockFreesNothing(t *testing.T) {
	opts := []wantmanager.Option{wantmanager.WithPeerWantWindow(1)}
	withWM(t, opts, func(t *testing.T, net *fakeNet, wm *wantmanager.WantManager) {
		p := peers(1)[0]
		cs := makeCids(1, 2)
		wm.PeerConnected(p)
		wm.WantBlocks(s1, p, cs)
		synctest.Wait()
		net.entries(p)
		wm.ReceivedFrom(p, nil, cs[:1], nil)
		synctest.Wait()
		if es := net.entries(p); len(es) != 0 {
			t.Errorf("a HAVE for a want-block freed a slot: sent %v", es)
		}
	})
}

func TestTwoSessionsRefsAreCountedTogether(t *testing.T) {
	withWM(t, nil, func(t *testing.T, net *fakeNet, wm *wantmanager.WantManager) {
		p := peers(1)[0]
		c := makeCids(1, 1)
		wm.PeerConnected(p)
		wm.WantHaves(s1, p, c)
		wm.WantHaves(s2, p, c)
		synctest.Wait()
		if wants, _ := split(net.entries(p)); len(wants) != 1 {
			t.Fatalf("sent %d wants, want 1", len(wants))
		}
		wm.CancelAll(s1, c) // s2 still wants it from p
		synctest.Wait()
		if es := net.entries(p); len(es) != 0 {
			t.Fatalf("sent %v, want nothing", es)
		}
		wm.Cancel(s2, p, c)
		synctest.Wait()
		if _, cancels := split(net.entries(p)); len(cancels) != 1 {
			t.Fatalf("sent %d cancels, want 1", len(cancels))
		}
	})
}

func TestReconnectResendsTheFullWantlistAndAsksTheVersionAgain(t *testing.T) {
	withWM(t, nil, func(t *testing.T, net *fakeNet, wm *wantmanager.WantManager) {
		p := peers(1)[0]
		cs := makeCids(1, 4)
		bc := makeCids(2, 1)
		wm.PeerConnected(p)
		wm.WantBlocks(s1, p, cs)
		wm.WantHaves(s2, p, bc)
		synctest.Wait()
		wm.ReceivedFrom(p, cs[3:], nil, nil) // answered, but s1 still refers to it
		synctest.Wait()
		net.messages(p)
		if got := net.versionCalls(p); got != 1 {
			t.Fatalf("Version asked %d times, want 1", got)
		}

		wm.PeerDisconnected(p)
		if got := wm.WantlistForPeer(p); got != nil {
			t.Fatalf("disconnected peer holds %v", got)
		}
		wm.Cancel(s1, p, cs[:1]) // not held by p any more: no cancel
		synctest.Wait()
		if ms := net.messages(p); len(ms) != 0 {
			t.Fatalf("sent %d messages to a disconnected peer", len(ms))
		}

		wm.PeerConnected(p)
		synctest.Wait()
		ms := net.messages(p)
		if len(ms) != 1 || !ms[0].Full {
			t.Fatalf("on reconnecting sent %d messages, want one Full", len(ms))
		}
		sameCids(t, "full wantlist", cidsOf(ms[0].Wantlist), append(cs[1:], bc...))
		if got := net.versionCalls(p); got != 2 {
			t.Errorf("Version asked %d times over two connections, want 2", got)
		}
		if got := len(wm.WantlistForPeer(p)); got != 4 {
			t.Errorf("peer holds %d wants, want 4", got)
		}
	})
}

func TestOldPeersGetOnlyWantBlocksWithoutSendDontHave(t *testing.T) {
	for _, v := range []message.Version{message.V100, message.V110} {
		t.Run(v.String(), func(t *testing.T) {
			withWM(t, nil, func(t *testing.T, net *fakeNet, wm *wantmanager.WantManager) {
				p := peers(1)[0]
				cs := makeCids(1, 3)
				net.setVersion(p, v)
				wm.PeerConnected(p)
				wm.WantHaves(s1, p, cs[:1])
				wm.WantBlocks(s1, p, cs[1:2])
				wm.WantHaves(s1, p, cs[2:])
				synctest.Wait()
				es := net.entries(p)
				sameCids(t, "sent", cidsOf(es), cs)
				for _, e := range es {
					if e.WantType != message.WantBlock || e.SendDontHave {
						t.Errorf("entry %+v to a %s peer, want want-block without sendDontHave", e, v)
					}
				}
				// An "upgrade" is nothing new to such a peer.
				wm.WantBlocks(s2, p, cs[:1])
				synctest.Wait()
				if es := net.entries(p); len(es) != 0 {
					t.Errorf("upgrade sent %v to a %s peer, want nothing", es, v)
				}
			})
		})
	}
}

func TestAFailedSendIsResentAsAFullWantlistAtTheNextWake(t *testing.T) {
	withWM(t, nil, func(t *testing.T, net *fakeNet, wm *wantmanager.WantManager) {
		p := peers(1)[0]
		cs := makeCids(1, 3)
		wm.PeerConnected(p)
		synctest.Wait() // the sender has nothing to send yet
		net.failSends(p, 1)
		wm.WantBlocks(s1, p, cs[:2])
		synctest.Wait()
		if ms := net.messages(p); len(ms) != 0 {
			t.Fatalf("recorded %d messages from a failed send", len(ms))
		}
		if got := wm.WantlistForPeer(p); len(got) != 0 {
			t.Fatalf("after a failed send, peer is thought to hold %v", got)
		}
		if st := wm.Stat(); st.MessagesSent != 0 || st.Queued != 2 {
			t.Fatalf("Stat = %+v; want nothing sent and 2 queued", st)
		}

		wm.WantBlocks(s1, p, cs[2:]) // any activity wakes the sender
		synctest.Wait()
		ms := net.messages(p)
		if len(ms) != 1 || !ms[0].Full {
			t.Fatalf("sent %d messages, want one Full", len(ms))
		}
		sameCids(t, "resent", cidsOf(ms[0].Wantlist), cs)
	})
}

func TestStatCountsWhatIsSentAndHeld(t *testing.T) {
	opts := []wantmanager.Option{wantmanager.WithPeerWantWindow(2)}
	withWM(t, opts, func(t *testing.T, net *fakeNet, wm *wantmanager.WantManager) {
		ps := peers(2)
		cs := makeCids(1, 5)
		wm.PeerConnected(ps[0])
		wm.WantBlocks(s1, ps[0], cs)
		wm.WantBlocks(s2, ps[1], cs[:1]) // not connected
		synctest.Wait()
		want := wantmanager.Stat{MessagesSent: 1, WantsSent: 2, Senders: 1, Wants: 5, Queued: 3 + 1}
		if st := wm.Stat(); st != want {
			t.Errorf("Stat = %+v, want %+v", st, want)
		}
		wm.CancelAll(s1, cs)
		wm.CancelAll(s2, cs)
		synctest.Wait()
		want = wantmanager.Stat{MessagesSent: 2, WantsSent: 2, CancelsSent: 2, Senders: 1}
		if st := wm.Stat(); st != want {
			t.Errorf("Stat = %+v, want %+v", st, want)
		}
	})
}

func TestMethodsAfterCloseDoNothing(t *testing.T) {
	withWM(t, nil, func(t *testing.T, net *fakeNet, wm *wantmanager.WantManager) {
		p := peers(1)[0]
		cs := makeCids(1, 1)
		wm.Close()
		wm.PeerConnected(p)
		wm.WantBlocks(s1, p, cs)
		wm.WantHaves(s1, p, cs)
		synctest.Wait()
		if ms := net.messages(p); len(ms) != 0 {
			t.Errorf("sent %d messages after Close", len(ms))
		}
		if st := wm.Stat(); st != (wantmanager.Stat{}) {
			t.Errorf("Stat after Close = %+v, want zero", st)
		}
	})
}

func TestCloseStopsEveryGoroutine(t *testing.T) {
	net := newFakeNet()
	net.gate = make(chan struct{}) // every sender is stuck in SendMessage
	wm := wantmanager.New(net)
	ps := peers(20)
	cs := makeCids(1, 10)
	for _, p := range ps {
		wm.PeerConnected(p)
		wm.WantHaves(s1, p, cs)
	}
	wm.PeerDisconnected(ps[0])
	wm.Close()
	goleak.VerifyNone(t)
}

func TestPeerDisconnectedStopsThePeersGoroutine(t *testing.T) {
	net := newFakeNet()
	wm := wantmanager.New(net)
	defer wm.Close()
	ps := peers(5)
	for _, p := range ps {
		wm.PeerConnected(p)
	}
	wm.WantBlocks(s1, ps[0], makeCids(1, 3))
	for _, p := range ps {
		wm.PeerDisconnected(p)
	}
	// Senders exit on their own, without Close.
	goleak.VerifyNone(t)
}

func TestAHaveThatOvertakesAPendingUpgradeLeavesTheUpgradeAsANewWant(t *testing.T) {
	withWM(t, nil, func(t *testing.T, net *fakeNet, wm *wantmanager.WantManager) {
		p := peers(1)[0]
		cs := makeCids(1, 2)
		wm.PeerConnected(p)
		wm.WantHaves(s1, p, cs[:1])
		synctest.Wait()
		net.entries(p)

		gate := make(chan struct{})
		net.setGate(gate)
		wm.WantHaves(s1, p, cs[1:])
		synctest.Wait() // the sender is stuck sending cs[1]

		wm.WantBlocks(s1, p, cs[:1])         // upgrade, not sent yet...
		wm.ReceivedFrom(p, nil, cs[:1], nil) // ...when the HAVE comes: p forgot the want-have
		close(gate)
		synctest.Wait()

		es := net.entries(p)
		sameCids(t, "sent", cidsOf(es), []cid.Cid{cs[1], cs[0]})
		if es[1].WantType != message.WantBlock || es[1].Cancel {
			t.Errorf("sent %+v, want a want-block", es[1])
		}
		if got := wm.WantlistForPeer(p); len(got) != 2 {
			t.Errorf("peer holds %v, want both wants", got)
		}
	})
}

func TestFailedSendsAreLogged(t *testing.T) {
	withWM(t, nil, func(t *testing.T, net *fakeNet, _ *wantmanager.WantManager) {
		var buf bytes.Buffer
		wm := wantmanager.New(net, wantmanager.WithLogger(slog.New(slog.NewTextHandler(&buf, nil))))
		defer wm.Close()
		p := peers(1)[0]
		net.failSends(p, 1)
		wm.WantBlocks(s1, p, makeCids(1, 1))
		wm.PeerConnected(p)
		synctest.Wait()
		if !strings.Contains(buf.String(), errSendFailed.Error()) {
			t.Errorf("log %q does not mention the failure", buf.String())
		}
	})
}

func TestWantlistHoldsEveryCidSomeSessionWants(t *testing.T) {
	withWM(t, nil, func(t *testing.T, net *fakeNet, wm *wantmanager.WantManager) {
		p := peers(1)[0]
		cs := makeCids(1, 3)
		wm.WantBlocks(s1, p, cs[:1])
		wm.WantHaves(s2, p, cs[1:2])
		wm.WantHaves(s2, p, cs[2:])
		if got := wm.Wantlist(); len(got) != 3 {
			t.Errorf("Wantlist() has %d CIDs, want 3", len(got))
		}
		wm.CancelAll(s2, cs)
		sameCids(t, "Wantlist()", wm.Wantlist(), cs[:1])
	})
}

package wantmanager_test

import (
	"slices"
	"testing"
	"testing/synctest"

	"github.com/gobitswap/bitswap/message"
	"github.com/gobitswap/bitswap/wantmanager"
	cid "github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
)

func TestWindowKeepsAtMostWWantsOutstandingAndSendsTheRestInOrderAsBlocksArrive(t *testing.T) {
	const n, window = 2000, 512
	opts := []wantmanager.Option{wantmanager.WithPeerWantWindow(window)}
	withWM(t, opts, func(t *testing.T, net *fakeNet, wm *wantmanager.WantManager) {
		p := peers(1)[0]
		cs := makeCids(1, n)
		wm.PeerConnected(p)
		wm.WantBlocks(s1, p, cs)
		synctest.Wait()

		var sent []message.Entry
		es := net.entries(p)
		sent = append(sent, es...)
		sameCids(t, "first window", cidsOf(es), cs[:window])
		if got := len(wm.WantlistForPeer(p)); got != window {
			t.Fatalf("peer holds %d wants, want %d", got, window)
		}
		if st := wm.Stat(); st.Queued != n-window {
			t.Fatalf("Stat.Queued = %d, want %d", st.Queued, n-window)
		}

		// Blocks come back in batches of 100, oldest first; each batch
		// frees 100 slots, which go to the next 100 CIDs in order.
		for next := 0; next < n; next += 100 {
			batch := cs[next : next+100]
			wm.ReceivedFrom(p, batch, nil, nil)
			wm.CancelAll(s1, batch)
			synctest.Wait()
			es := net.entries(p)
			if wants, cancels := split(es); len(cancels) != 0 {
				t.Fatalf("blocks answered the wants, yet %d cancels were sent", len(cancels))
			} else {
				sent = append(sent, wants...)
			}
			if held := len(wm.WantlistForPeer(p)); held > window {
				t.Fatalf("peer holds %d wants, over the window of %d", held, window)
			}
		}

		sameCids(t, "everything sent, in order", cidsOf(sent), cs)
		for i := 1; i < len(sent); i++ {
			if sent[i].Priority >= sent[i-1].Priority {
				t.Fatalf("entry %d has priority %d, not below %d", i, sent[i].Priority, sent[i-1].Priority)
			}
		}
		if st := wm.Stat(); st.Queued != 0 || st.Wants != 0 || st.WantsSent != n || st.CancelsSent != 0 {
			t.Errorf("Stat = %+v; want nothing queued or wanted, %d wants and no cancels sent", st, n)
		}
	})
}

func TestDontHaveKeepsTheSlotUntilTheCancelFreesIt(t *testing.T) {
	const n, window = 2000, 512
	opts := []wantmanager.Option{wantmanager.WithPeerWantWindow(window)}
	withWM(t, opts, func(t *testing.T, net *fakeNet, wm *wantmanager.WantManager) {
		p := peers(1)[0]
		cs := makeCids(1, n)
		wm.PeerConnected(p)
		wm.WantBlocks(s1, p, cs)
		synctest.Wait()
		net.entries(p)

		// The server keeps wants it answered DONT_HAVE to, so they still
		// take slots.
		wm.ReceivedFrom(p, nil, nil, cs[:10])
		synctest.Wait()
		if es := net.entries(p); len(es) != 0 {
			t.Fatalf("DONT_HAVEs freed slots: sent %d entries", len(es))
		}
		if got := len(wm.WantlistForPeer(p)); got != window {
			t.Fatalf("peer holds %d wants, want %d", got, window)
		}

		// Cancelling them frees the slots: the cancels go out, and as many
		// new wants, in one message.
		wm.Cancel(s1, p, cs[:10])
		synctest.Wait()
		ms := net.messages(p)
		if len(ms) != 1 {
			t.Fatalf("sent %d messages, want 1", len(ms))
		}
		wants, cancels := split(ms[0].Wantlist)
		sameCids(t, "cancels", cidsOf(cancels), cs[:10])
		sameCids(t, "new wants", cidsOf(wants), cs[window:window+10])
		if got := len(wm.WantlistForPeer(p)); got != window {
			t.Errorf("peer holds %d wants, want %d", got, window)
		}
	})
}

func TestCancelsAreNeverHeldBackByTheWindow(t *testing.T) {
	opts := []wantmanager.Option{wantmanager.WithPeerWantWindow(1)}
	withWM(t, opts, func(t *testing.T, net *fakeNet, wm *wantmanager.WantManager) {
		p := peers(1)[0]
		cs := makeCids(1, 1)
		wm.PeerConnected(p)
		wm.WantBlocks(s1, p, cs)
		synctest.Wait()
		net.entries(p)
		wm.CancelAll(s1, cs)
		synctest.Wait()
		if _, cancels := split(net.entries(p)); len(cancels) != 1 {
			t.Errorf("sent %d cancels with a full window, want 1", len(cancels))
		}
	})
}

func TestWantsAddedInOneCallAreCoalescedIntoMessagesOfTheTargetSize(t *testing.T) {
	const n, target = 1000, 4 << 10
	opts := []wantmanager.Option{
		wantmanager.WithPeerWantWindow(n),
		wantmanager.WithTargetMessageSize(target),
	}
	withWM(t, opts, func(t *testing.T, net *fakeNet, wm *wantmanager.WantManager) {
		p := peers(1)[0]
		cs := makeCids(1, n)
		wm.PeerConnected(p)
		wm.WantBlocks(s1, p, cs)
		synctest.Wait()

		ms := net.messages(p)
		var all []message.Entry
		for i, m := range ms {
			if size := m.Size(message.V120); size > target {
				t.Errorf("message %d is %d bytes, over the target %d", i, size, target)
			}
			all = append(all, m.Wantlist...)
		}
		sameCids(t, "sent", cidsOf(all), cs)
		total := (&message.Message{Full: true, Wantlist: all}).Size(message.V120)
		least := (total + target - 1) / target
		if len(ms) < least || len(ms) > least+1 {
			t.Errorf("%d bytes of wantlist went in %d messages; want about %d", total, len(ms), least)
		}
		t.Logf("%d wants, %d bytes, in %d messages of at most %d bytes", n, total, len(ms), target)
	})
}

func TestDefaultTargetMessageSizeIs16KiB(t *testing.T) {
	const n = 1000
	opts := []wantmanager.Option{wantmanager.WithPeerWantWindow(n)}
	withWM(t, opts, func(t *testing.T, net *fakeNet, wm *wantmanager.WantManager) {
		p := peers(1)[0]
		wm.PeerConnected(p)
		wm.WantBlocks(s1, p, makeCids(1, n))
		synctest.Wait()
		ms := net.messages(p)
		var all []message.Entry
		for _, m := range ms {
			if size := m.Size(message.V120); size > 16<<10 {
				t.Errorf("message of %d bytes, over 16 KiB", size)
			}
			all = append(all, m.Wantlist...)
		}
		total := (&message.Message{Wantlist: all}).Size(message.V120)
		if least := (total + 16<<10 - 1) / (16 << 10); len(ms) < least || len(ms) > least+1 {
			t.Errorf("%d bytes in %d messages, want about %d", total, len(ms), least)
		}
	})
}

func TestDefaultWindowIs256(t *testing.T) {
	withWM(t, nil, func(t *testing.T, net *fakeNet, wm *wantmanager.WantManager) {
		p := peers(1)[0]
		wm.PeerConnected(p)
		wm.WantHaves(s1, p, makeCids(1, 600))
		synctest.Wait()
		if got := len(net.entries(p)); got != 256 || wantmanager.DefaultPeerWantWindow != 256 {
			t.Errorf("sent %d wants, want 256", got)
		}
	})
}

func TestTheWindowIsPerPeer(t *testing.T) {
	opts := []wantmanager.Option{wantmanager.WithPeerWantWindow(10)}
	withWM(t, opts, func(t *testing.T, net *fakeNet, wm *wantmanager.WantManager) {
		ps := peers(2)
		cs := makeCids(1, 30)
		wm.WantBlocks(s1, ps[0], cs[:15])
		wm.WantBlocks(s1, ps[1], cs[15:])
		// Asked before connecting, so that each peer's sender finds
		// everything queued when it first wakes; s2's want-haves share the
		// window with s1's want-blocks.
		for _, p := range ps {
			wm.WantHaves(s2, p, cs[:5])
		}
		for _, p := range ps {
			wm.PeerConnected(p)
		}
		synctest.Wait()
		sameCids(t, "peer 0", cidsOf(net.entries(ps[0])), cs[:10])
		sameCids(t, "peer 1", cidsOf(net.entries(ps[1])), append(append([]cid.Cid(nil), cs[:5]...), cs[15:20]...))
	})
}

// The queue observer hears, each time a peer's sender takes wants, how
// many still wait for its window: the peer's send queue at that moment.
func TestQueueObserverHearsTheWantsLeftWaitingForTheWindow(t *testing.T) {
	const n, window = 10, 4
	var heard []int // written by the one peer's sender, read after synctest.Wait
	opts := []wantmanager.Option{
		wantmanager.WithPeerWantWindow(window),
		wantmanager.WithQueueObserver(func(_ peer.ID, waiting int) { heard = append(heard, waiting) }),
	}
	withWM(t, opts, func(t *testing.T, net *fakeNet, wm *wantmanager.WantManager) {
		p := peers(1)[0]
		cs := makeCids(1, n)
		wm.PeerConnected(p)
		wm.WantBlocks(s1, p, cs)
		synctest.Wait()
		wm.ReceivedFrom(p, cs[:window], nil, nil) // frees the window
		wm.CancelAll(s1, cs[:window])
		synctest.Wait()
		if want := []int{n - window, n - 2*window}; !slices.Equal(heard, want) {
			t.Fatalf("observer heard %v, want %v", heard, want)
		}
	})
}

package testutil_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/gobitswap/bitswap/message"
	"github.com/gobitswap/bitswap/testutil"
	blocks "github.com/ipfs/go-block-format"
	"github.com/libp2p/go-libp2p/core/peer"
	"go.uber.org/goleak"
)

// pair returns two started peers A and B on vn, not yet connected, with
// their recorders.
func pair(vn *testutil.VirtualNetwork, optsB ...testutil.PeerOption) (a, b *testutil.VirtualPeer, ra, rb *recorder) {
	a, b = vn.NewPeer(), vn.NewPeer(optsB...)
	names := map[peer.ID]string{a.Self(): "A", b.Self(): "B"}
	ra, rb = newRecorder(names), newRecorder(names)
	a.Start(ra)
	b.Start(rb)
	return a, b, ra, rb
}

// blockMsg is a message carrying one random block of size bytes.
func blockMsg(seed int64, size int) *message.Message {
	return &message.Message{Blocks: testutil.RandomBlocks(seed, 1, size)}
}

// frameLen is the size of msg on the wire at v, length prefix included.
func frameLen(msg *message.Message, v message.Version) int {
	return len(message.AppendFrame(nil, msg, v))
}

func TestMessageArrivesAfterLatencyPlusSizeOverBandwidth(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const (
			latency   = 100 * time.Millisecond
			bandwidth = 1_000_000 // bytes/s: one byte per microsecond
		)
		vn := testutil.NewVirtualNetwork(testutil.WithLatency(latency), testutil.WithBandwidth(bandwidth))
		defer vn.Close()
		a, b, _, rb := pair(vn)

		msg := blockMsg(1, 50_000)
		size := frameLen(msg, message.V120)
		start := time.Now()
		if err := a.SendMessage(t.Context(), b.Self(), msg); err != nil {
			t.Fatal(err)
		}
		if time.Since(start) != 0 {
			t.Fatal("SendMessage waited for delivery")
		}
		time.Sleep(time.Hour) // in virtual time: long enough for anything queued

		got := rb.Messages()
		if len(got) != 1 {
			t.Fatalf("B received %d messages, want 1", len(got))
		}
		want := latency + time.Duration(size)*time.Microsecond
		if at := got[0].at.Sub(start); at != want {
			t.Fatalf("arrived after %v, want latency + size/bandwidth = %v", at, want)
		}
	})
}

func TestBackToBackMessagesQueueForBandwidthButShareLatency(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const latency = 100 * time.Millisecond
		vn := testutil.NewVirtualNetwork(testutil.WithLatency(latency), testutil.WithBandwidth(1_000_000))
		defer vn.Close()
		a, b, _, rb := pair(vn)

		m1, m2 := blockMsg(1, 30_000), blockMsg(2, 10_000)
		s1, s2 := frameLen(m1, message.V120), frameLen(m2, message.V120)
		start := time.Now()
		for _, m := range []*message.Message{m1, m2} {
			if err := a.SendMessage(t.Context(), b.Self(), m); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(time.Hour)

		got := rb.Messages()
		if len(got) != 2 {
			t.Fatalf("B received %d messages, want 2", len(got))
		}
		if !got[0].msg.Blocks[0].Cid().Equals(m1.Blocks[0].Cid()) {
			t.Fatal("messages arrived out of order")
		}
		us := time.Microsecond
		want := []time.Duration{
			latency + time.Duration(s1)*us,
			latency + time.Duration(s1+s2)*us, // waits for m1 to leave, not for m1 to land
		}
		for i, w := range want {
			if at := got[i].at.Sub(start); at != w {
				t.Errorf("message %d arrived after %v, want %v", i+1, at, w)
			}
		}
	})
}

func TestAMessageOnAnIdleLinkDoesNotWaitForEarlierOnes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const latency = 100 * time.Millisecond
		vn := testutil.NewVirtualNetwork(testutil.WithLatency(latency), testutil.WithBandwidth(1_000_000))
		defer vn.Close()
		a, b, _, rb := pair(vn)

		m1, m2 := blockMsg(1, 10_000), blockMsg(2, 10_000)
		if err := a.SendMessage(t.Context(), b.Self(), m1); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond) // m1 has left the sender, still in flight
		sent2 := time.Now()
		if err := a.SendMessage(t.Context(), b.Self(), m2); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Hour)

		got := rb.Messages()
		if len(got) != 2 {
			t.Fatalf("B received %d messages, want 2", len(got))
		}
		want := latency + time.Duration(frameLen(m2, message.V120))*time.Microsecond
		if at := got[1].at.Sub(sent2); at != want {
			t.Fatalf("second message arrived %v after sending, want %v", at, want)
		}
	})
}

func TestManyMessagesArriveInOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		vn := testutil.NewVirtualNetwork(testutil.WithLatency(10*time.Millisecond), testutil.WithBandwidth(100_000))
		defer vn.Close()
		a, b, _, rb := pair(vn)
		bls := testutil.MixedBlocks(3, 50, 1, 5000)
		for _, blk := range bls {
			if err := a.SendMessage(t.Context(), b.Self(), &message.Message{Blocks: []blocks.Block{blk}}); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(time.Hour)
		got := rb.Messages()
		if len(got) != len(bls) {
			t.Fatalf("B received %d messages, want %d", len(got), len(bls))
		}
		for i, m := range got {
			if !m.msg.Blocks[0].Cid().Equals(bls[i].Cid()) {
				t.Fatalf("message %d carries %s, want %s", i, m.msg.Blocks[0].Cid(), bls[i].Cid())
			}
			if i > 0 && m.at.Before(got[i-1].at) {
				t.Fatalf("message %d arrived before message %d", i, i-1)
			}
		}
	})
}

func TestSetLinkOverridesDefaultsForThatPairInBothDirections(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		vn := testutil.NewVirtualNetwork(testutil.WithLatency(10 * time.Millisecond))
		defer vn.Close()
		ps := testutil.NewSwarm(vn, 3)
		names := map[peer.ID]string{ps[0].Self(): "A", ps[1].Self(): "B", ps[2].Self(): "C"}
		recs := []*recorder{newRecorder(names), newRecorder(names), newRecorder(names)}
		for i, p := range ps {
			p.Start(recs[i])
		}
		vn.SetLink(ps[1].Self(), ps[0].Self(), 300*time.Millisecond, 0) // B-A

		start := time.Now()
		msg := &message.Message{}
		for _, send := range [][2]int{{0, 1}, {1, 0}, {0, 2}} {
			if err := ps[send[0]].SendMessage(t.Context(), ps[send[1]].Self(), msg); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(time.Second)
		for _, c := range []struct {
			to   int
			want time.Duration
		}{{1, 300 * time.Millisecond}, {0, 300 * time.Millisecond}, {2, 10 * time.Millisecond}} {
			got := recs[c.to].Messages()
			if len(got) != 1 || got[0].at.Sub(start) != c.want {
				t.Errorf("peer %d: got %v, want one message after %v", c.to, got, c.want)
			}
		}
		if rtt := ps[0].Latency(ps[1].Self()); rtt != 600*time.Millisecond {
			t.Errorf("Latency(A→B) = %v, want the round trip 600ms", rtt)
		}
		if rtt := ps[0].Latency(ps[2].Self()); rtt != 20*time.Millisecond {
			t.Errorf("Latency(A→C) = %v, want the round trip 20ms", rtt)
		}
	})
}

func TestLinkSpeaksTheLowerVersionAndDowngradeStripsPresences(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		vn := testutil.NewVirtualNetwork()
		defer vn.Close()
		a, b, _, rb := pair(vn, testutil.WithVersion(message.V110))

		for _, c := range []struct {
			from, to *testutil.VirtualPeer
		}{{a, b}, {b, a}} {
			v, err := c.from.Version(t.Context(), c.to.Self())
			if err != nil || v != message.V110 {
				t.Fatalf("Version = %v, %v; want 1.1.0", v, err)
			}
		}

		blk := testutil.RandomBlocks(1, 1, 100)[0]
		msg := &message.Message{
			Wantlist: []message.Entry{
				{Cid: blk.Cid(), Priority: 1, WantType: message.WantHave},
				{Cid: testutil.RandomBlocks(2, 1, 10)[0].Cid(), Priority: 2, WantType: message.WantBlock},
			},
			Blocks:         []blocks.Block{blk},
			BlockPresences: []message.BlockPresence{{Cid: blk.Cid(), Type: message.DontHave}},
		}
		if err := a.SendMessage(t.Context(), b.Self(), msg); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		got := rb.Messages()
		if len(got) != 1 {
			t.Fatalf("B received %d messages, want 1 (events: %v)", len(got), rb.Events())
		}
		m := got[0].msg
		if len(m.BlockPresences) != 0 {
			t.Errorf("a 1.1.0 peer received presences: %v", m.BlockPresences)
		}
		if len(m.Wantlist) != 1 || m.Wantlist[0].WantType != message.WantBlock {
			t.Errorf("a 1.1.0 peer received wantlist %v, want only the want-block", m.Wantlist)
		}
		if len(m.Blocks) != 1 || !m.Blocks[0].Cid().Equals(blk.Cid()) {
			t.Errorf("block lost in downgrade: %v", m.Blocks)
		}
		if st := a.Stats(); st.BytesSent != uint64(frameLen(msg, message.V110)) {
			t.Errorf("BytesSent = %d, want the 1.1.0 frame length %d", st.BytesSent, frameLen(msg, message.V110))
		}
	})
}

func TestConnectAndDisconnectAreReportedOnBothSides(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		vn := testutil.NewVirtualNetwork(testutil.WithLatency(10 * time.Millisecond))
		defer vn.Close()
		a, b, ra, rb := pair(vn)

		if err := a.Connect(t.Context(), peer.AddrInfo{ID: b.Self()}); err != nil {
			t.Fatal(err)
		}
		if err := a.Connect(t.Context(), peer.AddrInfo{ID: b.Self()}); err != nil {
			t.Fatal(err) // connecting twice is a no-op
		}
		if err := b.SendMessage(t.Context(), a.Self(), &message.Message{}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		if err := b.DisconnectFrom(t.Context(), a.Self()); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()

		if got, want := ra.Events(), []string{"connected B", "message from B", "disconnected B"}; !slices.Equal(got, want) {
			t.Errorf("A saw %q, want %q", got, want)
		}
		if got, want := rb.Events(), []string{"connected A", "disconnected A"}; !slices.Equal(got, want) {
			t.Errorf("B saw %q, want %q", got, want)
		}
		if a.IsConnected(b.Self()) || b.IsConnected(a.Self()) {
			t.Error("still connected after DisconnectFrom")
		}
		if a.Latency(b.Self()) != 0 {
			t.Error("Latency of a disconnected peer is not 0")
		}
	})
}

func TestMessagesInFlightAreLostOnDisconnect(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		vn := testutil.NewVirtualNetwork(testutil.WithLatency(100 * time.Millisecond))
		defer vn.Close()
		a, b, _, rb := pair(vn)
		if err := a.SendMessage(t.Context(), b.Self(), &message.Message{}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
		if err := a.DisconnectFrom(t.Context(), b.Self()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		if got, want := rb.Events(), []string{"connected A", "disconnected A"}; !slices.Equal(got, want) {
			t.Errorf("B saw %q, want %q", got, want)
		}
	})
}

func TestSendingToAnUnconnectedPeerConnectsFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		vn := testutil.NewVirtualNetwork()
		defer vn.Close()
		a, b, ra, rb := pair(vn)
		if err := a.SendMessage(t.Context(), b.Self(), &message.Message{}); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if got, want := rb.Events(), []string{"connected A", "message from A"}; !slices.Equal(got, want) {
			t.Errorf("B saw %q, want %q", got, want)
		}
		if got, want := ra.Events(), []string{"connected B"}; !slices.Equal(got, want) {
			t.Errorf("A saw %q, want %q", got, want)
		}
	})
}

func TestReconnectingKeepsEventsAboutAPeerInOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		vn := testutil.NewVirtualNetwork()
		defer vn.Close()
		a, b, _, rb := pair(vn)
		ctx := t.Context()
		for range 3 {
			if err := a.Connect(ctx, peer.AddrInfo{ID: b.Self()}); err != nil {
				t.Fatal(err)
			}
			if err := a.SendMessage(ctx, b.Self(), &message.Message{}); err != nil {
				t.Fatal(err)
			}
			if err := a.DisconnectFrom(ctx, b.Self()); err != nil {
				t.Fatal(err)
			}
		}
		synctest.Wait()
		// Messages queued just before a disconnect may be lost, but events
		// never reorder: each connected is followed by its disconnected.
		var got []string
		for _, e := range rb.Events() {
			if !strings.HasPrefix(e, "message") {
				got = append(got, e)
			}
		}
		want := slices.Repeat([]string{"connected A", "disconnected A"}, 3)
		if !slices.Equal(got, want) {
			t.Errorf("B saw %q, want %q", got, want)
		}
	})
}

func TestPeersConnectedBeforeStartLearnOfEachOtherOnStart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		vn := testutil.NewVirtualNetwork()
		defer vn.Close()
		ps := testutil.NewSwarm(vn, 3)
		names := map[peer.ID]string{ps[0].Self(): "A", ps[1].Self(): "B", ps[2].Self(): "C"}
		r := newRecorder(names)
		ps[0].Start(r)
		synctest.Wait()
		got := r.Events()
		slices.Sort(got)
		if want := []string{"connected B", "connected C"}; !slices.Equal(got, want) {
			t.Errorf("A saw %q, want %q", got, want)
		}
		for _, p := range ps[1:] {
			if !p.IsConnected(ps[0].Self()) {
				t.Errorf("%s not connected to A", names[p.Self()])
			}
		}
	})
}

func TestSendingToUnknownOrStoppedPeersFailsNamingThem(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		vn := testutil.NewVirtualNetwork()
		defer vn.Close()
		a, b, _, _ := pair(vn)
		ctx := t.Context()

		stranger := testutil.PeerID(999)
		err := a.SendMessage(ctx, stranger, &message.Message{})
		if !errors.Is(err, testutil.ErrUnknownPeer) || !strings.Contains(err.Error(), stranger.String()) {
			t.Errorf("send to unknown peer: err = %v, want ErrUnknownPeer naming %s", err, stranger)
		}
		if err := a.Connect(ctx, peer.AddrInfo{ID: stranger}); !errors.Is(err, testutil.ErrUnknownPeer) {
			t.Errorf("Connect to unknown peer: err = %v, want ErrUnknownPeer", err)
		}
		if _, err := a.Version(ctx, stranger); !errors.Is(err, testutil.ErrUnknownPeer) {
			t.Errorf("Version of unknown peer: err = %v, want ErrUnknownPeer", err)
		}

		b.Stop()
		err = a.SendMessage(ctx, b.Self(), &message.Message{})
		if !errors.Is(err, testutil.ErrPeerStopped) || !strings.Contains(err.Error(), b.Self().String()) {
			t.Errorf("send to stopped peer: err = %v, want ErrPeerStopped naming %s", err, b.Self())
		}
		if err := b.SendMessage(ctx, a.Self(), &message.Message{}); !errors.Is(err, testutil.ErrPeerStopped) {
			t.Errorf("send from stopped peer: err = %v, want ErrPeerStopped", err)
		}
		if err := a.SendMessage(ctx, a.Self(), &message.Message{}); err == nil {
			t.Error("sending to oneself succeeded")
		}
		cancelled, cancel := context.WithCancel(ctx)
		cancel()
		if err := a.SendMessage(cancelled, b.Self(), &message.Message{}); !errors.Is(err, context.Canceled) {
			t.Errorf("send with cancelled ctx: err = %v, want context.Canceled", err)
		}
	})
}

func TestOversizedMessagesAreRefusedAtTheSender(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		vn := testutil.NewVirtualNetwork()
		defer vn.Close()
		a, b, _, _ := pair(vn)
		msg := &message.Message{Blocks: testutil.RandomBlocks(1, 3, message.MaxBlockSize)}
		err := a.SendMessage(t.Context(), b.Self(), msg)
		if !errors.Is(err, message.ErrTooLarge) {
			t.Fatalf("err = %v, want ErrTooLarge", err)
		}
		if st := a.Stats(); st.MessagesSent != 0 || st.BytesSent != 0 {
			t.Fatalf("refused message counted in stats: %+v", st)
		}
	})
}

func TestStopDisconnectsAndSilencesThePeer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		vn := testutil.NewVirtualNetwork(testutil.WithLatency(100 * time.Millisecond))
		defer vn.Close()
		a, b, ra, rb := pair(vn)
		if err := a.Connect(t.Context(), peer.AddrInfo{ID: b.Self()}); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		// A message to A is in flight when A stops.
		if err := b.SendMessage(t.Context(), a.Self(), &message.Message{}); err != nil {
			t.Fatal(err)
		}
		a.Stop()
		time.Sleep(time.Second)

		if got, want := ra.Events(), []string{"connected B"}; !slices.Equal(got, want) {
			t.Errorf("stopped A saw %q, want %q", got, want)
		}
		if got, want := rb.Events(), []string{"connected A", "disconnected A"}; !slices.Equal(got, want) {
			t.Errorf("B saw %q, want %q", got, want)
		}
		a.Stop() // idempotent
	})
}

func TestStopLeavesNoGoroutines(t *testing.T) {
	defer goleak.VerifyNone(t)
	vn := testutil.NewVirtualNetwork(testutil.WithLatency(time.Millisecond))
	ps := testutil.NewSwarm(vn, 4)
	for _, p := range ps[:3] { // the last is never started
		p.Start(newRecorder(nil))
	}
	for _, p := range ps[:3] {
		for _, q := range ps {
			if p != q {
				if err := p.SendMessage(context.Background(), q.Self(), blockMsg(1, 1000)); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	for _, p := range ps {
		p.Stop()
	}
}

func TestStatsCountFramedBytes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		vn := testutil.NewVirtualNetwork(testutil.WithLatency(time.Millisecond))
		defer vn.Close()
		a, b, _, _ := pair(vn)
		var want uint64
		for i := range 5 {
			msg := blockMsg(int64(i), 100*i)
			want += uint64(frameLen(msg, message.V120))
			if err := a.SendMessage(t.Context(), b.Self(), msg); err != nil {
				t.Fatal(err)
			}
		}
		synctest.Wait()
		time.Sleep(time.Second)
		if got := a.Stats(); got.MessagesSent != 5 || got.BytesSent != want || got.MessagesReceived != 0 || got.BytesReceived != 0 {
			t.Errorf("A's stats = %+v, want 5 messages and %d bytes sent", got, want)
		}
		if got := b.Stats(); got.MessagesReceived != 5 || got.BytesReceived != want || got.MessagesSent != 0 || got.BytesSent != 0 {
			t.Errorf("B's stats = %+v, want 5 messages and %d bytes received", got, want)
		}
	})
}

func TestSlowLinksCostNoRealTimeUnderSynctest(t *testing.T) {
	realStart := time.Now() // outside the bubble: real time
	synctest.Test(t, func(t *testing.T) {
		vn := testutil.NewVirtualNetwork(testutil.WithLatency(10*time.Second), testutil.WithBandwidth(1<<10))
		defer vn.Close()
		a, b, _, rb := pair(vn)
		msg := blockMsg(1, 64<<10) // a minute at 1 KiB/s
		start := time.Now()
		if err := a.SendMessage(t.Context(), b.Self(), msg); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Hour)
		got := rb.Messages()
		if len(got) != 1 || got[0].at.Sub(start) < 70*time.Second {
			t.Fatalf("got %v, want one message after more than 70s of virtual time", got)
		}
	})
	if d := time.Since(realStart); d > 10*time.Second {
		t.Fatalf("took %v of real time", d)
	}
}

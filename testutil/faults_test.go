package testutil_test

import (
	"errors"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/gobitswap/bitswap/message"
	"github.com/gobitswap/bitswap/testutil"
	"github.com/libp2p/go-libp2p/core/peer"
	"go.uber.org/goleak"
)

// numbered is the i-th message of a sequence, told apart by PendingBytes.
func numbered(i int) *message.Message { return &message.Message{PendingBytes: int32(i + 1)} }

// arrived returns the sequence numbers of the numbered messages r received
// from the peer named from.
func arrived(r *recorder, from string) []int {
	var out []int
	for _, m := range r.Messages() {
		if m.from == from {
			out = append(out, int(m.msg.PendingBytes)-1)
		}
	}
	return out
}

// missing returns the numbers in [0, n) not in got.
func missing(n int, got []int) []int {
	var out []int
	for i := range n {
		if !slices.Contains(got, i) {
			out = append(out, i)
		}
	}
	return out
}

// checkFates fails unless every message sent has met exactly one fate.
func checkFates(t *testing.T, tr testutil.Traffic) {
	t.Helper()
	if got := tr.Delivered.Messages + tr.Dropped + tr.Swallowed + tr.Aborted; got != tr.Sent.Messages {
		t.Errorf("%d messages sent but %d delivered + %d dropped + %d swallowed + %d aborted",
			tr.Sent.Messages, tr.Delivered.Messages, tr.Dropped, tr.Swallowed, tr.Aborted)
	}
}

func send(t *testing.T, from *testutil.VirtualPeer, to peer.ID, msg *message.Message) {
	t.Helper()
	if err := from.SendMessage(t.Context(), to, msg); err != nil {
		t.Fatal(err)
	}
}

func TestTotalLossReportsAResetAtArrivalTimeAndDeliversNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const latency = 100 * time.Millisecond
		vn := testutil.NewVirtualNetwork(testutil.WithLoss(1), testutil.WithLatency(latency))
		defer vn.Close()
		a, b, _, rb := pair(vn)
		send(t, a, b.Self(), numbered(0))
		send(t, a, b.Self(), numbered(1))

		time.Sleep(latency - time.Nanosecond)
		if errs := rb.Errors(); len(errs) != 0 {
			t.Fatalf("loss reported before the message would have arrived: %v", errs)
		}
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		errs := rb.Errors()
		if len(errs) != 2 {
			t.Fatalf("B got %d errors, want 2 (events %q)", len(errs), rb.Events())
		}
		for _, err := range errs {
			if !errors.Is(err, testutil.ErrMessageLost) || !errors.Is(err, message.ErrIncomplete) {
				t.Errorf("error %v does not wrap ErrMessageLost and message.ErrIncomplete", err)
			}
		}
		if len(rb.Messages()) != 0 {
			t.Error("a lost message was delivered")
		}
		if vn.Dropped() != 2 {
			t.Errorf("Dropped = %d, want 2", vn.Dropped())
		}
		if st := b.Stats(); st.MessagesReceived != 0 || st.BytesReceived != 0 {
			t.Errorf("lost messages counted as received: %+v", st)
		}
		if st := a.Stats(); st.MessagesSent != 2 {
			t.Errorf("lost messages not counted as sent: %+v", st)
		}
		tr := vn.Traffic()
		checkFates(t, tr)
		if tr.Dropped != 2 || tr.Delivered.Messages != 0 {
			t.Errorf("Traffic = %+v, want 2 dropped, none delivered", tr)
		}
	})
}

// lossPattern sends n numbered messages from A to B on a fresh network with
// the given options and returns the numbers lost.
func lossPattern(t *testing.T, n int, opts ...testutil.VNetOption) []int {
	vn := testutil.NewVirtualNetwork(opts...)
	defer vn.Close()
	a, b, _, rb := pair(vn)
	for i := range n {
		send(t, a, b.Self(), numbered(i))
	}
	synctest.Wait()
	lost := missing(n, arrived(rb, "A"))
	if uint64(len(lost)) != vn.Dropped() || len(rb.Errors()) != len(lost) {
		t.Errorf("%d messages missing, but Dropped = %d and %d errors", len(lost), vn.Dropped(), len(rb.Errors()))
	}
	checkFates(t, vn.Traffic())
	return lost
}

func TestLossIsDeterministicForASeedAndNearItsProbability(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n = 2000
		first := lossPattern(t, n, testutil.WithLoss(0.25), testutil.WithSeed(7))
		again := lossPattern(t, n, testutil.WithLoss(0.25), testutil.WithSeed(7))
		other := lossPattern(t, n, testutil.WithLoss(0.25), testutil.WithSeed(8))
		if !slices.Equal(first, again) {
			t.Error("the same seed lost different messages")
		}
		if slices.Equal(first, other) {
			t.Error("different seeds lost the same messages")
		}
		if len(first) < n/5 || len(first) > n*3/10 {
			t.Errorf("lost %d of %d messages at p = 0.25", len(first), n)
		}
		if lost := lossPattern(t, 100); len(lost) != 0 {
			t.Errorf("lost %v without WithLoss", lost)
		}
	})
}

func TestLossOfALinkDoesNotDependOnOtherLinksTraffic(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n = 200
		run := func(interleave bool) []int {
			vn := testutil.NewVirtualNetwork(testutil.WithLoss(0.5), testutil.WithSeed(3))
			defer vn.Close()
			ps := testutil.NewSwarm(vn, 3)
			names := map[peer.ID]string{ps[0].Self(): "A", ps[1].Self(): "B", ps[2].Self(): "C"}
			rb := newRecorder(names)
			ps[0].Start(newRecorder(names))
			ps[1].Start(rb)
			ps[2].Start(newRecorder(names))
			for i := range n {
				send(t, ps[0], ps[1].Self(), numbered(i))
				if interleave {
					send(t, ps[2], ps[1].Self(), numbered(i))
					send(t, ps[1], ps[0].Self(), numbered(i))
				}
			}
			synctest.Wait()
			return missing(n, arrived(rb, "A"))
		}
		if alone, busy := run(false), run(true); !slices.Equal(alone, busy) {
			t.Errorf("A→B lost %v alone but %v among other traffic", alone, busy)
		}
	})
}

func TestSetLossOverridesTheDefaultPerPairAndSurvivesSetLink(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		vn := testutil.NewVirtualNetwork(testutil.WithLoss(1))
		defer vn.Close()
		ps := testutil.NewSwarm(vn, 3)
		names := map[peer.ID]string{ps[0].Self(): "A", ps[1].Self(): "B", ps[2].Self(): "C"}
		recs := []*recorder{newRecorder(names), newRecorder(names), newRecorder(names)}
		for i, p := range ps {
			p.Start(recs[i])
		}
		vn.SetLoss(ps[1].Self(), ps[0].Self(), 0)                       // B-A: lossless
		vn.SetLink(ps[0].Self(), ps[1].Self(), time.Millisecond, 1<<20) // must not reset the loss
		send(t, ps[0], ps[1].Self(), numbered(0))
		send(t, ps[1], ps[0].Self(), numbered(0))
		send(t, ps[0], ps[2].Self(), numbered(0)) // A-C: default, all lost
		time.Sleep(time.Second)
		if len(arrived(recs[1], "A")) != 1 || len(arrived(recs[0], "B")) != 1 {
			t.Error("a message on the lossless pair was lost")
		}
		if len(recs[2].Messages()) != 0 || vn.Dropped() != 1 {
			t.Errorf("C received %d messages and Dropped = %d; want 0 and 1", len(recs[2].Messages()), vn.Dropped())
		}
	})
}

func TestLossProbabilityOutOfRangePanics(t *testing.T) {
	for _, p := range []float64{-0.1, 1.5} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("WithLoss(%v) did not panic", p)
				}
			}()
			testutil.WithLoss(p)
		}()
	}
	vn := testutil.NewVirtualNetwork()
	defer vn.Close()
	defer func() {
		if recover() == nil {
			t.Error("SetLoss(2) did not panic")
		}
	}()
	vn.SetLoss(testutil.PeerID(0), testutil.PeerID(1), 2)
}

func TestDisconnectKeepsAPairApartUntilReconnect(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		vn := testutil.NewVirtualNetwork(testutil.WithLatency(100 * time.Millisecond))
		defer vn.Close()
		a, b, ra, rb := pair(vn)
		if err := vn.ConnectPairs(a.Self(), b.Self()); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		send(t, a, b.Self(), numbered(0)) // in flight when the pair is cut
		time.Sleep(50 * time.Millisecond)
		vn.Disconnect(a.Self(), b.Self())
		time.Sleep(time.Second)

		if got, want := rb.Events(), []string{"connected A", "disconnected A"}; !slices.Equal(got, want) {
			t.Errorf("B saw %q, want %q", got, want)
		}
		if got, want := ra.Events(), []string{"connected B", "disconnected B"}; !slices.Equal(got, want) {
			t.Errorf("A saw %q, want %q", got, want)
		}
		if tr := vn.Traffic(); tr.Aborted != 1 || tr.Delivered.Messages != 0 {
			t.Errorf("Traffic = %+v, want the in-flight message aborted", tr)
		}
		if err := a.SendMessage(t.Context(), b.Self(), numbered(1)); !errors.Is(err, testutil.ErrUnreachable) {
			t.Errorf("SendMessage across the cut: err = %v, want ErrUnreachable", err)
		}
		if err := b.Connect(t.Context(), peer.AddrInfo{ID: a.Self()}); !errors.Is(err, testutil.ErrUnreachable) {
			t.Errorf("Connect across the cut: err = %v, want ErrUnreachable", err)
		}
		if _, err := b.Version(t.Context(), a.Self()); !errors.Is(err, testutil.ErrUnreachable) {
			t.Errorf("Version across the cut: err = %v, want ErrUnreachable", err)
		}
		vn.ConnectAll()
		if a.IsConnected(b.Self()) {
			t.Error("ConnectAll connected a pair kept apart")
		}

		if err := vn.Reconnect(b.Self(), a.Self()); err != nil {
			t.Fatal(err)
		}
		send(t, a, b.Self(), numbered(2))
		time.Sleep(time.Second)
		if got, want := rb.Events(), []string{"connected A", "disconnected A", "connected A", "message from A"}; !slices.Equal(got, want) {
			t.Errorf("B saw %q, want %q", got, want)
		}
		if got := arrived(rb, "A"); !slices.Equal(got, []int{2}) {
			t.Errorf("B received %v, want only message 2", got)
		}
		checkFates(t, vn.Traffic())
	})
}

func TestReconnectFailsForStoppedOrUnknownPeers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		vn := testutil.NewVirtualNetwork()
		defer vn.Close()
		a, b, _, _ := pair(vn)
		if err := vn.Reconnect(a.Self(), testutil.PeerID(99)); !errors.Is(err, testutil.ErrUnknownPeer) {
			t.Errorf("Reconnect to unknown peer: err = %v", err)
		}
		b.Stop()
		if err := vn.Reconnect(a.Self(), b.Self()); !errors.Is(err, testutil.ErrPeerStopped) {
			t.Errorf("Reconnect to stopped peer: err = %v", err)
		}
		defer func() {
			if recover() == nil {
				t.Error("Disconnect of an unknown peer did not panic")
			}
		}()
		vn.Disconnect(a.Self(), testutil.PeerID(99))
	})
}

// churnSwarm is four started peers A, B, C, D on vn, where A is connected
// to B and C only.
func churnSwarm(t *testing.T, vn *testutil.VirtualNetwork) ([]*testutil.VirtualPeer, []*recorder) {
	ps := []*testutil.VirtualPeer{vn.NewPeer(), vn.NewPeer(), vn.NewPeer(), vn.NewPeer()}
	names := map[peer.ID]string{}
	for i, p := range ps {
		names[p.Self()] = string(rune('A' + i))
	}
	recs := make([]*recorder, len(ps))
	for i, p := range ps {
		recs[i] = newRecorder(names)
		p.Start(recs[i])
	}
	if err := vn.ConnectPairs(ps[0].Self(), ps[1].Self(), ps[2].Self()); err != nil {
		t.Fatal(err)
	}
	synctest.Wait()
	return ps, recs
}

func TestScheduledChurnLeavesAndReturnsInVirtualTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		vn := testutil.NewVirtualNetwork(testutil.WithLatency(10 * time.Millisecond))
		defer vn.Close()
		ps, recs := churnSwarm(t, vn)
		a, b, c, d := ps[0], ps[1], ps[2], ps[3]

		vn.ScheduleChurn(a.Self(), time.Second, 5*time.Second)
		time.Sleep(time.Second - time.Nanosecond)
		if !a.IsConnected(b.Self()) || !a.IsConnected(c.Self()) {
			t.Fatal("A left early")
		}
		send(t, b, a.Self(), numbered(0)) // in flight when A leaves
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		for _, p := range ps[1:] {
			if a.IsConnected(p.Self()) {
				t.Errorf("A still connected to %s after leaving", p)
			}
		}
		if got := recs[0].Events(); !slices.Contains(got, "disconnected B") || !slices.Contains(got, "disconnected C") {
			t.Errorf("A saw %q, want disconnections from B and C", got)
		}
		if got := recs[1].Events(); got[len(got)-1] != "disconnected A" {
			t.Errorf("B saw %q, want A's leaving last", got)
		}

		// While away, A can neither dial nor be dialled.
		time.Sleep(time.Second)
		if err := b.SendMessage(t.Context(), a.Self(), numbered(1)); !errors.Is(err, testutil.ErrUnreachable) {
			t.Errorf("send to a peer that left: err = %v, want ErrUnreachable", err)
		}
		if err := a.Connect(t.Context(), peer.AddrInfo{ID: d.Self()}); !errors.Is(err, testutil.ErrUnreachable) {
			t.Errorf("dial from a peer that left: err = %v, want ErrUnreachable", err)
		}

		// It returns 5s after leaving, to B and C but not D.
		time.Sleep(4*time.Second - time.Nanosecond)
		if a.IsConnected(b.Self()) {
			t.Fatal("A returned early")
		}
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		if !a.IsConnected(b.Self()) || !a.IsConnected(c.Self()) || a.IsConnected(d.Self()) {
			t.Error("A did not return to exactly B and C")
		}
		if got, want := recs[2].Events(), []string{"connected A", "disconnected A", "connected A"}; !slices.Equal(got, want) {
			t.Errorf("C saw %q, want %q", got, want)
		}
		if len(recs[3].Events()) != 0 {
			t.Errorf("D saw %q, want nothing", recs[3].Events())
		}
		if len(recs[0].Messages()) != 0 || vn.Traffic().Aborted != 1 {
			t.Error("the message in flight when A left was not lost")
		}
		send(t, b, a.Self(), numbered(2))
		synctest.Wait()
		time.Sleep(time.Second)
		if got := arrived(recs[0], "B"); !slices.Equal(got, []int{2}) {
			t.Errorf("A received %v after returning, want [2]", got)
		}
	})
}

func TestChurnWithoutReturnAndImmediateLeaving(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		vn := testutil.NewVirtualNetwork()
		defer vn.Close()
		ps, _ := churnSwarm(t, vn)
		vn.ScheduleChurn(ps[0].Self(), 0, 0) // leaves before returning, for good
		if ps[0].IsConnected(ps[1].Self()) {
			t.Fatal("leaveAt 0 did not leave at once")
		}
		time.Sleep(time.Hour)
		if err := ps[0].Connect(t.Context(), peer.AddrInfo{ID: ps[1].Self()}); !errors.Is(err, testutil.ErrUnreachable) {
			t.Errorf("peer that left for good dialled: err = %v", err)
		}
	})
}

func TestOverlappingChurnReturnsAfterTheLastAbsence(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		vn := testutil.NewVirtualNetwork()
		defer vn.Close()
		ps, _ := churnSwarm(t, vn)
		a, b, c := ps[0], ps[1], ps[2]
		vn.ScheduleChurn(a.Self(), time.Second, 2*time.Second) // away 1s..3s
		vn.ScheduleChurn(a.Self(), 2*time.Second, 3*time.Second)
		time.Sleep(4 * time.Second) // first absence over, second not
		if a.IsConnected(b.Self()) {
			t.Error("A returned while a second absence was in progress")
		}
		time.Sleep(time.Second + time.Nanosecond) // second over at 5s
		synctest.Wait()
		if !a.IsConnected(b.Self()) || !a.IsConnected(c.Self()) {
			t.Error("A did not rejoin B and C after its last absence")
		}
	})
}

func TestChurnGoroutinesEndOnCloseAndOnStop(t *testing.T) {
	defer goleak.VerifyNone(t)
	vn := testutil.NewVirtualNetwork()
	ps := testutil.NewSwarm(vn, 3)
	vn.ScheduleChurn(ps[0].Self(), time.Hour, time.Hour)
	vn.ScheduleChurn(ps[1].Self(), 0, time.Hour) // waiting to return
	ps[2].Start(newRecorder(nil))
	vn.ScheduleChurn(ps[2].Self(), time.Hour, 0)
	ps[2].Stop()                                 // ends its schedule
	vn.Close()                                   // ends the others
	vn.ScheduleChurn(ps[0].Self(), 0, time.Hour) // after Close: nothing
}

func TestUnresponsivePeerSwallowsMessagesButStaysConnected(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		vn := testutil.NewVirtualNetwork(testutil.WithLatency(10 * time.Millisecond))
		defer vn.Close()
		a, b, ra, rb := pair(vn)
		vn.SetUnresponsive(b.Self(), true)
		send(t, a, b.Self(), numbered(0))
		send(t, b, a.Self(), numbered(0)) // it can still talk
		time.Sleep(time.Second)
		if got, want := rb.Events(), []string{"connected A"}; !slices.Equal(got, want) {
			t.Errorf("unresponsive B saw %q, want %q", got, want)
		}
		if len(arrived(ra, "B")) != 1 {
			t.Error("an unresponsive peer's own message was not delivered")
		}
		if st := b.Stats(); st.MessagesReceived != 0 {
			t.Errorf("swallowed message counted as received: %+v", st)
		}
		if tr := vn.TrafficTo(b.Self()); tr.Swallowed != 1 || tr.Delivered.Messages != 0 {
			t.Errorf("TrafficTo(B) = %+v, want 1 swallowed", tr)
		}

		vn.SetUnresponsive(b.Self(), false)
		send(t, a, b.Self(), numbered(1))
		time.Sleep(time.Second)
		if got := arrived(rb, "A"); !slices.Equal(got, []int{1}) {
			t.Errorf("B received %v once responsive again, want [1]", got)
		}
		checkFates(t, vn.Traffic())
	})
}

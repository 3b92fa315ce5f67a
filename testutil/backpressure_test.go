package testutil_test

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/gobitswap/bitswap/message"
	"github.com/gobitswap/bitswap/testutil"
)

// A send returns once what the link has not yet put on the wire, this frame
// included, fits the send buffer: with a 0-byte buffer, when the frame's
// last byte leaves; with a buffer, as soon as the backlog is within it.
func TestSendBlocksUntilTheSendBufferHasRoom(t *testing.T) {
	const bandwidth = 1_000_000 // one byte per microsecond
	msg := blockMsg(1, 100_000)
	size := frameLen(msg, message.V120)
	for _, tc := range []struct {
		name   string
		buffer int
		// how long each of three back-to-back sends takes
		want [3]time.Duration
	}{
		{"no buffer", 0, [3]time.Duration{us(size), us(size), us(size)}},
		{"a frame and a half", size * 3 / 2, [3]time.Duration{0, us(size / 2), us(size)}},
		{"unbounded", -1, [3]time.Duration{0, 0, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				vn := testutil.NewVirtualNetwork(testutil.WithLatency(50*time.Millisecond),
					testutil.WithBandwidth(bandwidth), testutil.WithSendBuffer(tc.buffer))
				defer vn.Close()
				a, b, _, rb := pair(vn)
				for i, want := range tc.want {
					start := time.Now()
					if err := a.SendMessage(t.Context(), b.Self(), msg); err != nil {
						t.Fatal(err)
					}
					// Rounding to whole nanoseconds may leave a nanosecond.
					if took := time.Since(start); took < want-time.Microsecond || took > want+time.Microsecond {
						t.Fatalf("send %d took %v, want %v", i+1, took, want)
					}
				}
				time.Sleep(time.Hour)
				if n := len(rb.Messages()); n != 3 {
					t.Fatalf("B received %d messages, want 3", n)
				}
			})
		})
	}
}

// us is the time n bytes take at one byte per microsecond.
func us(n int) time.Duration { return time.Duration(n) * time.Microsecond }

// Without a bandwidth cap nothing ever waits, whatever the buffer.
func TestSendNeverBlocksWithoutABandwidthCap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		vn := testutil.NewVirtualNetwork(testutil.WithLatency(time.Second), testutil.WithSendBuffer(0))
		defer vn.Close()
		a, b, _, _ := pair(vn)
		start := time.Now()
		for i := range 10 {
			if err := a.SendMessage(t.Context(), b.Self(), blockMsg(int64(i), 1<<20)); err != nil {
				t.Fatal(err)
			}
		}
		if took := time.Since(start); took != 0 {
			t.Fatalf("sends took %v without a bandwidth cap", took)
		}
	})
}

// A sender that gives up while its frame is still going onto the wire gets
// its context's error; the receiver sees an incomplete message, as from a
// reset stream, and Traffic counts the frame aborted.
func TestSendGivenUpMidFrameArrivesIncomplete(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		vn := testutil.NewVirtualNetwork(testutil.WithBandwidth(1_000_000), testutil.WithSendBuffer(0))
		defer vn.Close()
		a, b, _, rb := pair(vn)
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Millisecond)
		defer cancel()
		err := a.SendMessage(ctx, b.Self(), blockMsg(1, 100_000)) // 100 ms on the wire
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("SendMessage = %v, want the context's deadline", err)
		}
		time.Sleep(time.Hour)
		if n := len(rb.Messages()); n != 0 {
			t.Fatalf("B received %d messages, want none", n)
		}
		if errs := rb.Errors(); len(errs) != 1 || !errors.Is(errs[0], message.ErrIncomplete) {
			t.Fatalf("B's errors: %v, want one incomplete message", errs)
		}
		if tr := vn.TrafficBetween(a.Self(), b.Self()); tr.Sent.Messages != 1 || tr.Aborted != 1 {
			t.Fatalf("traffic %+v: want 1 sent, 1 aborted", tr)
		}
	})
}

// Access links are shared by all of a peer's connections: two seeds sending
// a frame each to one leech at once take twice as long through its
// downlink, and one seed sending to two leeches takes twice as long through
// its uplink; a pair's own link still caps each frame.
func TestAccessLinksAreSharedByAllConnections(t *testing.T) {
	const rate = 1_000_000
	msg := blockMsg(1, 100_000)
	size := frameLen(msg, message.V120)
	synctest.Test(t, func(t *testing.T) {
		vn := testutil.NewVirtualNetwork(testutil.WithSendBuffer(-1))
		defer vn.Close()
		s1, s2, leech := vn.NewPeer(), vn.NewPeer(), vn.NewPeer()
		r := newRecorder(nil)
		for _, p := range []*testutil.VirtualPeer{s1, s2} {
			p.Start(newRecorder(nil))
		}
		leech.Start(r)
		vn.SetAccessLink(leech.Self(), 0, rate)
		start := time.Now()
		for _, s := range []*testutil.VirtualPeer{s1, s2} {
			if err := s.SendMessage(t.Context(), leech.Self(), msg); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(time.Hour)
		got := r.Messages()
		if len(got) != 2 || got[0].at.Sub(start) != us(size) || got[1].at.Sub(start) != us(2*size) {
			t.Fatalf("through a shared downlink: %d messages, at %v; want at %v and %v", len(got), arrivals(got, start), us(size), us(2*size))
		}
	})
	synctest.Test(t, func(t *testing.T) {
		vn := testutil.NewVirtualNetwork(testutil.WithSendBuffer(-1), testutil.WithAccessLinks(rate, 0))
		defer vn.Close()
		seed, l1, l2 := vn.NewPeer(), vn.NewPeer(), vn.NewPeer()
		seed.Start(newRecorder(nil))
		r1, r2 := newRecorder(nil), newRecorder(nil)
		l1.Start(r1)
		l2.Start(r2)
		vn.SetLink(seed.Self(), l2.Self(), 0, rate/2) // this pair's own link is slower
		start := time.Now()
		for _, l := range []*testutil.VirtualPeer{l1, l2} {
			if err := seed.SendMessage(t.Context(), l.Self(), msg); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(time.Hour)
		// l1's frame holds the uplink for size µs; l2's starts then, at
		// the pair link's half rate.
		if a1, a2 := arrivals(r1.Messages(), start), arrivals(r2.Messages(), start); len(a1) != 1 || len(a2) != 1 ||
			a1[0] != us(size) || a2[0] != us(size)+2*us(size) {
			t.Fatalf("through a shared uplink: at %v and %v; want %v and %v", a1, a2, us(size), 3*us(size))
		}
	})
}

func arrivals(rs []received, start time.Time) []time.Duration {
	var out []time.Duration
	for _, r := range rs {
		out = append(out, r.at.Sub(start))
	}
	return out
}

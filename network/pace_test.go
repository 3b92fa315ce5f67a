package network

import (
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	blocks "github.com/ipfs/go-block-format"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/gobitswap/bitswap/message"
)

// pacedNetwork is a network that is never started: pace needs only its
// configuration, its guards and its context.
func pacedNetwork(opts ...Option) *Libp2pNetwork {
	n := NewFromHost(nil, opts...)
	n.state = stateStarted
	return n
}

// A peer may send its burst of wantlist entries at once; after that each
// message waits for the entries it carries at the configured rate, and a
// message larger than the burst waits as if it were the burst. Messages
// without entries (blocks, presences) are never held. Peers are paced
// independently.
func TestWantlistEntriesArePacedPerPeer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := pacedNetwork(WithWantlistRate(1000, 500))
		defer n.cancel()
		start := time.Now()
		steps := []struct {
			p       peer.ID
			entries int
			at      time.Duration // when pace returns, from start
		}{
			{"flood", 500, 0},                      // the burst
			{"flood", 0, 0},                        // no entries: not held
			{"flood", 100, 100 * time.Millisecond}, // 100 entries at 1000/s
			{"honest", 500, 100 * time.Millisecond},
			{"flood", 50_000, 600 * time.Millisecond}, // capped at the burst
		}
		for i, s := range steps {
			if !n.pace(s.p, nil, s.entries) {
				t.Fatalf("step %d: pace gave up", i)
			}
			if got := time.Since(start); got != s.at {
				t.Fatalf("step %d (%s, %d entries): returned at %v, want %v", i, s.p, s.entries, got, s.at)
			}
		}
		if got := n.Stats().ThrottledMessages; got != 2 {
			t.Fatalf("ThrottledMessages = %d, want 2", got)
		}
	})
}

// Stop releases a message waiting for its pace.
func TestStopReleasesPacedMessage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := pacedNetwork(WithWantlistRate(10, 10))
		n.pace("p", nil, 10)
		done := make(chan bool)
		go func() { done <- n.pace("p", nil, 10) }()
		time.Sleep(100 * time.Millisecond)
		n.cancel()
		if <-done {
			t.Fatal("pace returned true after Stop")
		}
	})
}

// Pacing off (a negative rate) never holds a message.
func TestWantlistPacingOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := pacedNetwork(WithWantlistRate(-1, 0))
		defer n.cancel()
		start := time.Now()
		for range 10 {
			n.pace("p", nil, DefaultWantlistBurst)
		}
		if d := time.Since(start); d != 0 {
			t.Fatalf("paced for %v with pacing off", d)
		}
	})
}

// While a peer's message waits for its pace, its queue takes one more
// message only: the read loop then waits (and TCP holds the sender back)
// instead of queueing up to maxInboxBytes of a flood. Nothing is lost: every
// message is delivered, in order, as the pace allows.
func TestPacedPeerQueuesOneMessage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := pacedNetwork(WithWantlistRate(1, 1))
		rec := newRecorder()
		n.receiver = rec
		body := func(i int) []byte {
			m := wantMsg(blocks.NewBlock([]byte{byte(i)}), int32(i))
			b, _, err := message.ParseFrame(message.AppendFrame(nil, m, message.V120), 0)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
		var queued atomic.Int32
		send := func(i int) {
			if n.enqueue("flood", body(i)) {
				queued.Add(1)
			}
		}
		send(1) // the burst: delivered at once
		synctest.Wait()
		send(2) // waits a second for its pace
		synctest.Wait()
		go send(3) // queued behind it
		go send(4) // must wait
		go send(5)
		synctest.Wait()
		if got := queued.Load(); got != 3 {
			t.Fatalf("%d messages queued while one waits for its pace, want 3 (delivered, waiting, one queued)", got)
		}
		time.Sleep(10 * time.Second)
		synctest.Wait()
		msgs := rec.snapshot("msg")
		if len(msgs) != 5 {
			t.Fatalf("%d of 5 messages delivered", len(msgs))
		}
		n.cancel()
		n.wakeInboxes()
		n.wg.Wait()
	})
}

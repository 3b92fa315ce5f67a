package engine

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// When every slot is taken, the next one goes to the waiting peer with the
// fewest lookups lately, whatever the order of arrival: a peer that has
// kept the blockstore busy waits behind one that has asked little.
func TestLookupGateAdmitsThePeerWithFewestLookupsFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newLookupGate(1)
		ctx := context.Background()
		for range 20 { // "busy" has done 20 batches just now
			g.acquire(ctx, "busy", lookupBatch)
			g.release()
		}
		g.acquire(ctx, "holder", 1)
		order := make(chan peer.ID, 2)
		wait := func(p peer.ID) {
			if g.acquire(ctx, p, lookupBatch) {
				order <- p
				g.release()
			}
		}
		go wait("busy")
		synctest.Wait()
		go wait("new")
		synctest.Wait()
		g.release()
		if first, second := <-order, <-order; first != "new" || second != "busy" {
			t.Fatalf("admitted %s then %s, want new then busy", first, second)
		}
	})
}

// A peer's count is forgotten with time: many half-lives after it was busy,
// a peer goes ahead of one that has asked more since.
func TestLookupGateForgetsOldLookups(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newLookupGate(1)
		ctx := context.Background()
		for range 20 {
			g.acquire(ctx, "once-busy", lookupBatch)
			g.release()
		}
		time.Sleep(30 * lookupHalfLife)
		for range 2 {
			g.acquire(ctx, "lately", lookupBatch)
			g.release()
		}
		g.acquire(ctx, "holder", 1)
		order := make(chan peer.ID, 2)
		wait := func(p peer.ID) {
			if g.acquire(ctx, p, lookupBatch) {
				order <- p
				g.release()
			}
		}
		go wait("lately")
		synctest.Wait()
		go wait("once-busy")
		synctest.Wait()
		g.release()
		if first := <-order; first != "once-busy" {
			t.Fatalf("admitted %s first, want once-busy: its 20 batches are 30 half-lives old", first)
		}
		<-order
	})
}

// A waiter whose ctx ends leaves the queue holding nothing; the slot it was
// waiting for still goes to the next waiter.
func TestLookupGateWaiterGivesUpOnCancel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newLookupGate(1)
		g.acquire(context.Background(), "holder", 1)
		ctx, cancel := context.WithCancel(context.Background())
		gaveUp := make(chan bool)
		go func() { gaveUp <- !g.acquire(ctx, "quitter", 1) }()
		synctest.Wait()
		admitted := make(chan struct{})
		go func() {
			g.acquire(context.Background(), "patient", 1)
			close(admitted)
		}()
		synctest.Wait()
		cancel()
		if !<-gaveUp {
			t.Fatal("acquire returned true after its ctx ended")
		}
		g.release()
		<-admitted
		g.release()
		if g.free != 1 || g.waiting.Len() != 0 {
			t.Fatalf("gate left with %d free, %d waiting; want 1, 0", g.free, g.waiting.Len())
		}
	})
}

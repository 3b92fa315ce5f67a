package engine

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// batches has p do n lookup batches, one after another.
func batches(g *lookupGate, p peer.ID, n int) {
	for range n {
		g.acquire(context.Background(), p, lookupBatch)
		g.release()
	}
}

// admissionOrder holds g's only slot, queues a batch of first and then one
// of second behind it, releases the slot and returns the order in which
// they were admitted. Call it inside a synctest bubble.
func admissionOrder(g *lookupGate, first, second peer.ID) (peer.ID, peer.ID) {
	g.acquire(context.Background(), "holder", 1)
	order := make(chan peer.ID, 2)
	wait := func(p peer.ID) {
		if g.acquire(context.Background(), p, lookupBatch) {
			order <- p
			g.release()
		}
	}
	go wait(first)
	synctest.Wait()
	go wait(second)
	synctest.Wait()
	g.release()
	return <-order, <-order
}

// When every slot is taken, the next one goes to the waiting peer with the
// fewest lookups lately, whatever the order of arrival: a peer that has
// kept the blockstore busy waits behind one that has asked little.
func TestLookupGateAdmitsThePeerWithFewestLookupsFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newLookupGate(1)
		batches(g, "busy", 20) // just now
		if first, second := admissionOrder(g, "busy", "new"); first != "new" || second != "busy" {
			t.Fatalf("admitted %s then %s, want new then busy", first, second)
		}
	})
}

// A peer's count is forgotten with time: many half-lives after it was busy,
// a peer goes ahead of one that has asked more since.
func TestLookupGateForgetsOldLookups(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newLookupGate(1)
		batches(g, "once-busy", 20)
		time.Sleep(30 * lookupHalfLife)
		batches(g, "lately", 2)
		if first, _ := admissionOrder(g, "lately", "once-busy"); first != "once-busy" {
			t.Fatalf("admitted %s first, want once-busy: its 20 batches are 30 half-lives old", first)
		}
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

package testutil_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/gobitswap/bitswap/testutil"
	cid "github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/routing"
	"go.uber.org/goleak"
)

// collect reads ch until it closes, returning the IDs and when the channel
// closed.
func collect(ch <-chan peer.AddrInfo) ([]peer.ID, time.Time) {
	var ids []peer.ID
	for ai := range ch {
		if len(ai.Addrs) != 0 {
			panic("provider record with addresses")
		}
		ids = append(ids, ai.ID)
	}
	return ids, time.Now()
}

func TestFindProvidersAnswersAfterTheDelayAndHonoursCount(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const delay = 300 * time.Millisecond
		vn := testutil.NewVirtualNetwork()
		defer vn.Close()
		ps := testutil.NewSwarm(vn, 4)
		var cr routing.ContentRouting = testutil.NewContentRouter(vn, delay)
		root := cr.(*testutil.ContentRouter)
		c := testutil.RandomBlocks(1, 1, 10)[0].Cid()
		root.SetProviders(c, ps[1].Self(), ps[2].Self(), ps[3].Self(), ps[1].Self())

		start := time.Now()
		got, closedAt := collect(cr.FindProvidersAsync(t.Context(), c, 0))
		if want := []peer.ID{ps[1].Self(), ps[2].Self(), ps[3].Self()}; !slices.Equal(got, want) {
			t.Errorf("providers = %v, want %v", got, want)
		}
		if d := closedAt.Sub(start); d != delay {
			t.Errorf("answered after %v, want %v", d, delay)
		}
		if got, _ := collect(cr.FindProvidersAsync(t.Context(), c, 2)); len(got) != 2 {
			t.Errorf("count 2 gave %d providers", len(got))
		}
		other := testutil.RandomBlocks(2, 1, 10)[0].Cid()
		if got, _ := collect(cr.FindProvidersAsync(t.Context(), other, 0)); len(got) != 0 {
			t.Errorf("unknown content has providers %v", got)
		}
		if got, want := root.Queries(), []cid.Cid{c, c, other}; !slices.Equal(got, want) {
			t.Errorf("Queries = %v, want %v", got, want)
		}
		root.SetProviders(c)
		if got := root.Providers(c); len(got) != 0 {
			t.Errorf("SetProviders with none left %v", got)
		}
	})
}

func TestProvidersAreKeyedByMultihashAndSeenAtAnswerTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		vn := testutil.NewVirtualNetwork()
		defer vn.Close()
		ps := testutil.NewSwarm(vn, 2)
		cr := testutil.NewContentRouter(vn, time.Second)
		v0 := testutil.MixedBlocks(1, 3, 10, 10)[2].Cid() // CIDv0
		v1 := cid.NewCidV1(cid.DagProtobuf, v0.Hash())
		ch := cr.FindProvidersAsync(t.Context(), v1, 0)
		time.Sleep(time.Second / 2)
		cr.AddProvider(v0, ps[0].Self()) // recorded while the lookup runs
		if got, _ := collect(ch); !slices.Equal(got, []peer.ID{ps[0].Self()}) {
			t.Errorf("providers of the CIDv1 = %v, want the provider of the CIDv0", got)
		}
	})
}

func TestProvideThroughAPeersViewAnnouncesThatPeer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		vn := testutil.NewVirtualNetwork(testutil.WithLatency(10 * time.Millisecond))
		defer vn.Close()
		a, b, _, rb := pair(vn)
		cr := testutil.NewContentRouter(vn, 100*time.Millisecond)
		ra, rb2 := cr.ForPeer(a.Self()), cr.ForPeer(b.Self())
		c := testutil.RandomBlocks(1, 1, 10)[0].Cid()

		if err := cr.Provide(t.Context(), c, true); !errors.Is(err, testutil.ErrNoSelf) {
			t.Errorf("Provide on the shared table: err = %v, want ErrNoSelf", err)
		}
		if err := ra.Provide(t.Context(), c, false); err != nil || len(cr.Providers(c)) != 0 {
			t.Errorf("Provide without announce: err = %v, providers %v", err, cr.Providers(c))
		}
		if err := ra.Provide(t.Context(), c, true); err != nil {
			t.Fatal(err)
		}
		got, _ := collect(rb2.FindProvidersAsync(t.Context(), c, 0))
		if !slices.Equal(got, []peer.ID{a.Self()}) {
			t.Fatalf("B found %v, want A", got)
		}
		// B connects to the provider it found, as a node would.
		if err := b.Connect(t.Context(), peer.AddrInfo{ID: got[0]}); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if !slices.Contains(rb.Events(), "connected A") {
			t.Errorf("B saw %q, want a connection to A", rb.Events())
		}
		if len(ra.Queries()) != 0 || len(rb2.Queries()) != 1 || len(cr.Queries()) != 1 {
			t.Error("Queries of the views do not separate the peers' lookups")
		}
		cancelled, cancel := context.WithCancel(t.Context())
		cancel()
		if err := ra.Provide(cancelled, c, true); !errors.Is(err, context.Canceled) {
			t.Errorf("Provide with a cancelled ctx: err = %v", err)
		}
	})
}

func TestFindProvidersEndsWithItsContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		vn := testutil.NewVirtualNetwork()
		defer vn.Close()
		ps := testutil.NewSwarm(vn, 3)
		cr := testutil.NewContentRouter(vn, time.Minute)
		c := testutil.RandomBlocks(1, 1, 10)[0].Cid()
		cr.SetProviders(c, ps[1].Self(), ps[2].Self())

		// Cancelled while waiting for the answer.
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		start := time.Now()
		got, closedAt := collect(cr.FindProvidersAsync(ctx, c, 0))
		if len(got) != 0 || closedAt.Sub(start) != time.Second {
			t.Errorf("got %v, closed after %v; want nothing, closed after 1s", got, closedAt.Sub(start))
		}

		// Cancelled after reading one of two answers: the channel still closes.
		ctx2, cancel2 := context.WithCancel(t.Context())
		ch := cr.FindProvidersAsync(ctx2, c, 0)
		<-ch
		cancel2()
		for range ch {
		}
	})
}

func TestPendingLookupsEndWhenTheNetworkCloses(t *testing.T) {
	defer goleak.VerifyNone(t)
	vn := testutil.NewVirtualNetwork()
	ps := testutil.NewSwarm(vn, 2)
	cr := testutil.NewContentRouter(vn, time.Hour)
	c := testutil.RandomBlocks(1, 1, 10)[0].Cid()
	cr.SetProviders(c, ps[0].Self())
	waiting := cr.FindProvidersAsync(context.Background(), c, 0)
	vn.Close()
	if got, _ := collect(waiting); len(got) != 0 {
		t.Errorf("a lookup cut short by Close answered %v", got)
	}
	if got, _ := collect(cr.FindProvidersAsync(context.Background(), c, 0)); len(got) != 0 {
		t.Errorf("a lookup after Close answered %v", got)
	}
}

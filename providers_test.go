package bitswap_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	blocks "github.com/ipfs/go-block-format"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/routing"
	ma "github.com/multiformats/go-multiaddr"

	bitswap "github.com/gobitswap/bitswap"
	"github.com/gobitswap/bitswap/blockstore"
	"github.com/gobitswap/bitswap/network"
	"github.com/gobitswap/bitswap/testutil"
)

// Provider search through the facade, on the virtual network in virtual
// time: the leech is connected to nobody, and only content routing (the
// fake router, answering after 100 ms) knows the holder.
//
// providerScenario builds that: net and router, if set, wrap the leech's
// virtual peer and its view of the router.
func providerScenario(t *testing.T, vn *testutil.VirtualNetwork, net func(*testutil.VirtualPeer) network.Network,
	router func(*testutil.ContentRouter) routing.ContentDiscovery) (holder, leech *node, cr *testutil.ContentRouter) {
	t.Helper()
	cr = testutil.NewContentRouter(vn, 100*time.Millisecond)
	holder = newNodes(t, vn, 1)[0]
	vp := vn.NewPeer()
	leech = &node{vp: vp, bs: blockstore.NewMemory()}
	var r routing.ContentDiscovery = cr.ForPeer(vp.Self())
	if router != nil {
		r = router(cr.ForPeer(vp.Self()))
	}
	var n network.Network = vp
	if net != nil {
		n = net(vp)
	}
	leech.b = bitswap.New(context.Background(), n, leech.bs, bitswap.WithContentRouting(r))
	return holder, leech, cr
}

// Five Sessions that want the same block, which no connected peer has,
// cost content routing one query: the four asks after the first join it,
// and the provider it finds reaches all five.
func TestSessionsWantingOneBlockShareOneProviderQuery(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		vn := testutil.NewVirtualNetwork(testutil.WithLatency(oneWay))
		holder, leech, cr := providerScenario(t, vn, nil, nil)
		defer closeAll([]*node{holder, leech})
		blk := testutil.RandomBlocks(20, 1, 1000)[0]
		_ = holder.bs.Put(context.Background(), blk)
		cr.SetProviders(blk.Cid(), holder.vp.Self())

		start := time.Now()
		var wg sync.WaitGroup
		took := make([]time.Duration, 5)
		for i := range took {
			s := leech.b.NewSession(t.Context())
			wg.Go(func() {
				got, err := s.GetBlock(t.Context(), blk.Cid())
				if err != nil || !bytes.Equal(got.RawData(), blk.RawData()) {
					t.Errorf("session %d: %v", i, err)
				}
				took[i] = time.Since(start)
			})
		}
		wg.Wait()
		if n := len(cr.Queries()); n != 1 {
			t.Errorf("%d content routing queries for one CID wanted by 5 Sessions, want 1", n)
		}
		st, _ := leech.b.Stat()
		if p := st.Providers; p.Started != 1 || p.Joined != 4 || p.Connected != 1 {
			t.Errorf("Stat().Providers %+v, want 1 started, 4 joined, 1 connected", p)
		}
		// No peer to ask first, so content routing at once: the router's
		// 100 ms, then a round trip for the block (the provider is local:
		// no wait for the search's other providers).
		want := 100*time.Millisecond + 2*oneWay
		for i, d := range took {
			if d != want {
				t.Errorf("session %d got the block after %v, want %v", i, d, want)
			}
		}
	})
}

// A provider whose recorded addresses no longer work is looked up with
// FindPeer (the router is a DHT: it does peer routing too), dialled at the
// addresses found, and serves the block.
func TestProviderWithStaleAddressesIsFoundByFindPeer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		vn := testutil.NewVirtualNetwork(testutil.WithLatency(oneWay))
		fresh := ma.StringCast("/ip4/192.0.2.7/tcp/4001")
		at := map[peer.ID]ma.Multiaddr{}
		holder, leech, cr := providerScenario(t, vn,
			func(vp *testutil.VirtualPeer) network.Network { return addrNet{vp, at} },
			func(cr *testutil.ContentRouter) routing.ContentDiscovery { return dht{cr, at} })
		defer closeAll([]*node{holder, leech})
		at[holder.vp.Self()] = fresh // the router's record has no address: it is stale
		blk := testutil.RandomBlocks(21, 1, 1000)[0]
		_ = holder.bs.Put(context.Background(), blk)
		cr.SetProviders(blk.Cid(), holder.vp.Self())

		fetch(t, t.Context(), leech.b, []blocks.Block{blk})
		st, _ := leech.b.Stat()
		if p := st.Providers; p.FindPeers != 1 || p.Rescued != 1 || p.Connected != 1 || p.ConnectFailed != 0 {
			t.Errorf("Stat().Providers %+v, want 1 FindPeer, 1 rescued, 1 connected", p)
		}
	})
}

// A provider on the ignore list is never connected to, though content
// routing names it; the request waits for another.
func TestIgnoredProviderIsNeverConnected(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		vn := testutil.NewVirtualNetwork(testutil.WithLatency(oneWay))
		cr := testutil.NewContentRouter(vn, 100*time.Millisecond)
		holders := newNodes(t, vn, 2)
		vp := vn.NewPeer()
		leech := &node{vp: vp, bs: blockstore.NewMemory()}
		leech.b = bitswap.New(context.Background(), vp, leech.bs, bitswap.WithContentRouting(cr.ForPeer(vp.Self())),
			bitswap.WithIgnoredProviders(holders[0].vp.Self()))
		defer closeAll(append(holders, leech))
		blk := testutil.RandomBlocks(22, 1, 1000)[0]
		for _, h := range holders {
			_ = h.bs.Put(context.Background(), blk)
		}
		cr.SetProviders(blk.Cid(), holders[0].vp.Self(), leech.vp.Self(), holders[1].vp.Self())

		fetch(t, t.Context(), leech.b, []blocks.Block{blk})
		if vp.IsConnected(holders[0].vp.Self()) {
			t.Error("connected to the ignored provider")
		}
		st, _ := leech.b.Stat()
		if p := st.Providers; p.Ignored != 2 || p.Connected != 1 {
			t.Errorf("Stat().Providers %+v, want 2 ignored (the listed peer and this node), 1 connected", p)
		}
	})
}

// With WithMaxProviderQueries(1) and a router slower than the query
// timeout, Sessions wanting three different blocks get one query at a
// time, each ended by WithProviderQueryTimeout.
func TestProviderQueriesAreCappedAndTimed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		vn := testutil.NewVirtualNetwork(testutil.WithLatency(oneWay))
		cr := testutil.NewContentRouter(vn, time.Hour)
		vp := vn.NewPeer()
		leech := &node{vp: vp, bs: blockstore.NewMemory()}
		leech.b = bitswap.New(context.Background(), vp, leech.bs, bitswap.WithContentRouting(cr.ForPeer(vp.Self())),
			bitswap.WithMaxProviderQueries(1), bitswap.WithProviderQueryTimeout(2*time.Second))
		defer closeAll([]*node{leech})
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		var wg sync.WaitGroup
		for _, b := range testutil.RandomBlocks(23, 3, 100) {
			wg.Go(func() {
				if _, err := leech.b.GetBlock(ctx, b.Cid()); !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("GetBlock: %v, want the deadline", err)
				}
			})
		}
		time.Sleep(bitswap.DefaultProviderSearchDelay + time.Millisecond) // the Sessions have asked
		synctest.Wait()
		st, _ := leech.b.Stat()
		if p := st.Providers; p.Running != 1 || p.Waiting != 2 {
			t.Errorf("once the Sessions have asked: %d running, %d waiting; want 1 and 2", p.Running, p.Waiting)
		}
		// At 5 s the requests end; the queries ran 0.5-2.5 s, 2.5-4.5 s
		// (timed out) and 4.5-5 s (cancelled as its Session ended, after
		// its request: hence the synctest.Wait).
		wg.Wait()
		synctest.Wait()
		st, _ = leech.b.Stat()
		if p := st.Providers; p.Started != 3 || p.TimedOut != 2 || p.Abandoned != 1 {
			t.Errorf("Stat().Providers %+v, want 3 started, 2 timed out, 1 abandoned", p)
		}
	})
}

// addrNet is a virtual peer whose dials to the peers in at succeed only
// at that address, as a libp2p host's fail at stale ones.
type addrNet struct {
	*testutil.VirtualPeer
	at map[peer.ID]ma.Multiaddr
}

func (n addrNet) Connect(ctx context.Context, ai peer.AddrInfo) error {
	if a, ok := n.at[ai.ID]; ok && !slices.ContainsFunc(ai.Addrs, a.Equal) {
		return fmt.Errorf("failed to dial %s: no good addresses", ai.ID)
	}
	return n.VirtualPeer.Connect(ctx, ai)
}

// dht is the fake router with peer routing too: FindPeer knows the
// addresses in at.
type dht struct {
	*testutil.ContentRouter
	at map[peer.ID]ma.Multiaddr
}

func (d dht) FindPeer(_ context.Context, p peer.ID) (peer.AddrInfo, error) {
	if a, ok := d.at[p]; ok {
		return peer.AddrInfo{ID: p, Addrs: []ma.Multiaddr{a}}, nil
	}
	return peer.AddrInfo{}, errors.New("routing: not found")
}

package bitswap_test

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	blocks "github.com/ipfs/go-block-format"
	"github.com/libp2p/go-libp2p/core/peer"

	bitswap "github.com/gobitswap/bitswap"
	"github.com/gobitswap/bitswap/blockstore"
	"github.com/gobitswap/bitswap/testutil"
)

// A request that names its providers asks only them: no want reaches any
// other peer, nothing is asked of content routing, and a named peer that
// is not connected is dialled.
func TestWithProvidersAsksOnlyThem(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		vn := testutil.NewVirtualNetwork(testutil.WithLatency(oneWay), testutil.WithBandwidth(bandwidth))
		cr := testutil.NewContentRouter(vn, 100*time.Millisecond)
		others := newNodes(t, vn, 3) // 0 holds the blocks too, 1 and 2 nothing
		named := newNodes(t, vn, 1)[0]
		vp := vn.NewPeer()
		leech := &node{vp: vp, bs: blockstore.NewMemory()}
		leech.b = bitswap.New(context.Background(), vp, leech.bs, bitswap.WithContentRouting(cr.ForPeer(vp.Self())))
		defer closeAll(append(others, named, leech))
		blks := testutil.RandomBlocks(9, 20, 1000)
		for _, n := range []*node{others[0], named} {
			_ = n.bs.PutMany(context.Background(), blks)
		}
		for _, n := range others {
			if err := vn.ConnectPairs(leech.vp.Self(), n.vp.Self()); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(time.Millisecond)

		ctx := bitswap.WithProviders(context.Background(), peer.AddrInfo{ID: named.vp.Self()})
		fetch(t, ctx, leech.b, blks[:1]) // one want: no broadcast either
		fetch(t, ctx, leech.b, blks[1:])
		for i, n := range others {
			if got := vn.TrafficBetween(leech.vp.Self(), n.vp.Self()).Sent; got.Entries != 0 {
				t.Errorf("peer %d, not named, got %d wantlist entries", i, got.Entries)
			}
		}
		if q := cr.Queries(); len(q) != 0 {
			t.Errorf("content routing was asked %d times", len(q))
		}
		if !leech.vp.IsConnected(named.vp.Self()) {
			t.Error("the named peer was not dialled")
		}
	})
}

// Broadcast control among remote peers that have never served this node:
// a lone want is asked of at most BroadcastRandomPeers of them (3) and
// found through content routing; with control off every peer is asked.
// A peer named by WithBroadcastPeers is always asked.
func TestBroadcastControlAmongRemotePeers(t *testing.T) {
	for _, tc := range []struct {
		name    string
		opts    []bitswap.Option
		atMost  int // quiet peers asked anything
		atLeast int
	}{
		{"control on", nil, 3, 1},
		{"control off", []bitswap.Option{bitswap.WithBroadcastControl(false)}, 20, 20},
		{"no random peers", []bitswap.Option{bitswap.WithBroadcastRandomPeers(-1)}, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				vn := testutil.NewVirtualNetwork(testutil.WithLatency(oneWay), testutil.WithBandwidth(bandwidth))
				cr := testutil.NewContentRouter(vn, 100*time.Millisecond)
				quiet := newNodes(t, vn, 20)
				seed := newNodes(t, vn, 1)[0]
				vp := vn.NewPeer()
				leech := &node{vp: vp, bs: blockstore.NewMemory()}
				opts := append([]bitswap.Option{bitswap.WithContentRouting(cr.ForPeer(vp.Self()))}, tc.opts...)
				leech.b = bitswap.New(context.Background(), vp, leech.bs, opts...)
				all := append(append(quiet, seed), leech)
				defer closeAll(all)
				for _, n := range all {
					vn.SetRemote(n.vp.Self(), true)
				}
				vn.ConnectAll()
				blk := testutil.RandomBlocks(10, 1, 1000)[0]
				_ = seed.bs.Put(context.Background(), blk)
				cr.SetProviders(blk.Cid(), seed.vp.Self())
				time.Sleep(time.Millisecond)

				fetch(t, context.Background(), leech.b, []blocks.Block{blk})
				asked := 0
				for _, n := range quiet {
					if vn.TrafficBetween(leech.vp.Self(), n.vp.Self()).Sent.Entries > 0 {
						asked++
					}
				}
				t.Logf("%d of %d quiet peers asked", asked, len(quiet))
				if asked > tc.atMost || asked < tc.atLeast {
					t.Errorf("%d quiet peers asked, want %d to %d", asked, tc.atLeast, tc.atMost)
				}
			})
		})
	}
}

// A peer that has sent this node a block is proven, for every Session:
// the next request's want-block goes to it first, without a provider
// search. A peer named by WithBroadcastPeers is always asked.
func TestProvenAndNamedPeersAreAskedFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		vn := testutil.NewVirtualNetwork(testutil.WithLatency(oneWay), testutil.WithBandwidth(bandwidth))
		cr := testutil.NewContentRouter(vn, 100*time.Millisecond)
		quiet := newNodes(t, vn, 20)
		seed := newNodes(t, vn, 1)[0]
		vp := vn.NewPeer()
		leech := &node{vp: vp, bs: blockstore.NewMemory()}
		leech.b = bitswap.New(context.Background(), vp, leech.bs, bitswap.WithContentRouting(cr.ForPeer(vp.Self())),
			bitswap.WithBroadcastRandomPeers(-1), bitswap.WithBroadcastPeers(quiet[7].vp.Self()))
		all := append(append(quiet, seed), leech)
		defer closeAll(all)
		for _, n := range all {
			vn.SetRemote(n.vp.Self(), true)
		}
		vn.ConnectAll()
		blks := testutil.RandomBlocks(11, 2, 1000)
		_ = seed.bs.PutMany(context.Background(), blks)
		cr.SetProviders(blks[0].Cid(), seed.vp.Self())
		time.Sleep(time.Millisecond)

		first := fetch(t, context.Background(), leech.b, blks[:1])
		second := fetch(t, context.Background(), leech.b, blks[1:])
		t.Logf("first fetch (provider search) %v, second (the proven seed) %v", first, second)
		if q := cr.Queries(); len(q) != 1 {
			t.Errorf("%d provider searches, want 1 (the second request asks the proven seed)", len(q))
		}
		if second > 2*oneWay+time.Millisecond {
			t.Errorf("second fetch took %v, want one round trip", second)
		}
		for i, n := range quiet {
			got := vn.TrafficBetween(leech.vp.Self(), n.vp.Self()).Sent.Entries
			if (i == 7) != (got > 0) {
				t.Errorf("quiet peer %d got %d entries; only the named peer 7 is asked", i, got)
			}
		}
	})
}

package bitswap_test

import (
	"bytes"
	"context"
	"testing"
	"testing/synctest"
	"time"

	blocks "github.com/ipfs/go-block-format"
	cid "github.com/ipfs/go-cid"

	bitswap "github.com/gobitswap/bitswap"
	"github.com/gobitswap/bitswap/blockstore"
	"github.com/gobitswap/bitswap/testutil"
)

// Client scenarios on the virtual network, in virtual time: every number
// asserted here is deterministic.

type node struct {
	vp *testutil.VirtualPeer
	bs blockstore.Blockstore
	b  *bitswap.Bitswap
}

func newNodes(t *testing.T, vn *testutil.VirtualNetwork, n int, opts ...bitswap.Option) []*node {
	t.Helper()
	out := make([]*node, n)
	for i := range out {
		vp := vn.NewPeer()
		bs := blockstore.NewMemory()
		out[i] = &node{vp: vp, bs: bs, b: bitswap.New(context.Background(), vp, bs, opts...)}
	}
	return out
}

func closeAll(nodes []*node) {
	for _, n := range nodes {
		n.b.Close()
	}
}

// fetch gets cids through GetBlocks and checks every byte.
func fetch(t *testing.T, ctx context.Context, b *bitswap.Bitswap, want []blocks.Block) time.Duration {
	t.Helper()
	start := time.Now()
	keys := make([]cid.Cid, len(want))
	for i, blk := range want {
		keys[i] = blk.Cid()
	}
	ch, err := b.GetBlocks(ctx, keys)
	if err != nil {
		t.Fatal(err)
	}
	got := make(map[cid.Cid][]byte, len(want))
	for blk := range ch {
		got[blk.Cid()] = blk.RawData()
	}
	for _, blk := range want {
		if !bytes.Equal(got[blk.Cid()], blk.RawData()) {
			t.Fatalf("got %d of %d blocks; %s missing or different", len(got), len(want), blk.Cid())
		}
	}
	return time.Since(start)
}

const (
	oneWay    = 25 * time.Millisecond // 50 ms round trip
	bandwidth = 100_000_000 / 8       // 100 Mbit/s in bytes/s
)

func transferTime(bytes int) time.Duration {
	return time.Duration(float64(bytes) / bandwidth * float64(time.Second))
}

func TestOneSeedOneLeechTakesOneRoundTripPlusTransfer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		vn := testutil.NewVirtualNetwork(testutil.WithLatency(oneWay), testutil.WithBandwidth(bandwidth))
		nodes := newNodes(t, vn, 2)
		defer closeAll(nodes)
		vn.ConnectAll()
		seed, leech := nodes[0], nodes[1]
		blks := testutil.RandomBlocks(1, 1000, 16<<10)
		_ = seed.bs.PutMany(context.Background(), blks)
		time.Sleep(time.Millisecond) // let connection events settle

		took := fetch(t, context.Background(), leech.b, blks)
		bound := 2*oneWay + transferTime(1000*16<<10)
		t.Logf("1 seed → 1 leech, 1,000 × 16 KiB: %v (round trip + transfer = %v, ratio %.3f)", took, bound, float64(took)/float64(bound))
		if took > bound*12/10 {
			t.Fatalf("took %v, over 1.2 × %v", took, bound)
		}
		st, _ := leech.b.Stat()
		if st.DupBlksReceived != 0 {
			t.Fatalf("%d duplicate blocks from a single seed", st.DupBlksReceived)
		}
	})
}

func TestTenSeedsBeatOneWithFewDuplicates(t *testing.T) {
	run := func(seeds int) (time.Duration, uint64, uint64) {
		var took time.Duration
		var dups, blocksIn uint64
		synctest.Test(t, func(t *testing.T) {
			vn := testutil.NewVirtualNetwork(testutil.WithLatency(oneWay), testutil.WithBandwidth(bandwidth))
			nodes := newNodes(t, vn, seeds+1)
			defer closeAll(nodes)
			vn.ConnectAll()
			blks := testutil.RandomBlocks(2, 1000, 16<<10)
			for _, s := range nodes[:seeds] {
				_ = s.bs.PutMany(context.Background(), blks)
			}
			time.Sleep(time.Millisecond)
			leech := nodes[seeds]
			took = fetch(t, context.Background(), leech.b, blks)
			time.Sleep(time.Second) // let stragglers land, to count them
			st, _ := leech.b.Stat()
			dups, blocksIn = st.DupBlksReceived, st.BlocksReceived
			// What the virtual network carried to the leech agrees with Stat.
			tr := vn.TrafficTo(leech.vp.Self())
			if tr.Delivered.Blocks != st.BlocksReceived || tr.Delivered.BlockBytes != st.DataReceived {
				t.Fatalf("network delivered %d blocks / %d bytes, Stat says %d / %d",
					tr.Delivered.Blocks, tr.Delivered.BlockBytes, st.BlocksReceived, st.DataReceived)
			}
			if st.BlocksReceived != 1000+st.DupBlksReceived {
				t.Fatalf("Stat: %d received = 1000 + %d duplicates?", st.BlocksReceived, st.DupBlksReceived)
			}
		})
		return took, dups, blocksIn
	}
	one, _, _ := run(1)
	ten, dups, in := run(10)
	t.Logf("1 seed: %v; 10 seeds: %v, %d duplicates of %d blocks received", one, ten, dups, in)
	if ten >= one {
		t.Fatalf("10 seeds took %v, 1 seed %v", ten, one)
	}
	if dups*100 > 1000 {
		t.Fatalf("%d duplicate blocks, over 1%%", dups)
	}
}

func TestSilentSeedIsBypassed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		vn := testutil.NewVirtualNetwork(testutil.WithLatency(oneWay), testutil.WithBandwidth(bandwidth))
		nodes := newNodes(t, vn, 3)
		defer closeAll(nodes)
		vn.ConnectAll()
		blks := testutil.RandomBlocks(3, 200, 16<<10)
		for _, s := range nodes[:2] {
			_ = s.bs.PutMany(context.Background(), blks)
		}
		vn.SetUnresponsive(nodes[0].vp.Self(), true)
		time.Sleep(time.Millisecond)
		took := fetch(t, context.Background(), nodes[2].b, blks)
		limit := bitswap.DefaultPeerTimeout + 2*oneWay + transferTime(200*16<<10) + 500*time.Millisecond
		t.Logf("with one silent seed: %v (limit %v)", took, limit)
		if took > limit {
			t.Fatalf("took %v: the silent seed was not bypassed within its timeout", took)
		}
	})
}

func TestBlockFoundThroughContentRouting(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		vn := testutil.NewVirtualNetwork(testutil.WithLatency(oneWay))
		cr := testutil.NewContentRouter(vn, 100*time.Millisecond)
		nodes := newNodes(t, vn, 3)
		holder := nodes[0]
		vp := vn.NewPeer()
		leech := &node{vp: vp, bs: blockstore.NewMemory()}
		leech.b = bitswap.New(context.Background(), vp, leech.bs, bitswap.WithContentRouting(cr.ForPeer(vp.Self())))
		defer closeAll(append(nodes, leech))
		// The leech is connected to two peers that lack the block; the
		// holder is only known to content routing.
		_ = vn.ConnectPairs(leech.vp.Self(), nodes[1].vp.Self(), nodes[2].vp.Self())
		blk := testutil.RandomBlocks(4, 1, 1000)[0]
		_ = holder.bs.Put(context.Background(), blk)
		cr.SetProviders(blk.Cid(), holder.vp.Self())
		time.Sleep(time.Millisecond)

		took := fetch(t, context.Background(), leech.b, []blocks.Block{blk})
		t.Logf("found through content routing in %v", took)
		if len(cr.Queries()) == 0 {
			t.Fatal("content routing was never asked")
		}
		// Both connected peers say DONT_HAVE within a round trip, so the
		// search starts then rather than after the provider delay.
		if limit := 2*oneWay + 100*time.Millisecond + 2*2*oneWay + 50*time.Millisecond; took > limit {
			t.Fatalf("took %v, want at most %v", took, limit)
		}
	})
}

func TestSeedLeavingMidTransferDoesNotStall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		vn := testutil.NewVirtualNetwork(testutil.WithLatency(oneWay), testutil.WithBandwidth(bandwidth))
		nodes := newNodes(t, vn, 3)
		defer closeAll(nodes)
		vn.ConnectAll()
		blks := testutil.RandomBlocks(5, 400, 16<<10)
		for _, s := range nodes[:2] {
			_ = s.bs.PutMany(context.Background(), blks)
		}
		time.Sleep(time.Millisecond)
		// Half way through, one seed leaves for good.
		vn.ScheduleChurn(nodes[0].vp.Self(), transferTime(200*16<<10)/2, 0)
		took := fetch(t, context.Background(), nodes[2].b, blks)
		t.Logf("with a seed leaving mid-transfer: %v", took)
		if limit := 2*oneWay + transferTime(400*16<<10) + time.Second; took > limit {
			t.Fatalf("took %v, over %v", took, limit)
		}
	})
}

func TestCancelledFetchLeavesNoWants(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		vn := testutil.NewVirtualNetwork(testutil.WithLatency(oneWay), testutil.WithBandwidth(bandwidth))
		nodes := newNodes(t, vn, 3)
		defer closeAll(nodes)
		vn.ConnectAll()
		have := testutil.RandomBlocks(6, 100, 64<<10)
		_ = nodes[0].bs.PutMany(context.Background(), have)
		missing := testutil.RandomBlocks(7, 50, 100)
		leech := nodes[2]
		time.Sleep(time.Millisecond)

		ctx, cancel := context.WithCancel(context.Background())
		var keys []cid.Cid
		for _, b := range append(have, missing...) {
			keys = append(keys, b.Cid())
		}
		ch, err := leech.b.GetBlocks(ctx, keys)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
		cancel()
		n := 0
		for range ch {
			n++
		}
		time.Sleep(time.Second)
		synctest.Wait()
		t.Logf("%d blocks arrived before the cancel", n)
		for _, s := range nodes[:2] {
			if wl := s.b.WantlistForPeer(leech.vp.Self()); len(wl) != 0 {
				t.Fatalf("peer %s still holds %d of the leech's wants", s.vp.Self(), len(wl))
			}
		}
		if st, _ := leech.b.Stat(); len(st.Wantlist) != 0 || st.Sessions != 0 {
			t.Fatalf("leech still wants %d CIDs in %d sessions", len(st.Wantlist), st.Sessions)
		}
	})
}

func TestHundredPeersThreeHolders(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		vn := testutil.NewVirtualNetwork(testutil.WithLatency(oneWay), testutil.WithBandwidth(bandwidth))
		nodes := newNodes(t, vn, 101)
		defer closeAll(nodes)
		vn.ConnectAll()
		blks := testutil.RandomBlocks(8, 500, 16<<10)
		for _, s := range nodes[:3] {
			_ = s.bs.PutMany(context.Background(), blks)
		}
		time.Sleep(time.Millisecond)
		leech := nodes[100]
		before := vn.TrafficFrom(leech.vp.Self()).Sent
		took := fetch(t, context.Background(), leech.b, blks)
		after := vn.TrafficFrom(leech.vp.Self()).Sent
		msgs := after.Messages - before.Messages
		perBlock := float64(msgs) / float64(len(blks))
		st, _ := leech.b.Stat()
		t.Logf("100 peers, 3 holders, 500 blocks: %v, %d wantlist messages (%.2f per block), %d entries (%d want-block, %d want-have, %d cancel), %d duplicates",
			took, msgs, perBlock, after.Entries-before.Entries, after.WantBlocks-before.WantBlocks, after.WantHaves-before.WantHaves,
			after.Cancels-before.Cancels, st.DupBlksReceived)
		if perBlock > 1 {
			t.Fatalf("%.2f wantlist messages per block fetched, want at most 1", perBlock)
		}
	})
}

// The timeout of a silent peer runs while other peers keep delivering: its
// wants move after its timeout, not after the others finish.
func TestSilentSeedTimesOutWhileAnotherStreams(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		vn := testutil.NewVirtualNetwork(testutil.WithLatency(oneWay), testutil.WithBandwidth(bandwidth))
		nodes := newNodes(t, vn, 3)
		defer closeAll(nodes)
		vn.ConnectAll()
		blks := testutil.RandomBlocks(9, 2000, 16<<10) // 2.6 s of transfer from one seed
		for _, s := range nodes[:2] {
			_ = s.bs.PutMany(context.Background(), blks)
		}
		silent := nodes[0].vp.Self()
		vn.SetUnresponsive(silent, true)
		time.Sleep(time.Millisecond)
		done := make(chan time.Duration)
		go func() { done <- fetch(t, context.Background(), nodes[2].b, blks) }()
		time.Sleep(bitswap.DefaultPeerTimeout + 300*time.Millisecond)
		if c := vn.TrafficTo(silent).Sent.Cancels; c == 0 {
			t.Fatalf("%v in, the silent seed's wants were not moved while the other seed streamed", bitswap.DefaultPeerTimeout+300*time.Millisecond)
		}
		t.Logf("silent seed bypassed during a 2,000-block stream; fetch took %v", <-done)
	})
}

package testutil_test

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/gobitswap/bitswap/message"
	"github.com/gobitswap/bitswap/testutil"
	blocks "github.com/ipfs/go-block-format"
	"github.com/libp2p/go-libp2p/core/peer"
)

// everything is a message with something of every kind: blocks of 100 and
// 300 bytes, two want-blocks, a want-have, a cancel, two HAVEs and a
// DONT_HAVE, as a full wantlist.
func everything() *message.Message {
	bls := testutil.MixedBlocks(1, 2, 100, 300)
	cs := cids(testutil.RandomBlocks(2, 4, 10))
	return &message.Message{
		Full: true,
		Wantlist: []message.Entry{
			{Cid: cs[0], Priority: 1, WantType: message.WantBlock},
			{Cid: cs[1], Priority: 2, WantType: message.WantBlock, SendDontHave: true},
			{Cid: cs[2], Priority: 3, WantType: message.WantHave},
			{Cid: cs[3], Cancel: true},
		},
		Blocks: bls,
		BlockPresences: []message.BlockPresence{
			{Cid: cs[0], Type: message.Have},
			{Cid: cs[1], Type: message.Have},
			{Cid: cs[2], Type: message.DontHave},
		},
	}
}

func TestTrafficCountsWhatTheFramesCarryAfterDowngrade(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		vn := testutil.NewVirtualNetwork(testutil.WithLatency(time.Millisecond))
		defer vn.Close()
		a, b := vn.NewPeer(), vn.NewPeer()
		old := vn.NewPeer(testutil.WithVersion(message.V110))
		for _, p := range []*testutil.VirtualPeer{a, b, old} {
			p.Start(newRecorder(nil))
		}
		msg := everything()
		send(t, a, b.Self(), msg)
		send(t, a, old.Self(), msg)
		time.Sleep(time.Second)

		want := testutil.Counts{
			Messages: 1, Bytes: uint64(frameLen(msg, message.V120)),
			Blocks: 2, BlockBytes: 400,
			Entries: 4, WantBlocks: 2, WantHaves: 1, Cancels: 1,
			Haves: 2, DontHaves: 1, FullWantlists: 1,
		}
		if got := vn.TrafficBetween(a.Self(), b.Self()); got.Sent != want || got.Delivered != want {
			t.Errorf("A→B traffic = %+v, want sent and delivered %+v", got, want)
		}
		// 1.1.0 carries neither want-haves nor presences.
		want110 := testutil.Counts{
			Messages: 1, Bytes: uint64(frameLen(msg, message.V110)),
			Blocks: 2, BlockBytes: 400,
			Entries: 3, WantBlocks: 2, Cancels: 1, FullWantlists: 1,
		}
		if got := vn.TrafficBetween(a.Self(), old.Self()); got.Sent != want110 || got.Delivered != want110 {
			t.Errorf("A→old traffic = %+v, want sent and delivered %+v", got, want110)
		}
		if got := vn.TrafficBetween(b.Self(), a.Self()); got != (testutil.Traffic{}) {
			t.Errorf("B→A traffic = %+v, want none", got)
		}
		total := vn.Traffic()
		if total.Sent.Messages != 2 || total.Sent.Blocks != 4 || total.Sent.BlockBytes != 800 ||
			total.Sent.Bytes != want.Bytes+want110.Bytes {
			t.Errorf("total traffic = %+v", total)
		}
	})
}

// TestTrafficAgreesWithEachPeersStats is the check other packages rely on:
// per peer, what the network says it carried matches the peer's Stats, with
// and without loss.
func TestTrafficAgreesWithEachPeersStats(t *testing.T) {
	for _, loss := range []float64{0, 0.3} {
		synctest.Test(t, func(t *testing.T) {
			vn := testutil.NewVirtualNetwork(testutil.WithLatency(5*time.Millisecond),
				testutil.WithBandwidth(1<<20), testutil.WithLoss(loss), testutil.WithSeed(11))
			defer vn.Close()
			ps := testutil.NewSwarm(vn, 4)
			for _, p := range ps {
				p.Start(newRecorder(nil))
			}
			bls := testutil.MixedBlocks(5, 40, 10, 5000)
			for i, blk := range bls {
				from, to := ps[i%4], ps[(i*7+1)%4]
				if from == to {
					to = ps[(i+1)%4]
				}
				send(t, from, to.Self(), &message.Message{Blocks: []blocks.Block{blk}})
			}
			time.Sleep(time.Minute)

			var sum testutil.Traffic
			for _, p := range ps {
				st := p.Stats()
				from, to := vn.TrafficFrom(p.Self()), vn.TrafficTo(p.Self())
				if from.Sent.Messages != st.MessagesSent || from.Sent.Bytes != st.BytesSent {
					t.Errorf("loss %v, %s: TrafficFrom.Sent = %+v, Stats = %+v", loss, p, from.Sent, st)
				}
				if to.Delivered.Messages != st.MessagesReceived || to.Delivered.Bytes != st.BytesReceived {
					t.Errorf("loss %v, %s: TrafficTo.Delivered = %+v, Stats = %+v", loss, p, to.Delivered, st)
				}
				sum.Sent.Messages += from.Sent.Messages
				sum.Delivered.Blocks += to.Delivered.Blocks
				sum.Dropped += to.Dropped
			}
			total := vn.Traffic()
			checkFates(t, total)
			if sum.Sent.Messages != total.Sent.Messages || sum.Delivered.Blocks != total.Delivered.Blocks ||
				sum.Dropped != total.Dropped {
				t.Errorf("loss %v: per-peer traffic %+v does not add up to the total %+v", loss, sum, total)
			}
			if total.Sent.Blocks != uint64(len(bls)) {
				t.Errorf("loss %v: %d blocks sent, want %d", loss, total.Sent.Blocks, len(bls))
			}
			if (loss == 0) != (total.Dropped == 0) || total.Delivered.Blocks+total.Dropped != uint64(len(bls)) {
				t.Errorf("loss %v: %d delivered and %d dropped of %d", loss, total.Delivered.Blocks, total.Dropped, len(bls))
			}
		})
	}
}

func TestTrafficCountsMessagesCutOffByStop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		vn := testutil.NewVirtualNetwork(testutil.WithLatency(time.Second))
		defer vn.Close()
		a, b, _, _ := pair(vn)
		notStarted := vn.NewPeer()
		for i := range 3 {
			send(t, a, b.Self(), numbered(i))
		}
		send(t, a, notStarted.Self(), numbered(0)) // queued for a peer never started
		b.Stop()
		notStarted.Stop()
		tr := vn.Traffic()
		checkFates(t, tr)
		if tr.Aborted != 4 {
			t.Errorf("Traffic = %+v, want 4 aborted", tr)
		}
		if got := vn.TrafficBetween(a.Self(), peer.ID("nobody")); got != (testutil.Traffic{}) {
			t.Errorf("traffic to an unknown peer = %+v", got)
		}
	})
}

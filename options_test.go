package bitswap_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	blocks "github.com/ipfs/go-block-format"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/routing"

	bitswap "github.com/gobitswap/bitswap"
	"github.com/gobitswap/bitswap/blockstore"
	"github.com/gobitswap/bitswap/message"
	"github.com/gobitswap/bitswap/testutil"
)

// A client-only node answers nothing, not even DONT_HAVE for what it lacks
// or the block it has, and still fetches.
func TestServerDisabledAnswersNothingAndStillFetches(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		vn := testutil.NewVirtualNetwork(testutil.WithLatency(oneWay))
		seed := newNodes(t, vn, 1)[0]
		vp := vn.NewPeer()
		quiet := &node{vp: vp, bs: blockstore.NewMemory()}
		quiet.b = bitswap.New(context.Background(), vp, quiet.bs, bitswap.WithServerEnabled(false))
		asker := vn.NewPeer()
		in := &inbox{}
		asker.Start(in)
		defer asker.Stop()
		defer closeAll([]*node{seed, quiet})
		vn.ConnectAll()

		ctx := context.Background()
		has, lacks := blocks.NewBlock([]byte("the quiet node has this")), blocks.NewBlock([]byte("nobody has this"))
		_ = quiet.bs.Put(ctx, has)
		_ = quiet.b.NotifyNewBlocks(ctx, has)
		_ = asker.SendMessage(ctx, quiet.vp.Self(), &message.Message{Wantlist: []message.Entry{
			{Cid: has.Cid(), WantType: message.WantBlock, SendDontHave: true},
			{Cid: lacks.Cid(), WantType: message.WantHave, SendDontHave: true},
		}})
		time.Sleep(time.Second)
		synctest.Wait()
		if got := in.received(); len(got) != 0 {
			t.Fatalf("the client-only node answered %d messages; want none", len(got))
		}
		if wl := quiet.b.WantlistForPeer(asker.Self()); len(wl) != 0 {
			t.Fatalf("the client-only node holds %d wants of a peer", len(wl))
		}
		st, _ := quiet.b.Stat()
		if st.BlocksSent != 0 || st.Server.Peers != 0 || st.Network.MessagesSent != 0 {
			t.Fatalf("server counters: %d blocks sent, %d peers, %d messages sent; want 0",
				st.BlocksSent, st.Server.Peers, st.Network.MessagesSent)
		}

		want := testutil.RandomBlocks(7, 20, 1000)
		_ = seed.bs.PutMany(ctx, want)
		fetch(t, ctx, quiet.b, want)
	})
}

// discoveryOnly is content routing that can only find providers:
// WithContentRouting asks for nothing more.
type discoveryOnly struct{ routing.ContentDiscovery }

func TestContentRoutingNeedsOnlyDiscovery(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		vn := testutil.NewVirtualNetwork(testutil.WithLatency(oneWay))
		cr := testutil.NewContentRouter(vn, 100*time.Millisecond)
		holder := newNodes(t, vn, 1)[0]
		vp := vn.NewPeer()
		leech := &node{vp: vp, bs: blockstore.NewMemory()}
		leech.b = bitswap.New(context.Background(), vp, leech.bs,
			bitswap.WithContentRouting(discoveryOnly{cr.ForPeer(vp.Self())}))
		defer closeAll([]*node{holder, leech})
		blk := testutil.RandomBlocks(8, 1, 1000)[0]
		_ = holder.bs.Put(context.Background(), blk)
		cr.SetProviders(blk.Cid(), holder.vp.Self())
		fetch(t, context.Background(), leech.b, []blocks.Block{blk})
	})
}

// The block-received notifier hears each block from the peer that sent it,
// with how long it was wanted: at least the round trip, at most the fetch.
func TestBlockReceivedNotifierTellsSenderAndDelay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		vn := testutil.NewVirtualNetwork(testutil.WithLatency(oneWay), testutil.WithBandwidth(bandwidth))
		seeds := newNodes(t, vn, 2)
		var mu sync.Mutex
		from := map[string]peer.ID{}
		delays := map[string]time.Duration{}
		vp := vn.NewPeer()
		leech := &node{vp: vp, bs: blockstore.NewMemory()}
		leech.b = bitswap.New(context.Background(), vp, leech.bs,
			bitswap.WithBlockReceivedNotifier(func(p peer.ID, blks []bitswap.ReceivedBlock) {
				mu.Lock()
				defer mu.Unlock()
				for _, b := range blks {
					from[b.Cid().KeyString()] = p
					delays[b.Cid().KeyString()] = b.Delay
				}
			}))
		defer closeAll(append(seeds, leech))
		vn.ConnectAll()
		ctx := context.Background()
		a, b := testutil.RandomBlocks(9, 10, 10_000), testutil.RandomBlocks(10, 10, 10_000)
		_ = seeds[0].bs.PutMany(ctx, a)
		_ = seeds[1].bs.PutMany(ctx, b)
		time.Sleep(time.Millisecond)

		took := fetch(t, ctx, leech.b, append(append([]blocks.Block{}, a...), b...))
		mu.Lock()
		defer mu.Unlock()
		for i, set := range [][]blocks.Block{a, b} {
			for _, blk := range set {
				k := blk.Cid().KeyString()
				if from[k] != seeds[i].vp.Self() {
					t.Fatalf("block %s: notified as from %s, want seed %d (%s)", blk.Cid(), from[k], i, seeds[i].vp.Self())
				}
				if d := delays[k]; d < 2*oneWay || d > took {
					t.Fatalf("block %s: delay %v, want between the round trip %v and the fetch's %v", blk.Cid(), d, 2*oneWay, took)
				}
			}
		}
	})
}

// tracer counts the messages it sees, per peer and direction.
type tracer struct {
	mu             sync.Mutex
	sent, received map[peer.ID]int
	blocksSent     int
}

func (t *tracer) MessageReceived(p peer.ID, _ *message.Message) {
	t.mu.Lock()
	t.received[p]++
	t.mu.Unlock()
}

func (t *tracer) MessageSent(p peer.ID, m *message.Message) {
	t.mu.Lock()
	t.sent[p]++
	t.blocksSent += len(m.Blocks)
	t.mu.Unlock()
}

// The tracer sees every message the node sends (client wants and server
// answers alike) and receives, as the network counts them.
func TestTracerSeesEveryMessage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		vn := testutil.NewVirtualNetwork(testutil.WithLatency(oneWay))
		tr := &tracer{sent: map[peer.ID]int{}, received: map[peer.ID]int{}}
		other := newNodes(t, vn, 1)[0]
		vp := vn.NewPeer()
		traced := &node{vp: vp, bs: blockstore.NewMemory()}
		traced.b = bitswap.New(context.Background(), vp, traced.bs, bitswap.WithTracer(tr))
		defer closeAll([]*node{other, traced})
		vn.ConnectAll()
		ctx := context.Background()
		theirs, ours := testutil.RandomBlocks(11, 20, 1000), testutil.RandomBlocks(12, 30, 1000)
		_ = other.bs.PutMany(ctx, theirs)
		_ = traced.bs.PutMany(ctx, ours)
		fetch(t, ctx, traced.b, theirs) // traced as client
		fetch(t, ctx, other.b, ours)    // traced as server
		time.Sleep(time.Second)
		synctest.Wait()

		st, _ := traced.b.Stat()
		tr.mu.Lock()
		defer tr.mu.Unlock()
		p := other.vp.Self()
		if tr.sent[p] == 0 || tr.received[p] == 0 || len(tr.sent) != 1 || len(tr.received) != 1 {
			t.Fatalf("traced %v sent, %v received; want messages both ways with %s only", tr.sent, tr.received, p)
		}
		if uint64(tr.sent[p]) != st.Network.MessagesSent || uint64(tr.received[p]) != st.MessagesReceived {
			t.Fatalf("traced %d sent / %d received; the node counted %d / %d",
				tr.sent[p], tr.received[p], st.Network.MessagesSent, st.MessagesReceived)
		}
		if tr.blocksSent != len(ours) {
			t.Fatalf("traced %d blocks sent, want %d", tr.blocksSent, len(ours))
		}
	})
}

// A request waiting for a block ends when the application stores it and
// calls NotifyNewBlocks, as with boxo (its blockservice's AddBlock does
// so), and the peers asked for it are told to cancel.
func TestNotifyNewBlocksEndsOurOwnRequests(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		vn := testutil.NewVirtualNetwork(testutil.WithLatency(oneWay))
		n := newNodes(t, vn, 1)[0]
		defer n.b.Close()
		asked := vn.NewPeer()
		in := &inbox{}
		asked.Start(in)
		defer asked.Stop()
		vn.ConnectAll()
		ctx := context.Background()
		blk := blocks.NewBlock([]byte("added by the application"))
		done := make(chan error, 1)
		go func() {
			got, err := n.b.GetBlock(ctx, blk.Cid())
			if err == nil && !got.Cid().Equals(blk.Cid()) {
				err = fmt.Errorf("got %s", got.Cid())
			}
			done <- err
		}()
		time.Sleep(time.Second) // asked the peer, which stays silent
		synctest.Wait()
		// Our own wantlist, as boxo's WantlistForPeer(self) gives it.
		if wl := n.b.WantlistForPeer(n.vp.Self()); len(wl) != 1 || !wl[0].Equals(blk.Cid()) {
			t.Fatalf("WantlistForPeer(self) = %v, want [%s]", wl, blk.Cid())
		}
		_ = n.bs.Put(ctx, blk)
		_ = n.b.NotifyNewBlocks(ctx, blk)
		synctest.Wait()
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		default:
			t.Fatal("GetBlock still waits after NotifyNewBlocks")
		}
		time.Sleep(time.Second)
		synctest.Wait()
		var wanted, cancelled bool
		for _, m := range in.received() {
			for _, e := range m.Wantlist {
				if e.Cid.Equals(blk.Cid()) {
					wanted = wanted || !e.Cancel
					cancelled = cancelled || e.Cancel
				}
			}
		}
		if !wanted || !cancelled {
			t.Fatalf("the peer was asked %v, told to cancel %v; want both", wanted, cancelled)
		}
		if st, _ := n.b.Stat(); st.BlocksReceived != 0 {
			t.Fatalf("%d blocks counted as received", st.BlocksReceived)
		}
	})
}

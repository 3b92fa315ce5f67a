package boxocompat_test

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	bsmsg "github.com/ipfs/boxo/bitswap/message"
	"github.com/ipfs/boxo/blockservice"
	"github.com/ipfs/boxo/exchange"
	blocks "github.com/ipfs/go-block-format"
	cid "github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	"go.uber.org/goleak"

	bitswap "github.com/gobitswap/bitswap"
	"github.com/gobitswap/bitswap/blockstore"
	"github.com/gobitswap/bitswap/boxocompat"
	"github.com/gobitswap/bitswap/session"
	"github.com/gobitswap/bitswap/testutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// node is our Bitswap on a virtual peer.
type node struct {
	vp *testutil.VirtualPeer
	bs blockstore.Blockstore
	b  *bitswap.Bitswap
}

func newNode(vn *testutil.VirtualNetwork, opts ...bitswap.Option) *node {
	vp := vn.NewPeer()
	bs := blockstore.NewMemory()
	return &node{vp: vp, bs: bs, b: bitswap.New(context.Background(), vp, bs, opts...)}
}

func cidsOf(blks []blocks.Block) []cid.Cid {
	out := make([]cid.Cid, len(blks))
	for i, b := range blks {
		out[i] = b.Cid()
	}
	return out
}

// checkAll fails unless ch brings exactly want, byte for byte.
func checkAll(t *testing.T, ch <-chan blocks.Block, want []blocks.Block) {
	t.Helper()
	got := map[cid.Cid][]byte{}
	for b := range ch {
		got[b.Cid()] = b.RawData()
	}
	for _, b := range want {
		if !bytes.Equal(got[b.Cid()], b.RawData()) {
			t.Fatalf("got %d of %d blocks; %s missing or different", len(got), len(want), b.Cid())
		}
	}
}

var _ exchange.SessionExchange = boxocompat.Exchange(nil)

// A blockservice Session over Exchange fetches through one of our
// Sessions, which ends with the Session's context.
func TestBlockserviceSessionIsOneOfOurSessions(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		vn := testutil.NewVirtualNetwork(testutil.WithLatency(10 * time.Millisecond))
		seed, client := newNode(vn), newNode(vn)
		vn.ConnectAll()
		bserv := blockservice.New(client.bs, boxocompat.Exchange(client.b))
		defer seed.b.Close()
		defer bserv.Close() // closes client.b

		ex := bserv.Exchange().(exchange.SessionExchange)
		sctx, end := context.WithCancel(context.Background())
		if _, ok := ex.NewSession(sctx).(*session.Session); !ok {
			t.Fatal("NewSession is not backed by one of our Sessions")
		}
		end()
		synctest.Wait()
		if st, _ := client.b.Stat(); st.Sessions != 0 {
			t.Fatalf("%d Sessions run after their context ended", st.Sessions)
		}

		want := testutil.RandomBlocks(1, 50, 1000)
		_ = seed.bs.PutMany(context.Background(), want)
		sctx, end = context.WithCancel(context.Background())
		defer end()
		ses := blockservice.NewSession(sctx, bserv)
		checkAll(t, ses.GetBlocks(sctx, cidsOf(want[:25])), want[:25])
		checkAll(t, ses.GetBlocks(sctx, cidsOf(want[25:])), want[25:])
		if st, _ := client.b.Stat(); st.Sessions != 1 {
			t.Fatalf("%d Sessions running; want the blockservice Session's one", st.Sessions)
		}
		end()
		synctest.Wait()
		if st, _ := client.b.Stat(); st.Sessions != 0 {
			t.Fatalf("%d Sessions run after the blockservice Session's context ended", st.Sessions)
		}
	})
}

// Exchange(nil) is no exchange: the blockservice is offline.
func TestExchangeOfNilIsOffline(t *testing.T) {
	if ex := boxocompat.Exchange(nil); ex != nil {
		t.Fatalf("Exchange(nil) = %v, want nil", ex)
	}
	bs := blockstore.NewMemory()
	bserv := blockservice.New(bs, boxocompat.Exchange(nil))
	if bserv.Exchange() != nil {
		t.Fatal("the blockservice has an exchange")
	}
	missing := blocks.NewBlock([]byte("nowhere"))
	if _, err := bserv.GetBlock(context.Background(), missing.Cid()); err == nil {
		t.Fatal("an offline blockservice found a block it lacks")
	}
}

// receivedBlocks is a boxo client.BlockReceivedNotifier.
type receivedBlocks struct {
	mu   sync.Mutex
	from map[cid.Cid]peer.ID
}

func (r *receivedBlocks) ReceivedBlocks(p peer.ID, blks []blocks.Block) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, b := range blks {
		r.from[b.Cid()] = p
	}
}

// boxoTracer is a boxo tracer.Tracer: it keeps every message.
type boxoTracer struct {
	mu             sync.Mutex
	sent, received []bsmsg.BitSwapMessage
}

func (t *boxoTracer) MessageReceived(_ peer.ID, m bsmsg.BitSwapMessage) {
	t.mu.Lock()
	t.received = append(t.received, m)
	t.mu.Unlock()
}

func (t *boxoTracer) MessageSent(_ peer.ID, m bsmsg.BitSwapMessage) {
	t.mu.Lock()
	t.sent = append(t.sent, m)
	t.mu.Unlock()
}

// boxo's notifier and tracer, through the adapters, hear what boxo's
// would: the blocks and their sender; our wants and the blocks that came.
func TestBoxoNotifierAndTracer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		vn := testutil.NewVirtualNetwork(testutil.WithLatency(10 * time.Millisecond))
		rec := &receivedBlocks{from: map[cid.Cid]peer.ID{}}
		tr := &boxoTracer{}
		seed := newNode(vn)
		client := newNode(vn, boxocompat.BlockReceivedNotifier(rec), boxocompat.Tracer(tr))
		defer client.b.Close()
		defer seed.b.Close()
		vn.ConnectAll()
		want := testutil.RandomBlocks(2, 20, 1000)
		ctx := context.Background()
		_ = seed.bs.PutMany(ctx, want)
		checkAll(t, mustGet(t, client.b, want), want)
		time.Sleep(time.Second)
		synctest.Wait()

		rec.mu.Lock()
		defer rec.mu.Unlock()
		for _, b := range want {
			if rec.from[b.Cid()] != seed.vp.Self() {
				t.Fatalf("block %s: notified from %q, want the seed", b.Cid(), rec.from[b.Cid()])
			}
		}
		tr.mu.Lock()
		defer tr.mu.Unlock()
		wanted, came := map[cid.Cid]bool{}, map[cid.Cid]bool{}
		for _, m := range tr.sent {
			for _, e := range m.Wantlist() {
				if !e.Cancel {
					wanted[e.Cid] = true
				}
			}
		}
		for _, m := range tr.received {
			for _, b := range m.Blocks() {
				came[b.Cid()] = true
			}
		}
		for _, b := range want {
			if !wanted[b.Cid()] || !came[b.Cid()] {
				t.Fatalf("block %s: traced as wanted %v, received %v", b.Cid(), wanted[b.Cid()], came[b.Cid()])
			}
		}
	})
}

func mustGet(t *testing.T, b *bitswap.Bitswap, want []blocks.Block) <-chan blocks.Block {
	t.Helper()
	ch, err := b.GetBlocks(context.Background(), cidsOf(want))
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

package bitswap_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	blocks "github.com/ipfs/go-block-format"
	cid "github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	bitswap "github.com/gobitswap/bitswap"
	"github.com/gobitswap/bitswap/blockstore"
	"github.com/gobitswap/bitswap/message"
	"github.com/gobitswap/bitswap/testutil"
)

// One GetBlocks call, whose blocks only a provider found through content
// routing has, leaves this span tree in an in-memory exporter, with boxo's
// names:
//
//	test
//	└── Bitswap.Client.GetBlocks {NumKeys}
//	    ├── Bitswap.Client.Session {ID}
//	    │   └── Bitswap.Client.Session.FindMorePeers {cid}, events FoundPeer
//	    └── Bitswap.Client.Session.GetBlocks {NumKeys}
//	        └── Bitswap.Client.Getter.handleIncoming, a "received block" event per block
func TestGetBlocksSpanTree(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		exp := tracetest.NewInMemoryExporter()
		tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
		defer func() { _ = tp.Shutdown(context.Background()) }()

		vn := testutil.NewVirtualNetwork(testutil.WithLatency(oneWay))
		cr := testutil.NewContentRouter(vn, 50*time.Millisecond)
		nodes := newNodes(t, vn, 2)
		holder, other := nodes[0], nodes[1]
		vp := vn.NewPeer()
		leech := &node{vp: vp, bs: blockstore.NewMemory()}
		leech.b = bitswap.New(context.Background(), vp, leech.bs,
			bitswap.WithContentRouting(cr.ForPeer(vp.Self())), bitswap.WithTracerProvider(tp))
		defer closeAll(nodes)
		// The leech knows only a peer that lacks the blocks.
		_ = vn.ConnectPairs(leech.vp.Self(), other.vp.Self())
		blks := testutil.RandomBlocks(5, 3, 1000)
		_ = holder.bs.PutMany(context.Background(), blks)
		for _, b := range blks {
			cr.SetProviders(b.Cid(), holder.vp.Self())
		}
		time.Sleep(time.Millisecond)

		ctx, root := tp.Tracer("test").Start(context.Background(), "test")
		fetch(t, ctx, leech.b, blks)
		root.End()
		leech.b.Close() // ends the one-off Session's span, if not yet ended

		spans := exp.GetSpans()
		byName := make(map[string][]tracetest.SpanStub)
		for _, s := range spans {
			byName[s.Name] = append(byName[s.Name], s)
			if s.SpanContext.TraceID() != root.SpanContext().TraceID() {
				t.Errorf("span %s is in trace %s, not the test's", s.Name, s.SpanContext.TraceID())
			}
			if s.InstrumentationScope.Name != bitswap.TracerName && s.Name != "test" {
				t.Errorf("span %s has scope %q, want %q", s.Name, s.InstrumentationScope.Name, bitswap.TracerName)
			}
		}
		one := func(name string) tracetest.SpanStub {
			t.Helper()
			if len(byName[name]) != 1 {
				t.Fatalf("%d spans %q, want 1; spans: %v", len(byName[name]), name, names(spans))
			}
			return byName[name][0]
		}
		childOf := func(s, parent tracetest.SpanStub) {
			t.Helper()
			if s.Parent.SpanID() != parent.SpanContext.SpanID() {
				t.Errorf("%s's parent is %s, want %s (%s)", s.Name, s.Parent.SpanID(), parent.Name, parent.SpanContext.SpanID())
			}
		}
		testSpan := one("test")
		getBlocks := one("Bitswap.Client.GetBlocks")
		sess := one("Bitswap.Client.Session")
		sessGet := one("Bitswap.Client.Session.GetBlocks")
		incoming := one("Bitswap.Client.Getter.handleIncoming")
		childOf(getBlocks, testSpan)
		childOf(sess, getBlocks)
		childOf(sessGet, getBlocks)
		childOf(incoming, sessGet)
		if v, ok := attr(getBlocks, "NumKeys"); !ok || v.AsInt64() != int64(len(blks)) {
			t.Errorf("GetBlocks' NumKeys = %v, want %d", v.Emit(), len(blks))
		}
		if _, ok := attr(sess, "ID"); !ok {
			t.Error("the Session's span has no ID")
		}
		searches := byName["Bitswap.Client.Session.FindMorePeers"]
		if len(searches) == 0 {
			t.Fatalf("no provider search span; spans: %v", names(spans))
		}
		for _, s := range searches {
			childOf(s, sess)
			if !slices.ContainsFunc(s.Events, func(e sdktrace.Event) bool { return e.Name == "FoundPeer" }) {
				t.Errorf("provider search %v found no peer", s.Attributes)
			}
		}
		var received []string
		for _, e := range incoming.Events {
			if e.Name == "received block" {
				for _, a := range e.Attributes {
					if a.Key == "cid" {
						received = append(received, a.Value.AsString())
					}
				}
			}
		}
		var want []string
		for _, b := range blks {
			want = append(want, b.Cid().String())
		}
		slices.Sort(received)
		slices.Sort(want)
		if !slices.Equal(received, want) {
			t.Errorf("received block events for %v, want %v", received, want)
		}
		if len(spans) != 5+len(searches) {
			t.Errorf("spans: %v; want exactly the tree above", names(spans))
		}
	})
}

func names(spans tracetest.SpanStubs) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name)
	}
	return out
}

func attr(s tracetest.SpanStub, key attribute.Key) (attribute.Value, bool) {
	for _, a := range s.Attributes {
		if a.Key == key {
			return a.Value, true
		}
	}
	return attribute.Value{}, false
}

// probeStore is a blockstore that notes the span in the context of each
// Get: the Session's, when the Session looks for a block locally.
type probeStore struct {
	blockstore.Blockstore
	mu   sync.Mutex
	seen []trace.SpanContext
}

func (p *probeStore) Get(ctx context.Context, c cid.Cid) (blocks.Block, error) {
	p.mu.Lock()
	p.seen = append(p.seen, trace.SpanContextFromContext(ctx))
	p.mu.Unlock()
	return p.Blockstore.Get(ctx, c)
}

// Without a provider of its own, Bitswap traces to the global one, which
// records nothing until the application sets one. With one, the Session's
// span is in the context of what it calls: its blockstore reads.
func TestSessionSpanReachesTheBlockstoreAndIsANoOpByDefault(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		exp := tracetest.NewInMemoryExporter()
		tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
		defer func() { _ = tp.Shutdown(context.Background()) }()
		vn := testutil.NewVirtualNetwork()
		blk := testutil.RandomBlocks(6, 1, 100)[0]
		for _, opts := range [][]bitswap.Option{nil, {bitswap.WithTracerProvider(tp)}} {
			ps := &probeStore{Blockstore: blockstore.NewMemory()}
			_ = ps.Put(context.Background(), blk)
			b := bitswap.New(context.Background(), vn.NewPeer(), ps, opts...)
			if _, err := b.GetBlock(context.Background(), blk.Cid()); err != nil {
				t.Fatal(err)
			}
			b.Close()
			if len(ps.seen) != 1 {
				t.Fatalf("%d blockstore reads, want 1", len(ps.seen))
			}
			if opts == nil {
				if ps.seen[0].IsValid() {
					t.Fatal("a span without a tracer provider")
				}
				continue
			}
			var sess []tracetest.SpanStub
			for _, s := range exp.GetSpans() {
				if s.Name == "Bitswap.Client.Session" {
					sess = append(sess, s)
				}
			}
			if len(sess) != 1 || ps.seen[0].SpanID() != sess[0].SpanContext.SpanID() {
				t.Fatalf("the blockstore read in span %s, want the Session's (%v)", ps.seen[0].SpanID(), sess)
			}
		}
	})
}

// Observers hear of every message, block and send queue, next to the
// Tracer and the block-received notifier, which keep working.
func TestObserversTracerAndNotifierAllHear(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		vn := testutil.NewVirtualNetwork(testutil.WithLatency(oneWay))
		var mu sync.Mutex
		var (
			received, sent, blocksHeard, served, notified, traced int
			took                                                  time.Duration
			waiting                                               []int
		)
		count := func(p *int) { mu.Lock(); *p++; mu.Unlock() }
		obs := bitswap.Observer{
			MessageReceived: func(peer.ID, *message.Message) { count(&received) },
			MessageSent: func(_ peer.ID, _ *message.Message, d time.Duration) {
				mu.Lock()
				sent++
				took += d
				mu.Unlock()
			},
			BlocksReceived: func(_ peer.ID, bs []bitswap.ReceivedBlock) { mu.Lock(); blocksHeard += len(bs); mu.Unlock() },
			WantsWaiting:   func(_ peer.ID, n int) { mu.Lock(); waiting = append(waiting, n); mu.Unlock() },
		}
		second := bitswap.Observer{MessageReceived: func(peer.ID, *message.Message) { count(&served) }}
		nodes := newNodes(t, vn, 1)
		vp := vn.NewPeer()
		leech := &node{vp: vp, bs: blockstore.NewMemory()}
		leech.b = bitswap.New(context.Background(), vp, leech.bs,
			bitswap.WithObserver(obs), bitswap.WithObserver(second), bitswap.WithPeerWantWindow(4),
			bitswap.WithTracer(tracerFunc(func() { count(&traced) })),
			bitswap.WithBlockReceivedNotifier(func(_ peer.ID, bs []bitswap.ReceivedBlock) { mu.Lock(); notified += len(bs); mu.Unlock() }))
		defer closeAll(append(nodes, leech))
		vn.ConnectAll()
		blks := testutil.RandomBlocks(7, 10, 1000)
		_ = nodes[0].bs.PutMany(context.Background(), blks)
		time.Sleep(time.Millisecond)
		fetch(t, context.Background(), leech.b, blks)
		synctest.Wait()

		mu.Lock()
		defer mu.Unlock()
		if blocksHeard != len(blks) || notified != len(blks) {
			t.Errorf("observer heard %d blocks, notifier %d; want %d each", blocksHeard, notified, len(blks))
		}
		if received == 0 || served != received {
			t.Errorf("observers heard %d and %d messages received; want the same, above 0", received, served)
		}
		if sent == 0 {
			t.Error("the observer heard of no message sent")
		}
		if traced != received+sent {
			t.Errorf("the tracer heard %d messages, observers %d received and %d sent", traced, received, sent)
		}
		// 10 wants, a window of 4: the first send leaves 6 waiting.
		if len(waiting) == 0 || waiting[0] != len(blks)-4 {
			t.Errorf("send queue heard %v; want it to start at %d", waiting, len(blks)-4)
		}
	})
}

// tracerFunc is a Tracer that calls f for each message, either way.
type tracerFunc func()

func (f tracerFunc) MessageReceived(peer.ID, *message.Message) { f() }
func (f tracerFunc) MessageSent(peer.ID, *message.Message)     { f() }

package interop

import (
	"context"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	boxobs "github.com/ipfs/boxo/bitswap"
	bsmsg "github.com/ipfs/boxo/bitswap/message"
	pb "github.com/ipfs/boxo/bitswap/message/pb"
	bsnet "github.com/ipfs/boxo/bitswap/network/bsnet"
	"github.com/ipfs/boxo/blockservice"
	boxobstore "github.com/ipfs/boxo/blockstore"
	"github.com/ipfs/boxo/exchange"
	"github.com/ipfs/boxo/ipld/merkledag"
	blocks "github.com/ipfs/go-block-format"
	cid "github.com/ipfs/go-cid"
	ds "github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/protocol"

	bitswap "github.com/gobitswap/bitswap"
	"github.com/gobitswap/bitswap/blockstore"
	"github.com/gobitswap/bitswap/boxocompat"
	"github.com/gobitswap/bitswap/network"
	"github.com/gobitswap/bitswap/session"
)

// The two Blockstore interfaces have one method set: boxo v0.43's passes to
// Bitswap as is, and ours to boxo.
var (
	_ blockstore.Blockstore = boxobstore.Blockstore(nil)
	_ boxobstore.Blockstore = blockstore.Blockstore(nil)
)

// Our Bitswap on boxo's own blockstore serves from it and fetches into it.
func TestBoxoBlockstoreAsIs(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	h, _ := newHost(t)
	bbs := boxobstore.NewBlockstore(dssync.MutexWrap(ds.NewMapDatastore()))
	onBoxoStore := bitswap.New(ctx, network.NewFromHost(h), bbs)
	t.Cleanup(func() { onBoxoStore.Close() })
	other := startOurs(t, ctx, nil)
	connect(t, ctx, h, other.h)

	// Fetched into boxo's blockstore...
	fetched := clientBlocks(t, 40, 200)
	if err := other.bs.PutMany(ctx, fetched); err != nil {
		t.Fatal(err)
	}
	fetchAll(t, ctx, onBoxoStore, fetched)
	for _, b := range fetched {
		if ok, err := bbs.Has(ctx, b.Cid()); err != nil || !ok {
			t.Fatalf("boxo's blockstore lacks fetched block %s (%v)", b.Cid(), err)
		}
	}
	// ...and served from it.
	served := clientBlocks(t, 41, 200)
	if err := bbs.PutMany(ctx, served); err != nil {
		t.Fatal(err)
	}
	fetchAll(t, ctx, other.b, served)
}

// countingExchange is boxocompat's exchange, counting how it is used: by
// Session, or call by call (each of those a one-off Session of ours).
type countingExchange struct {
	exchange.SessionExchange
	sessions, direct atomic.Int64
	fetchers         []exchange.Fetcher
}

func (c *countingExchange) NewSession(ctx context.Context) exchange.Fetcher {
	c.sessions.Add(1)
	f := c.SessionExchange.NewSession(ctx)
	c.fetchers = append(c.fetchers, f)
	return f
}

func (c *countingExchange) GetBlock(ctx context.Context, k cid.Cid) (blocks.Block, error) {
	c.direct.Add(1)
	return c.SessionExchange.GetBlock(ctx, k)
}

func (c *countingExchange) GetBlocks(ctx context.Context, ks []cid.Cid) (<-chan blocks.Block, error) {
	c.direct.Add(1)
	return c.SessionExchange.GetBlocks(ctx, ks)
}

// boxo's blockservice over boxocompat.Exchange reads a UnixFS file, 4 MiB in
// 1,024 blocks two levels deep, from a boxo server and from ours, and all of
// it goes through one Session of ours.
func TestBlockserviceOverExchangeFetchesDAGThroughOneSession(t *testing.T) {
	content := make([]byte, 4<<20)
	_, _ = rand.NewChaCha8([32]byte{42}).Read(content)
	for _, server := range []string{"boxo", "ours"} {
		t.Run(server, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			var serverStore boxobstore.Blockstore
			var serverHost host.Host
			if server == "boxo" {
				n := startBoxo(t, ctx, nil)
				serverStore, serverHost = n.bs, n.h
			} else {
				n := startOurs(t, ctx, nil)
				serverStore, serverHost = n.bs, n.h
			}
			// 4 KiB chunks, 174 links per node: a root over 6 nodes over
			// the 1,024 leaves.
			root := importFile(t, serverStore, content, 4<<10)

			ours := startOurs(t, ctx, nil)
			ex := &countingExchange{SessionExchange: boxocompat.Exchange(ours.b)}
			bserv := blockservice.New(ours.bs, ex)
			connect(t, ctx, ours.h, serverHost)

			sctx, endSession := context.WithCancel(ctx)
			readFile(t, sctx, merkledag.NewSession(sctx, merkledag.NewDAGService(bserv)), root, content)
			st, _ := ours.b.Stat()
			if n := ex.sessions.Load(); n != 1 || ex.direct.Load() != 0 {
				t.Fatalf("exchange used through %d Sessions and %d direct calls; want 1 and 0", n, ex.direct.Load())
			}
			if _, ok := ex.fetchers[0].(*session.Session); !ok {
				t.Fatalf("NewSession returned a %T, not one of our Sessions", ex.fetchers[0])
			}
			if st.Sessions != 1 || st.BlocksReceived != 1+6+1024 {
				t.Fatalf("after the read: %d Sessions running, %d blocks received; want 1 and %d", st.Sessions, st.BlocksReceived, 1+6+1024)
			}
			endSession()
			waitFor(t, ctx, func() bool { st, _ := ours.b.Stat(); return st.Sessions == 0 })
			if err := bserv.Close(); err != nil { // closes ours.b
				t.Fatal(err)
			}
		})
	}
}

// waitFor polls ok until it holds or ctx ends.
func waitFor(t *testing.T, ctx context.Context, ok func() bool) {
	t.Helper()
	for !ok() {
		select {
		case <-ctx.Done():
			t.Fatal("condition never held")
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// A client-only node (WithServerEnabled(false)) answers a boxo peer
// nothing: no block it has, no DONT_HAVE for one it lacks, though both were
// asked with sendDontHave. boxo's client asking it gets nothing either. It
// still fetches from a boxo server.
func TestServerDisabledAnswersBoxoNothing(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	quiet := startOurs(t, ctx, nil, bitswap.WithServerEnabled(false))
	has, lacks := blocks.NewBlock([]byte("the quiet node has this")), blocks.NewBlock([]byte("nobody has this"))
	if err := quiet.bs.Put(ctx, has); err != nil {
		t.Fatal(err)
	}

	// boxo's network layer, asking by hand.
	h, _ := newHost(t)
	bnet := bsnet.NewFromIpfsHost(h)
	rec := &presenceReceiver{sig: make(chan struct{}, 1)}
	bnet.Start(rec)
	t.Cleanup(bnet.Stop)
	connect(t, ctx, h, quiet.h)
	m := bsmsg.New(false)
	m.AddEntry(has.Cid(), 1, pb.Message_Wantlist_Block, true)
	m.AddEntry(lacks.Cid(), 1, pb.Message_Wantlist_Have, true)
	if err := bnet.SendMessage(ctx, quiet.h.ID(), m); err != nil {
		t.Fatal(err)
	}

	// boxo's client, asking as it does.
	theirs := startBoxo(t, ctx, nil)
	connect(t, ctx, theirs.h, quiet.h)
	gctx, gcancel := context.WithTimeout(ctx, 2*time.Second)
	defer gcancel()
	if _, err := theirs.b.GetBlock(gctx, has.Cid()); err == nil {
		t.Fatal("boxo's client got a block from the client-only node")
	}
	rec.mu.Lock()
	answered := len(rec.msgs)
	rec.mu.Unlock()
	if answered != 0 {
		t.Fatalf("the client-only node answered %d messages; want none", answered)
	}
	if st, _ := quiet.b.Stat(); st.BlocksSent != 0 || st.Server.Peers != 0 {
		t.Fatalf("client-only node: %d blocks sent, %d peers served", st.BlocksSent, st.Server.Peers)
	}

	want := clientBlocks(t, 50, 200)
	if err := theirs.bs.PutMany(ctx, want); err != nil {
		t.Fatal(err)
	}
	fetchAll(t, ctx, quiet.b, want)
}

// newPrefixedHost is newHost with the stream limits lifted for prefix too.
func newPrefixedHost(t *testing.T, prefix protocol.ID) host.Host {
	t.Helper()
	rm, err := network.ResourceManagerWithPrefix(prefix)
	if err != nil {
		t.Fatal(err)
	}
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.ResourceManager(rm))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// Nodes with one protocol prefix exchange blocks, ours with ours and ours
// with boxo's (bsnet.Prefix), both ways; a node without the prefix is no
// Bitswap peer of theirs and gets nothing.
func TestProtocolPrefixWithOursAndBoxo(t *testing.T) {
	const prefix = "/celestia"
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	startPrefixed := func() *ourNode {
		h := newPrefixedHost(t, prefix)
		bs := blockstore.NewMemory()
		b := bitswap.New(ctx, network.NewFromHost(h, network.WithProtocolPrefix(prefix)), bs)
		t.Cleanup(func() { b.Close() })
		return &ourNode{h: h, bs: bs, b: b}
	}
	a, b := startPrefixed(), startPrefixed()
	bh := newPrefixedHost(t, prefix)
	bbs := boxobstore.NewBlockstore(dssync.MutexWrap(ds.NewMapDatastore()))
	theirs := boxobs.New(ctx, bsnet.NewFromIpfsHost(bh, bsnet.Prefix(prefix)), nil, bbs)
	t.Cleanup(func() { theirs.Close() })
	plain := startOurs(t, ctx, nil)

	connect(t, ctx, a.h, b.h)
	connect(t, ctx, a.h, bh)
	connect(t, ctx, plain.h, a.h)

	fromB, fromBoxo, forBoxo := clientBlocks(t, 60, 100), clientBlocks(t, 61, 100), clientBlocks(t, 62, 100)
	if err := b.bs.PutMany(ctx, fromB); err != nil {
		t.Fatal(err)
	}
	if err := bbs.PutMany(ctx, fromBoxo); err != nil {
		t.Fatal(err)
	}
	if err := a.bs.PutMany(ctx, forBoxo); err != nil {
		t.Fatal(err)
	}
	fetchAll(t, ctx, a.b, fromB)
	fetchAll(t, ctx, a.b, fromBoxo)
	fetchAll(t, ctx, theirs, forBoxo)

	gctx, gcancel := context.WithTimeout(ctx, 2*time.Second)
	defer gcancel()
	if _, err := plain.b.GetBlock(gctx, forBoxo[0].Cid()); err == nil {
		t.Fatal("a node without the prefix got a block from a prefixed one")
	}
	for _, n := range []*ourNode{a, plain} {
		st, _ := n.b.Stat()
		other := plain.h.ID()
		if n == plain {
			other = a.h.ID()
		}
		if slices.Contains(st.Peers, other.String()) {
			t.Fatalf("%s counts %s as a Bitswap peer across prefixes", n.h.ID(), other)
		}
	}
}

// boxo's blockservice.AddBlock (which calls the exchange's NotifyNewBlocks)
// ends a fetch of that block waiting in the same blockservice, as it does
// over boxo's Bitswap.
func TestBlockserviceAddBlockEndsWaitingFetch(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ours := startOurs(t, ctx, nil)
	theirs := startBoxo(t, ctx, nil) // connected, lacks the block
	connect(t, ctx, ours.h, theirs.h)
	bserv := blockservice.New(ours.bs, boxocompat.Exchange(ours.b))
	blk := blocks.NewBlock([]byte("added while wanted"))
	done := make(chan error, 1)
	go func() {
		_, err := blockservice.NewSession(ctx, bserv).GetBlock(ctx, blk.Cid())
		done <- err
	}()
	// Asked of boxo, which lacks it (and says so).
	waitFor(t, ctx, func() bool { st, _ := theirs.b.Stat(); return st.MessagesReceived > 0 })
	if err := bserv.AddBlock(ctx, blk); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the fetch still waits after AddBlock")
	}
}

package interop

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipfs/boxo/blockservice"
	boxobstore "github.com/ipfs/boxo/blockstore"
	"github.com/ipfs/boxo/gateway"
	"github.com/ipfs/boxo/ipld/merkledag"
	blocks "github.com/ipfs/go-block-format"
	cid "github.com/ipfs/go-cid"
	ds "github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"

	bitswap "github.com/gobitswap/bitswap"
	"github.com/gobitswap/bitswap/blockstore"
	"github.com/gobitswap/bitswap/dag"
	"github.com/gobitswap/bitswap/httpnet"
	"github.com/gobitswap/bitswap/network"
)

// boxoGateway serves bs with boxo's gateway handler (a trustless gateway
// over a BlocksBackend of an offline blockservice) on loopback. counted,
// if set, counts the block requests it answers; each answer waits delay
// first (a gateway further away).
func boxoGateway(t testing.TB, bs boxobstore.Blockstore, counted *atomic.Int64, delay time.Duration) *httptest.Server {
	t.Helper()
	backend, err := gateway.NewBlocksBackend(blockservice.New(bs, nil))
	if err != nil {
		t.Fatal(err)
	}
	h := gateway.NewHandler(gateway.Config{}, backend)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if counted != nil {
			counted.Add(1)
		}
		if delay > 0 {
			time.Sleep(delay)
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func newBoxoStore() boxobstore.Blockstore {
	return boxobstore.NewBlockstore(dssync.MutexWrap(ds.NewMapDatastore()))
}

// walkHTTP fetches the DAG under root through one Session of bsw, puts
// every block into a boxo blockstore and reads the file back with boxo's
// UnixFS reader, comparing it with content.
func walkHTTP(t *testing.T, ctx context.Context, bsw *bitswap.Bitswap, root cid.Cid, content []byte) int {
	t.Helper()
	got := newBoxoStore()
	n := 0
	ses := bsw.NewSession(ctx)
	err := dag.Walk(ctx, ses, root, func(b blocks.Block) error {
		n++
		return got.Put(ctx, b)
	})
	if err != nil {
		t.Fatal(err)
	}
	readFile(t, ctx, merkledag.NewDAGService(blockservice.New(got, nil)), root, content)
	return n
}

// Our HTTP client (a Bitswap whose network is httpnet) fetches a UnixFS
// DAG from boxo's gateway handler serving a blockstore; every body is
// verified, none is wrong, none is fetched twice.
func TestOurHTTPClientFromBoxoGateway(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	src := newBoxoStore()
	content := make([]byte, 3<<20+777)
	_, _ = rand.NewChaCha8([32]byte{41}).Read(content)
	root := importFile(t, src, content, 64<<10)
	var served atomic.Int64
	srv := boxoGateway(t, src, &served, 0)

	hn := httpnet.New()
	bsw := bitswap.New(ctx, hn, blockstore.NewMemory(), bitswap.WithServerEnabled(false))
	defer bsw.Close()
	if _, err := hn.ConnectURL(ctx, srv.URL); err != nil {
		t.Fatal(err)
	}
	n := walkHTTP(t, ctx, bsw, root, content)
	hs := hn.HTTPStats()
	st, _ := bsw.Stat()
	if hs.Blocks != uint64(n) || hs.WrongBodies != 0 || st.DupBlksReceived != 0 {
		t.Fatalf("%d blocks walked; http %+v; %d duplicates", n, hs, st.DupBlksReceived)
	}
	t.Logf("%d blocks from boxo's gateway: %d requests (%d answered by it, probe included)", n, hs.Requests, served.Load())
}

// One of two gateways returns wrong bodies (its blockstore holds every
// block of the DAG under the right CID with corrupted data, as a bad disk
// would, and boxo's handler serves them as they are): each is dropped and
// counted, the endpoint is dropped (here at its first wrong body:
// WithMaxWrongBodies(1); the default tolerates 3) and banned, and the
// fetch completes from the good one, nothing wrong stored.
func TestOurHTTPClientWrongBodyGatewayDropped(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	good := newBoxoStore()
	content := make([]byte, 2<<20+99)
	_, _ = rand.NewChaCha8([32]byte{42}).Read(content)
	root := importFile(t, good, content, 32<<10)

	bad := newBoxoStore()
	keys, err := good.AllKeysChan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for c := range keys {
		b, err := good.Get(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		data := append([]byte(nil), b.RawData()...)
		data[len(data)/2] ^= 0x55
		wrong, err := blocks.NewBlockWithCid(data, c)
		if err != nil {
			t.Fatal(err)
		}
		if err := bad.Put(ctx, wrong); err != nil {
			t.Fatal(err)
		}
	}
	var badServed atomic.Int64
	// The good gateway is 20 ms further away, so the Session, choosing by
	// expected delivery time, asks the bad one first.
	badSrv := boxoGateway(t, bad, &badServed, 0)
	goodSrv := boxoGateway(t, good, nil, 20*time.Millisecond)

	hn := httpnet.New(httpnet.WithMaxWrongBodies(1))
	ours := blockstore.NewMemory()
	bsw := bitswap.New(ctx, hn, ours, bitswap.WithServerEnabled(false))
	defer bsw.Close()
	badID, err := hn.ConnectURL(ctx, badSrv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := hn.ConnectURL(ctx, goodSrv.URL); err != nil {
		t.Fatal(err)
	}
	n := walkHTTP(t, ctx, bsw, root, content)
	hs := hn.HTTPStats()
	st, _ := bsw.Stat()
	t.Logf("%d blocks; bad gateway answered %d requests; http %+v", n, badServed.Load(), hs)
	if hs.WrongBodies == 0 {
		t.Fatal("the bad gateway was never asked: the test tests nothing")
	}
	if hs.Blocks != uint64(n) || st.Network.MalformedReceived != hs.WrongBodies {
		t.Fatalf("%d blocks walked; http %+v; network %+v", n, hs, st.Network)
	}
	if hs.Dropped != 1 || hs.Banned != 1 || hn.Has(badID) {
		t.Fatalf("bad gateway not dropped: %+v", hs)
	}
	if _, err := hn.ConnectURL(ctx, badSrv.URL); !errors.Is(err, httpnet.ErrBanned) {
		t.Fatalf("reconnecting the bad gateway: %v", err)
	}
	// Everything stored hashes right (walkHTTP read the file back too).
	for _, k := range keysOf(t, ctx, good) {
		b, err := ours.Get(ctx, k)
		if err != nil {
			t.Fatalf("%s not stored: %v", k, err)
		}
		if chk, _ := k.Prefix().Sum(b.RawData()); !chk.Equals(k) {
			t.Fatalf("%s stored with wrong data", k)
		}
	}
}

func keysOf(t *testing.T, ctx context.Context, bs boxobstore.Blockstore) []cid.Cid {
	t.Helper()
	ch, err := bs.AllKeysChan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []cid.Cid
	for c := range ch {
		out = append(out, c)
	}
	return out
}

// One Session fetches a DAG from a boxo Bitswap node (over libp2p) and
// boxo's gateway handler (over HTTP) at once, through a Router: the boxo
// node holds every other leaf, the gateway the whole DAG; nothing is
// fetched twice but, at most, the root. (The root's want-block goes to one
// of them, want-have to the other; a HAVE moves it to the one that said
// so, cancelling the first, which may have sent it already: 3 runs in
// 100 fetch the root twice, as a duplicate block or as a gateway body that
// arrived after its cancel.)
func TestOurRouterFromBoxoBitswapAndGateway(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	theirs := startBoxo(t, ctx, nil)
	content := make([]byte, 2<<20+5)
	_, _ = rand.NewChaCha8([32]byte{43}).Read(content)
	full := newBoxoStore()
	root := importFile(t, full, content, 32<<10)
	for i, k := range keysOf(t, ctx, full) {
		if i%2 == 0 || k == root {
			b, _ := full.Get(ctx, k)
			if err := theirs.bs.Put(ctx, b); err != nil {
				t.Fatal(err)
			}
		}
	}
	srv := boxoGateway(t, full, nil, 0)

	h, _ := newHost(t)
	hn := httpnet.New(httpnet.WithSelf(h.ID()))
	router := httpnet.NewRouter(network.NewFromHost(h), hn)
	bsw := bitswap.New(ctx, router, blockstore.NewMemory(), bitswap.WithServerEnabled(false))
	defer bsw.Close()
	connect(t, ctx, h, theirs.h)
	ai, err := httpnet.AddrInfoFromURL(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if err := router.Connect(ctx, ai); err != nil {
		t.Fatal(err)
	}
	n := walkHTTP(t, ctx, bsw, root, content)
	st, _ := bsw.Stat()
	hs := hn.HTTPStats()
	viaBitswap := bsw.LedgerForPeer(theirs.h.ID()).BlocksReceived
	t.Logf("%d blocks: %d over HTTP, %d over Bitswap, %d duplicates", n, hs.Blocks, viaBitswap, st.DupBlksReceived)
	rootBlock, err := full.Get(ctx, root)
	if err != nil {
		t.Fatal(err)
	}
	extra := hs.Blocks + viaBitswap - uint64(n) // copies beyond one per block
	if hs.WrongBodies != 0 || extra > 1 || st.DupBlksReceived > extra ||
		(st.DupBlksReceived == 1 && st.DupDataReceived != uint64(len(rootBlock.RawData()))) {
		t.Fatalf("http %+v; stat %+v", hs, st)
	}
}

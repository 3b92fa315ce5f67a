package interop

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/boxo/blockservice"
	chunker "github.com/ipfs/boxo/chunker"
	"github.com/ipfs/boxo/exchange"
	"github.com/ipfs/boxo/ipld/merkledag"
	"github.com/ipfs/boxo/ipld/unixfs/importer"
	uio "github.com/ipfs/boxo/ipld/unixfs/io"
	blocks "github.com/ipfs/go-block-format"
	cid "github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"

	bitswap "github.com/gobitswap/bitswap"
	"github.com/gobitswap/bitswap/blockstore"
	"github.com/gobitswap/bitswap/message"
	"github.com/gobitswap/bitswap/network"
	"github.com/gobitswap/bitswap/session"
)

// Our Bitswap is a drop-in exchange for boxo: checked by the compiler.
var (
	_ exchange.Interface = (*bitswap.Bitswap)(nil)
	_ exchange.Fetcher   = (*session.Session)(nil)
)

// fetchAll gets want through f and compares every byte.
func fetchAll(t *testing.T, ctx context.Context, f exchange.Fetcher, want []blocks.Block) time.Duration {
	t.Helper()
	start := time.Now()
	ch, err := f.GetBlocks(ctx, cidsOf(want))
	if err != nil {
		t.Fatal(err)
	}
	got := make(map[cid.Cid]blocks.Block, len(want))
	for b := range ch {
		got[b.Cid()] = b
	}
	for _, b := range want {
		g, ok := got[b.Cid()]
		if !ok || !bytes.Equal(g.RawData(), b.RawData()) {
			t.Fatalf("got %d of %d blocks; %s missing or different", len(got), len(want), b.Cid())
		}
	}
	return time.Since(start)
}

// clientBlocks is the mix for the client: raw and dag-pb, CIDv0 and
// CIDv1, up to 1 MiB.
func clientBlocks(t *testing.T, seed uint64, n int) []blocks.Block {
	var out []blocks.Block
	for _, b := range mixedBlocks(t, seed, n) {
		if len(b.RawData()) <= 1<<20 {
			out = append(out, b)
		}
	}
	return out
}

// Our client fetches 1,000 blocks of every kind from a boxo server on each
// protocol version.
func TestOurClientFetchesFromBoxoServer(t *testing.T) {
	for _, v := range versions {
		t.Run(v.String(), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			theirs := startBoxo(t, ctx, boxoProtocols(v))
			ours := startOurs(t, ctx, []network.Option{network.WithProtocols(v)})
			want := clientBlocks(t, 10+uint64(v), 1000)
			if err := theirs.bs.PutMany(ctx, want); err != nil {
				t.Fatal(err)
			}
			connect(t, ctx, ours.h, theirs.h)
			took := fetchAll(t, ctx, ours.b, want)
			t.Logf("%s: %d blocks from boxo in %v", v, len(want), took)
		})
	}
}

// Our client fetches from our own server, on each version.
func TestOurClientFetchesFromOurServer(t *testing.T) {
	for _, v := range versions {
		t.Run(v.String(), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			server := startOurs(t, ctx, []network.Option{network.WithProtocols(v)})
			client := startOurs(t, ctx, nil)
			want := clientBlocks(t, 20+uint64(v), 1000)
			if err := server.bs.PutMany(ctx, want); err != nil {
				t.Fatal(err)
			}
			connect(t, ctx, client.h, server.h)
			took := fetchAll(t, ctx, client.b, want)
			t.Logf("%s: %d blocks from our server in %v", v, len(want), took)
			st, _ := client.b.Stat()
			if st.DupBlksReceived != 0 {
				t.Fatalf("%d duplicate blocks from a single server", st.DupBlksReceived)
			}
		})
	}
}

// A boxo client and ours fetch from each other at the same time.
func TestBoxoAndOursFetchFromEachOtherAtOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ours := startOurs(t, ctx, nil)
	theirs := startBoxo(t, ctx, nil)
	forOurs := clientBlocks(t, 30, 500)
	forTheirs := clientBlocks(t, 31, 500)
	if err := theirs.bs.PutMany(ctx, forOurs); err != nil {
		t.Fatal(err)
	}
	if err := ours.bs.PutMany(ctx, forTheirs); err != nil {
		t.Fatal(err)
	}
	connect(t, ctx, ours.h, theirs.h)
	var wg sync.WaitGroup
	wg.Go(func() { fetchAll(t, ctx, ours.b, forOurs) })
	wg.Go(func() { fetchAll(t, ctx, theirs.b, forTheirs) })
	wg.Wait()
}

// Our client asks a boxo server (default options) for 20,000 × 4 KiB blocks
// in ONE GetBlocks call, far past the 1,024 wants a boxo server holds, and
// never waits on a timer, run after run, with or without a CPU hog beside
// it. (It used to, in about half the runs: the boxo server opens a stream
// per message, and libp2p's default resource limits reset those past 75 per
// peer, losing their blocks; see network.ResourceManager.)
func TestOurClientTwentyThousandBlocksFromBoxo(t *testing.T) {
	measureStalls(t, fourKiBBlocks(20000), func(t *testing.T, ctx context.Context) fetchPair {
		theirs := startBoxo(t, ctx, nil)
		ours := startOurs(t, ctx, nil)
		return fetchPair{theirs.bs, theirs.h, ours.b, ours.h, func() string { return diagPair(ours, theirs) },
			func() error { return askedOnce(ours, theirs, 20000) }}
	})
}

// Our Bitswap under boxo's blockservice reads a UnixFS file that a boxo
// node imported.
func TestUnixFSThroughBoxoBlockservice(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	theirs := startBoxo(t, ctx, nil)
	ours := startOurs(t, ctx, nil)

	content := make([]byte, 5<<20+12345)
	_, _ = rand.NewChaCha8([32]byte{7}).Read(content)
	root := importFile(t, theirs.bs, content, 256<<10)
	connect(t, ctx, ours.h, theirs.h)

	readFile(t, ctx, merkledag.NewDAGService(blockservice.New(ours.bs, ours.b)), root, content)
}

// importFile imports content into bs as a UnixFS file in chunks of chunk
// bytes, with boxo's importer, and returns its root.
func importFile(t *testing.T, bs blockstore.Blockstore, content []byte, chunk int64) cid.Cid {
	t.Helper()
	root, err := importer.BuildDagFromReader(merkledag.NewDAGService(blockservice.New(bs, nil)),
		chunker.NewSizeSplitter(bytes.NewReader(content), chunk))
	if err != nil {
		t.Fatal(err)
	}
	return root.Cid()
}

// readFile reads the UnixFS file root through dag with boxo's reader and
// compares it with want.
func readFile(t *testing.T, ctx context.Context, dag ipld.NodeGetter, root cid.Cid, want []byte) {
	t.Helper()
	node, err := dag.Get(ctx, root)
	if err != nil {
		t.Fatal(err)
	}
	r, err := uio.NewDagReader(ctx, node, dag)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("read %d bytes of %s, want the %d imported", len(got), root, len(want))
	}
}

var _ = message.V120

package httpnet_test

import (
	"context"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/gobitswap/bitswap/blockstore"
	"github.com/gobitswap/bitswap/httpnet"
	"github.com/gobitswap/bitswap/testutil"

	bitswap "github.com/gobitswap/bitswap"
)

// One Session fetches from a Bitswap peer and a gateway at once, through
// a Router: blocks only the seed has come over Bitswap, blocks only the
// gateway has over HTTP, and the rest from either, each once.
func TestRouterFetchesFromBothKinds(t *testing.T) {
	blks := testutil.RandomBlocks(3, 60, 8<<10)
	seedOnly, httpOnly, both := blks[:20], blks[20:40], blks[40:]

	vn := testutil.NewVirtualNetwork()
	defer vn.Close()
	seedNet, leechNet := vn.NewPeer(), vn.NewPeer()
	seedStore := blockstore.NewMemory()
	if err := seedStore.PutMany(context.Background(), slices.Concat(seedOnly, both)); err != nil {
		t.Fatal(err)
	}
	seed := bitswap.New(context.Background(), seedNet, seedStore)
	defer seed.Close()

	srv := httptest.NewServer(newGateway(false, slices.Concat(httpOnly, both)...))
	defer srv.Close()

	hn := httpnet.New(httpnet.WithSelf(leechNet.Self()))
	router := httpnet.NewRouter(leechNet, hn)
	leech := bitswap.New(context.Background(), router, blockstore.NewMemory(), bitswap.WithServerEnabled(false))
	defer leech.Close()

	ai, err := httpnet.AddrInfoFromURL(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if err := router.Connect(context.Background(), ai); err != nil {
		t.Fatal(err)
	}
	if !hn.Has(ai.ID) {
		t.Fatal("the gateway is not the HTTP network's")
	}
	vn.ConnectAll()
	fetchAll(t, leech, blks)

	st, _ := leech.Stat()
	if st.BlocksReceived != 60 || st.DupBlksReceived != 0 {
		t.Fatalf("%d blocks, %d duplicates", st.BlocksReceived, st.DupBlksReceived)
	}
	hs := hn.HTTPStats()
	fromSeed := st.BlocksReceived - hs.Blocks
	if hs.Blocks < 20 || fromSeed < 20 {
		t.Fatalf("%d blocks over HTTP, %d over Bitswap", hs.Blocks, fromSeed)
	}
	if st.Network.MessagesReceived < leechNet.Stats().MessagesReceived+hs.Blocks {
		t.Fatalf("router stats %+v do not add both networks'", st.Network)
	}
	if len(st.Peers) != 2 {
		t.Fatalf("peers %v", st.Peers)
	}
	t.Logf("%d blocks over HTTP (%d requests), %d over Bitswap", hs.Blocks, hs.Requests, fromSeed)
}

package httpnet_test

import (
	"context"
	"fmt"
	"net/http/httptest"

	blocks "github.com/ipfs/go-block-format"

	bitswap "github.com/gobitswap/bitswap"
	"github.com/gobitswap/bitswap/blockstore"
	"github.com/gobitswap/bitswap/httpnet"
)

// A Bitswap whose network is HTTP fetches a block from a trustless
// gateway (here a test server) like from any peer.
func Example() {
	blk := blocks.NewBlock([]byte("hello over HTTP"))
	gw := httptest.NewServer(newGateway(false, blk))
	defer gw.Close()

	ctx := context.Background()
	hn := httpnet.New()
	bsw := bitswap.New(ctx, hn, blockstore.NewMemory())
	defer bsw.Close()
	if _, err := hn.ConnectURL(ctx, gw.URL); err != nil {
		panic(err)
	}
	got, err := bsw.GetBlock(ctx, blk.Cid())
	if err != nil {
		panic(err)
	}
	s := hn.HTTPStats()
	fmt.Printf("%q; %d request, %d block verified, %d wrong\n", got.RawData(), s.Requests, s.Blocks, s.WrongBodies)
	// Output: "hello over HTTP"; 1 request, 1 block verified, 0 wrong
}

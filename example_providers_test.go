package bitswap_test

import (
	"context"
	"fmt"
	"time"

	blocks "github.com/ipfs/go-block-format"
	cid "github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	bitswap "github.com/gobitswap/bitswap"
	"github.com/gobitswap/bitswap/blockstore"
	"github.com/gobitswap/bitswap/network"
)

// records is content routing that knows, for each CID, who provides it
// (a DHT or a Routing V1 client in real life).
type records map[cid.Cid][]peer.AddrInfo

func (r records) FindProvidersAsync(_ context.Context, c cid.Cid, _ int) <-chan peer.AddrInfo {
	out := make(chan peer.AddrInfo, len(r[c]))
	for _, ai := range r[c] {
		out <- ai
	}
	close(out)
	return out
}

// Fetch a block from a peer we are not connected to, which content
// routing names as its provider: the provider query layer finds it,
// connects, and tells the Session, which asks it for the block.
func ExampleWithContentRouting() {
	ctx := context.Background()
	blk := blocks.NewBlock([]byte("found through content routing"))

	h1, err := loopbackHost()
	if err != nil {
		panic(err)
	}
	defer h1.Close()
	bs := blockstore.NewMemory()
	_ = bs.Put(ctx, blk)
	server := bitswap.New(ctx, network.NewFromHost(h1), bs)
	defer server.Close()

	h2, err := loopbackHost()
	if err != nil {
		panic(err)
	}
	defer h2.Close()
	router := records{blk.Cid(): {{ID: h1.ID(), Addrs: h1.Addrs()}}}
	client := bitswap.New(ctx, network.NewFromHost(h2), blockstore.NewMemory(),
		bitswap.WithContentRouting(router),
		bitswap.WithProviderSearchDelay(10*time.Millisecond), // no peer to wait for
		bitswap.WithMaxProviderQueries(4),
		bitswap.WithProviderQueryTimeout(5*time.Second))
	defer client.Close()

	got, err := client.GetBlock(ctx, blk.Cid())
	if err != nil {
		panic(err)
	}
	fmt.Printf("%s\n", got.RawData())
	st, _ := client.Stat()
	fmt.Println("provider queries:", st.Providers.Started, "providers connected:", st.Providers.Connected)
	// Output:
	// found through content routing
	// provider queries: 1 providers connected: 1
}

package bitswap_test

// Provider search on real libp2p hosts on loopback: ExampleWithContentRouting
// and the FindPeer retry against a real dial failure.

import (
	"context"
	"fmt"
	"testing"
	"time"

	blocks "github.com/ipfs/go-block-format"
	cid "github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/routing"
	ma "github.com/multiformats/go-multiaddr"

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

// withFindPeer is records that also does peer routing, as a DHT does.
type withFindPeer struct {
	records
	addrs map[peer.ID][]ma.Multiaddr
}

func (r withFindPeer) FindPeer(_ context.Context, p peer.ID) (peer.AddrInfo, error) {
	if a, ok := r.addrs[p]; ok {
		return peer.AddrInfo{ID: p, Addrs: a}, nil
	}
	return peer.AddrInfo{}, routing.ErrNotFound
}

// On real libp2p hosts: content routing's record of the provider holds
// only an address it has left (a closed port), so the dial fails; FindPeer
// gives the address it listens on now, the second dial succeeds, and the
// block is fetched.
func TestLibp2pProviderWithStaleAddressIsFoundByFindPeer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	blk := blocks.NewBlock([]byte("moved"))
	h1, err := loopbackHost()
	if err != nil {
		t.Fatal(err)
	}
	defer h1.Close()
	bs := blockstore.NewMemory()
	_ = bs.Put(ctx, blk)
	server := bitswap.New(ctx, network.NewFromHost(h1), bs)
	defer server.Close()

	h2, err := loopbackHost()
	if err != nil {
		t.Fatal(err)
	}
	defer h2.Close()
	stale := ma.StringCast("/ip4/127.0.0.1/tcp/1")
	router := withFindPeer{records{blk.Cid(): {{ID: h1.ID(), Addrs: []ma.Multiaddr{stale}}}},
		map[peer.ID][]ma.Multiaddr{h1.ID(): h1.Addrs()}}
	client := bitswap.New(ctx, network.NewFromHost(h2), blockstore.NewMemory(),
		bitswap.WithContentRouting(router), bitswap.WithProviderSearchDelay(10*time.Millisecond))
	defer client.Close()

	if _, err := client.GetBlock(ctx, blk.Cid()); err != nil {
		t.Fatal(err)
	}
	st, _ := client.Stat()
	if p := st.Providers; p.FindPeers != 1 || p.Rescued != 1 || p.Connected != 1 {
		t.Errorf("Stat().Providers %+v, want 1 FindPeer, 1 rescued, 1 connected", p)
	}
}

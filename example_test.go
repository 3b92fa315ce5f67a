package bitswap_test

import (
	"context"
	"fmt"

	blocks "github.com/ipfs/go-block-format"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/peer"

	bitswap "github.com/gobitswap/bitswap"
	"github.com/gobitswap/bitswap/blockstore"
	"github.com/gobitswap/bitswap/message"
	"github.com/gobitswap/bitswap/network"
)

// printBlocks is a bare Bitswap peer that prints the blocks it receives.
type printBlocks chan struct{}

func (r printBlocks) ReceiveMessage(_ context.Context, _ peer.ID, m *message.Message) {
	for _, b := range m.Blocks {
		fmt.Printf("received %q\n", b.RawData())
		close(r)
	}
}
func (printBlocks) ReceiveError(peer.ID, error) {}
func (printBlocks) PeerConnected(peer.ID)       {}
func (printBlocks) PeerDisconnected(peer.ID)    {}

// Serve blocks from a blockstore on a libp2p host. A second host asks for
// a block in a plain want-block message, as any Bitswap client would.
func ExampleNew() {
	ctx := context.Background()

	// The serving node: a libp2p host, a blockstore, and Bitswap on top.
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		panic(err)
	}
	defer h.Close()
	bs := blockstore.NewMemory()
	server := bitswap.New(ctx, network.NewFromHost(h), bs)
	defer server.Close()

	blk := blocks.NewBlock([]byte("hello bitswap"))
	_ = bs.Put(ctx, blk)
	_ = server.NotifyNewBlocks(ctx, blk) // serves peers already waiting for it

	// The asking peer.
	h2, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		panic(err)
	}
	defer h2.Close()
	client := network.NewFromHost(h2)
	got := make(printBlocks)
	client.Start(got)
	defer client.Stop()
	if err := client.Connect(ctx, peer.AddrInfo{ID: h.ID(), Addrs: h.Addrs()}); err != nil {
		panic(err)
	}
	err = client.SendMessage(ctx, h.ID(), &message.Message{Wantlist: []message.Entry{
		{Cid: blk.Cid(), Priority: 1, WantType: message.WantBlock},
	}})
	if err != nil {
		panic(err)
	}
	<-got
	// Output: received "hello bitswap"
}

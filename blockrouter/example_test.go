package blockrouter_test

import (
	"context"
	"fmt"

	blocks "github.com/ipfs/go-block-format"
	cid "github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/gobitswap/bitswap/blockrouter"
	"github.com/gobitswap/bitswap/blockstore"
	"github.com/gobitswap/bitswap/ledger"
	"github.com/gobitswap/bitswap/testutil"
)

// printingSession stands in for a Session: it prints what it is given.
type printingSession struct{}

func (printingSession) ReceiveBlocks(_ peer.ID, blks []blocks.Block) {
	fmt.Println("session received", len(blks), "block(s)")
}

// A Session wants one block; a peer sends it along with one nobody asked
// for, then sends the wanted one again.
func Example() {
	ctx := context.Background()
	l := ledger.New()
	r := blockrouter.New(blockstore.NewMemory(), l, nil, nil)

	blks := testutil.RandomBlocks(1, 2, 100)
	r.Register(1, printingSession{})
	r.Want(1, []cid.Cid{blks[0].Cid()})

	from := testutil.PeerID(1)
	r.ReceiveBlocks(ctx, from, blks)     // one wanted, one not
	r.ReceiveBlocks(ctx, from, blks[:1]) // a late copy

	st := r.Stat()
	fmt.Println("still wanted:", r.IsWanted(blks[0].Cid()))
	fmt.Println("received:", st.BlocksReceived, "duplicate:", st.DupBlksReceived, "unwanted:", st.UnwantedBlocks)
	fmt.Println("unrequested from peer:", r.Unrequested(from))
	fmt.Println("ledger bytes received:", l.Receipt(from).Recv)
	// Output:
	// session received 1 block(s)
	// still wanted: false
	// received: 3 duplicate: 1 unwanted: 1
	// unrequested from peer: 1
	// ledger bytes received: 300
}

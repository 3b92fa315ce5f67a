package peerrouter_test

import (
	"context"
	"fmt"

	blocks "github.com/ipfs/go-block-format"
	cid "github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/gobitswap/bitswap/blockrouter"
	"github.com/gobitswap/bitswap/blockstore"
	"github.com/gobitswap/bitswap/ledger"
	"github.com/gobitswap/bitswap/peerrouter"
	"github.com/gobitswap/bitswap/testutil"
)

// noServer stands in for the Engine, which the BlockRouter tells of new
// blocks.
type noServer struct{}

func (noServer) NotifyNewBlocks(context.Context, ...blocks.Block) {}

// printingSession stands in for a Session: it prints what it hears.
type printingSession struct{ name string }

func (s printingSession) PeerConnected(peer.ID) { fmt.Println(s.name, "heard: peer connected") }
func (s printingSession) PeerDisconnected(peer.ID) {
	fmt.Println(s.name, "heard: peer disconnected")
}
func (s printingSession) Presences(_ peer.ID, haves, dontHaves []cid.Cid) {
	fmt.Println(s.name, "heard:", len(haves), "HAVE,", len(dontHaves), "DONT_HAVE")
}

// Two Sessions hear about every connection, but only about the presences
// of the CIDs they want, which the BlockRouter knows: a Session registers
// its wants there once. Sinks are called in no set order.
func Example() {
	br := blockrouter.New(blockstore.NewMemory(), ledger.New(), noServer{}, nil)
	r := peerrouter.New(br)
	p := testutil.PeerID(1)
	blks := testutil.RandomBlocks(1, 2, 10)
	c0, c1 := blks[0].Cid(), blks[1].Cid()

	r.PeerConnected(p)
	fmt.Println("connected when a registers:", len(r.Register(1, printingSession{"a"})))
	r.Register(2, printingSession{"b"})
	br.Want(1, []cid.Cid{c0})

	r.ReceivePresences(p, []cid.Cid{c0}, []cid.Cid{c1}) // only a wants c0; nobody c1
	r.PeerDisconnected(p)
	// Unordered output:
	// connected when a registers: 1
	// a heard: 1 HAVE, 0 DONT_HAVE
	// a heard: peer disconnected
	// b heard: peer disconnected
}

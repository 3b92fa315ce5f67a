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

func (s printingSession) PeerConnected(_ peer.ID, info peerrouter.PeerInfo) {
	if info.Proven {
		fmt.Println(s.name, "heard: peer proven")
		return
	}
	fmt.Println(s.name, "heard: peer connected")
}
func (s printingSession) PeerDisconnected(peer.ID) {
	fmt.Println(s.name, "heard: peer disconnected")
}
func (printingSession) ReceiveBlocks(peer.ID, []blocks.Block) {}
func (s printingSession) ProviderFound(peer.ID, cid.Cid) {
	fmt.Println(s.name, "heard: provider found")
}
func (s printingSession) Presences(_ peer.ID, haves, dontHaves []cid.Cid) {
	fmt.Println(s.name, "heard:", len(haves), "HAVE,", len(dontHaves), "DONT_HAVE")
}

// interest adapts the BlockRouter, which owns the registry of Sessions
// and who wants what, to the PeerRouter's questions (the facade does the
// same in the library).
type interest struct{ *blockrouter.BlockRouter }

func (i interest) Sessions() []peerrouter.Sink {
	var out []peerrouter.Sink
	for _, s := range i.BlockRouter.Sessions() {
		out = append(out, s.(printingSession))
	}
	return out
}

func (i interest) EachWanter(cids []cid.Cid, f func(uint64, peerrouter.Sink, int)) {
	i.BlockRouter.EachWanter(cids, func(id uint64, s blockrouter.Sink, n int) { f(id, s.(printingSession), n) })
}

// Two Sessions hear about every connection, but only about the presences
// of the CIDs they want, which the BlockRouter knows: a Session registers
// there once, with its wants. A peer's first HAVE proves it, which every
// Session hears (a PeerConnected with the new PeerInfo). Sinks are called
// in no set order.
func Example() {
	br := blockrouter.New(blockstore.NewMemory(), ledger.New(), noServer{}, nil)
	r := peerrouter.New(interest{br})
	p := testutil.PeerID(1)
	blks := testutil.RandomBlocks(1, 2, 10)
	c0, c1 := blks[0].Cid(), blks[1].Cid()

	r.PeerConnected(p, false, false)
	a, b := printingSession{"a"}, printingSession{"b"}
	br.Register(1, a)
	r.Attach(a) // a hears of p, connected before it started
	br.Register(2, b)
	br.Want(1, []cid.Cid{c0})

	r.ReceivePresences(p, []cid.Cid{c0}, []cid.Cid{c1}) // only a wants c0; nobody c1
	r.ProviderFound(p, c0)                              // content routing named p for c0
	r.PeerDisconnected(p)
	// Unordered output:
	// a heard: peer connected
	// a heard: peer proven
	// b heard: peer proven
	// a heard: 1 HAVE, 0 DONT_HAVE
	// a heard: provider found
	// a heard: peer disconnected
	// b heard: peer disconnected
}
